//! `suite ab`: an old build of the bench programs against a new one in
//! one run (`bench/ab <git-rev>` builds both, then runs this).
//!
//! ```text
//! suite ab --old DIR --new DIR --old-copy DIR [--old-name S] [--new-name S]
//!          [--rounds N] [--core-rounds N] [--echo-secs S] [--rate R]
//!          [--no-callgrind] [--out FILE]
//! ```
//!
//! Each DIR holds `core` and `echo_server`; `--old-copy` is a second copy
//! of the old binaries, measured in the same rounds as the noise floor
//! (old against itself). Three measurements, each a table:
//!
//! - `core --only <bench> --rt ours` for every benchmark `core` offers
//!   (spawn_join, ping_pong, timers, timers_1ms, nop_1, nop_64): time per
//!   operation, pinned to the loader core (`timers*`: CPU time per timer).
//!   A benchmark the old `core` does not have shows as failed for old.
//! - With valgrind installed: instructions per operation from callgrind
//!   at two operation counts (the `executor` scenario's method; one round,
//!   the count is close to deterministic).
//! - `echo_server ours` (pinned to the server core) under `echo_load
//!   --rate R` (the working tree's, pinned to the loader core), 64 B × 100
//!   connections: the server's CPU time per message (its CPU-time clock,
//!   utime + stime in nanoseconds, before and after the run).
//!
//! Every round runs old, new and old′ once, in an order that rotates from
//! round to round. A ratio is the median of the per-round ratios, with
//! their min and max.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::harness::fleet::{Fleet, Spec};
use crate::harness::model::{num, result_lines, Cell, Outcome, Ratio, Sample};
use crate::harness::rounds::Rounds;
use crate::harness::{proc, report, Ctx};
use crate::scenarios::echo::{fixed_rate_sample, fmt_secs, label, load, Load};
use crate::scenarios::executor::instructions_per_op;

/// The three builds, in the order of a round before rotation.
const VARIANTS: [&str; 3] = ["old", "new", "old′"];

const USAGE: &str =
    "usage: suite ab --old DIR --new DIR --old-copy DIR [--old-name S] [--new-name S]
                [--rounds N] [--core-rounds N] [--echo-secs S] [--rate R] [--no-callgrind] [--out FILE]
  (bench/ab <git-rev> builds the binaries and runs this)";

/// The benchmarks of `core` when its usage cannot be read.
const BENCHES: [&str; 6] = bench::CORE_BENCHES;

/// The echo cell: message size and connections.
const ECHO: (usize, usize) = (64, 100);

struct Args {
    dirs: [String; 3],
    old_name: String,
    new_name: String,
    rounds: usize,
    core_rounds: usize,
    echo_secs: f64,
    rate: f64,
    callgrind: bool,
    out: PathBuf,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        dirs: Default::default(),
        old_name: "old".into(),
        new_name: "new".into(),
        rounds: 5,
        core_rounds: 10,
        echo_secs: 3.0,
        rate: 40_000.0,
        callgrind: true,
        out: PathBuf::from("target/ab/report.md"),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        let positive = |v: String| v.parse::<f64>().ok().filter(|x| *x > 0.0);
        match flag.as_str() {
            "--old" => a.dirs[0] = value()?,
            "--new" => a.dirs[1] = value()?,
            "--old-copy" => a.dirs[2] = value()?,
            "--old-name" => a.old_name = value()?,
            "--new-name" => a.new_name = value()?,
            "--rounds" | "--core-rounds" => {
                let n = value()?
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or(format!("{flag} needs a positive number"))?;
                if flag == "--rounds" {
                    a.rounds = n;
                } else {
                    a.core_rounds = n;
                }
            }
            "--echo-secs" => a.echo_secs = positive(value()?).ok_or("bad --echo-secs")?,
            "--rate" => a.rate = positive(value()?).ok_or("bad --rate")?,
            "--no-callgrind" => a.callgrind = false,
            "--out" => a.out = PathBuf::from(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.dirs.iter().any(String::is_empty) {
        return Err("--old, --new and --old-copy are required".into());
    }
    Ok(a)
}

/// The benchmarks `core` offers, from the `--only <a|b|...>` of its usage.
fn benches(core: &str) -> Vec<String> {
    let usage = std::process::Command::new(core)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    let listed = usage
        .split_once("--only <")
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(list, _)| list.split('|').map(str::to_string).collect::<Vec<_>>());
    match listed {
        Some(l) if !l.is_empty() => l,
        _ => BENCHES.iter().map(|s| s.to_string()).collect(),
    }
}

/// One `core --only <bench> --rt ours` run: nanoseconds per operation
/// (CPU nanoseconds for `timers`, whose `secs=` is CPU time).
fn time_per_op(ctx: &Ctx, out: &mut Outcome, core: &str, bench: &str) -> Result<Sample, String> {
    let args: Vec<String> = ["--only", bench, "--rt", "ours"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (cmd, f) = proc::run(ctx.loader_core, core, &args, Duration::from_secs(120))?;
    out.command(&cmd);
    if !f.success() {
        return Err(format!("core: {}", f.describe()));
    }
    let lines = result_lines(&f.stdout);
    let l = lines.first().ok_or("core printed no RESULT line")?;
    let (ops, secs) = (num(l, "ops"), num(l, "secs"));
    match (ops, secs) {
        (Some(ops), Some(secs)) if ops > 0.0 => Ok(Sample::new(secs / ops * 1e9)),
        _ => Err("no ops= or secs= in core's RESULT".to_string()),
    }
}

/// A cell per benchmark (or the one echo cell): old, new and old′ series,
/// lower is better, ratios B/A.
fn cell(label: &str) -> Cell {
    let mut c = Cell::new(label.to_string(), 0.0, &VARIANTS, "");
    c.higher_is_better = false;
    c.vs_first = true;
    c
}

/// One measured table.
struct Table {
    title: String,
    unit: &'static str,
    cells: Vec<Cell>,
}

fn fmt(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
        None => "—".to_string(),
    }
}

fn show(r: Option<Ratio>) -> String {
    r.map(|r| r.show()).unwrap_or_else(|| "—".to_string())
}

/// Whether new differs from old by more than the noise: "better" or
/// "worse" when every round's new/old lies beyond the noise band (old′/old's
/// min–max, widened to include 1.0, and by 0.5% either way), "no"
/// otherwise.
fn verdict(ab: Option<Ratio>, aa: Option<Ratio>) -> &'static str {
    let (Some(ab), Some(aa)) = (ab, aa) else {
        return "—";
    };
    let lo = aa.min.min(1.0) * 0.995;
    let hi = aa.max.max(1.0) * 1.005;
    if ab.max < lo {
        "better (lower)"
    } else if ab.min > hi {
        "worse (higher)"
    } else {
        "no"
    }
}

/// The markdown of one table: medians, new/old and old′/old.
fn table_md(t: &Table) -> String {
    let mut s = format!(
        "### {}\n\n| {} | old | new | new/old median [min–max] | old′/old (A-vs-A) | beyond the noise? |\n|---|---:|---:|---:|---:|---|\n",
        t.title, t.unit
    );
    for c in &t.cells {
        let med = |p: &str| c.get(p).and_then(|s| s.median());
        let (ab, aa) = (
            c.ratio_of("old", "new", None),
            c.ratio_of("old", "old′", None),
        );
        let verdict = verdict(ab, aa);
        let notes: Vec<String> = c.series.iter().flat_map(|s| s.notes()).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {verdict} |",
            c.label,
            fmt(med("old")),
            fmt(med("new")),
            show(ab),
            show(aa),
        );
        for n in notes {
            let _ = writeln!(s, "| ↳ {} | | | | | |", proc::shorten(&n, 120));
        }
    }
    s
}

/// Runs the comparison; `args` are the words after `ab`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let a = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("suite ab: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    proc::install_cleanup();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (server_core, loader_core) = if cores >= 2 {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    let ctx = Ctx {
        quick: false,
        rounds: a.rounds,
        server_core,
        loader_core,
        charts: false,
        out_dir: a.out.parent().map(PathBuf::from).unwrap_or_default(),
        start: Instant::now(),
        threads: 2,
    };
    let bin = |i: usize, name: &str| format!("{}/{name}", a.dirs[i]);
    for i in 0..3 {
        for name in ["core", "echo_server"] {
            if !proc::program_in_path(&bin(i, name)) {
                eprintln!("suite ab: {} is missing", bin(i, name));
                return ExitCode::FAILURE;
            }
        }
    }
    let variant = |v: &str| VARIANTS.iter().position(|x| *x == v).expect("variant");
    let mut out = Outcome::default();
    let mut tables = Vec::new();

    // 1. Executor micro-benchmarks, time per operation.
    let list = benches(&bin(1, "core"));
    let mut cells = Vec::new();
    for b in &list {
        let mut c = cell(b);
        Rounds::new(&ctx, "ab")
            .rounds(a.core_rounds)
            .rotate()
            .show(|v| format!("{v:.1}ns"))
            .run(&mut out, &mut c, &VARIANTS, |out, v| {
                time_per_op(&ctx, out, &bin(variant(v), "core"), b)
            });
        cells.push(c);
    }
    tables.push(Table {
        title: "Executor micro-benchmarks: time per operation (`core --only <bench> --rt ours`)"
            .into(),
        unit: "ns/op; timers: CPU ns",
        cells,
    });

    // 2. Instructions per operation.
    let callgrind = a.callgrind && proc::program_in_path("valgrind");
    if callgrind {
        let mut cells = Vec::new();
        for b in &list {
            let mut c = cell(b);
            Rounds::new(&ctx, "ab callgrind")
                .rounds(1)
                .show(|v| format!("{v:.0}"))
                .run(&mut out, &mut c, &VARIANTS, |out, v| {
                    let core = bin(variant(v), "core");
                    instructions_per_op(&ctx, out, &core, b, "ours").map(Sample::new)
                });
            cells.push(c);
        }
        tables.push(Table {
            title: "Executor micro-benchmarks: instructions per operation (callgrind, one round)"
                .into(),
            unit: "instructions/op",
            cells,
        });
    }

    // 3. Echo: the server's CPU per message at a fixed rate.
    let specs = VARIANTS
        .iter()
        .enumerate()
        .map(|(i, v)| Spec::new(v, &bin(i, "echo_server"), &["ours"]))
        .collect();
    let mut fleet = Fleet::start(&ctx, &mut out, specs);
    let l = Load {
        size: ECHO.0,
        conns: ECHO.1,
        secs: a.echo_secs,
        warmup: 0.0,
        rate: Some(a.rate),
    };
    // A warm-up run per server, not recorded.
    for v in VARIANTS {
        let warm = Load { secs: 1.0, ..l };
        if let Err(e) = fleet
            .addr(v, &mut out)
            .and_then(|addr| load(&ctx, &mut out, addr, &warm))
        {
            eprintln!("suite ab: echo warm-up {v}: {e}");
        }
    }
    let mut c = cell(&format!(
        "echo {} at {:.0} msgs/s",
        label(ECHO.0, ECHO.1),
        a.rate
    ));
    Rounds::new(&ctx, "ab")
        .rotate()
        .show(|v| format!("{v:.2}µs"))
        .run(&mut out, &mut c, &VARIANTS, |out, v| {
            fixed_rate_sample(&ctx, out, &mut fleet, v, &l, proc::cpu_secs_precise)
        });
    fleet.stop();
    tables.push(Table {
        title: "Echo: the server's CPU time per message at a fixed rate".into(),
        unit: "CPU µs/msg",
        cells: vec![c],
    });
    proc::kill_all();

    let secs = ctx.start.elapsed().as_secs_f64();
    let mut md = format!(
        "# A/B: {} against {}\n\nold = {} (`{}`), new = {} (`{}`), old′ = a second copy of the old binaries (`{}`), measured in the same rounds: old′/old is the noise floor. {} rounds of each `core` benchmark, {} of echo{}, each running old, new and old′ once in an order that rotates from round to round; a ratio is the median of the per-round ratios new/old (or old′/old) with their min and max; lower is better everywhere. \"Beyond the noise\" says better or worse only when every round's new/old lies outside old′/old's range (widened to include 1.00x, and by 0.5%). Measured in {}.\n\n",
        a.new_name,
        a.old_name,
        a.old_name,
        a.dirs[0],
        a.new_name,
        a.dirs[1],
        a.dirs[2],
        a.core_rounds,
        a.rounds,
        if callgrind { ", one of callgrind" } else { "" },
        report::duration(secs),
    );
    for t in &tables {
        md.push_str(&table_md(t));
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "Method: `core --only <bench> --rt ours` pinned to core {}, time per operation = `secs` / `ops` of its RESULT line (one fresh process per run, no warm-up; `timers`: CPU seconds). Instructions: `valgrind --tool=callgrind` at two operation counts, (Collected(N2) − Collected(N1)) / (N2 − N1).{} Echo: each `echo_server ours` started once (core {}), a 1 s warm-up run each, then `echo_load --conns {} --size {} --secs {} --warmup 0 --rate {:.0}` (the new tree's echo_load for every server, core {}); CPU per message = the server's CPU-time clock (utime + stime, ns resolution) over the run / messages echoed.\n",
        fmt_core(ctx.loader_core),
        if callgrind { "" } else { " (not measured: valgrind is not installed, or --no-callgrind)" },
        fmt_core(ctx.server_core),
        ECHO.1,
        ECHO.0,
        fmt_secs(a.echo_secs),
        a.rate,
        fmt_core(ctx.loader_core),
    );
    for (p, why) in &out.unavailable {
        let _ = writeln!(md, "- **{p}: not measured**: {why}");
    }
    let _ = writeln!(
        md,
        "\n<details><summary>Exact commands ({})</summary>\n\n```text\n{}\n```\n\n</details>",
        out.commands.len(),
        out.commands.join("\n")
    );
    println!("\n{md}");
    if let Some(dir) = a.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&a.out, &md) {
        Ok(()) => {
            println!("wrote {}", a.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("suite ab: cannot write {}: {e}", a.out.display());
            ExitCode::FAILURE
        }
    }
}

fn fmt_core(c: Option<usize>) -> String {
    c.map_or_else(|| "(not pinned)".to_string(), |c| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_puts_new_over_old_beside_the_noise_floor() {
        let mut c = cell("spawn_join");
        for (o, n, o2) in [
            (100.0, 80.0, 101.0),
            (102.0, 82.0, 100.0),
            (98.0, 79.0, 99.0),
        ] {
            for (v, x) in VARIANTS.iter().zip([o, n, o2]) {
                c.get_mut(v).unwrap().rounds.push(Ok(Sample::new(x)));
            }
        }
        let md = table_md(&Table {
            title: "t".into(),
            unit: "ns/op",
            cells: vec![c],
        });
        assert!(
            md.contains("| spawn_join | 100 | 80.0 | 0.80x [0.80–0.81] |"),
            "{md}"
        );
        assert!(
            md.contains("| 1.01x [0.98–1.01] | better (lower) |"),
            "{md}"
        );
    }

    #[test]
    fn a_difference_counts_only_beyond_the_noise_band() {
        let r = |median, min, max| {
            Some(Ratio {
                median,
                min,
                max,
                saturated: false,
            })
        };
        let exact = r(1.0, 1.0, 1.0);
        assert_eq!(verdict(r(1.003, 1.003, 1.003), exact), "no");
        assert_eq!(verdict(r(1.02, 1.01, 1.03), exact), "worse (higher)");
        assert_eq!(verdict(r(0.9, 0.85, 0.97), r(1.0, 0.96, 1.05)), "no");
        assert_eq!(
            verdict(r(0.9, 0.85, 0.93), r(1.0, 0.96, 1.05)),
            "better (lower)"
        );
        assert_eq!(verdict(None, exact), "—");
    }

    #[test]
    fn parses_the_arguments() {
        let words: Vec<String> = "--old a --new b --old-copy c --rounds 3 --rate 20000"
            .split(' ')
            .map(String::from)
            .collect();
        let a = parse(&words).unwrap();
        assert_eq!(a.dirs, ["a", "b", "c"]);
        assert_eq!((a.rounds, a.rate), (3, 20000.0));
        assert!(parse(&words[..4]).is_err());
    }
}
