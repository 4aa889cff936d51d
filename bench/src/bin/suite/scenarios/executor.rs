//! Scenario 6, executor micro-benchmarks: `core` (rates per round for ours,
//! tokio and monoio) and instructions per operation from callgrind.

use std::time::Duration;

use crate::harness::model::{
    field, human, num, result_lines, Cell, Outcome, Sample, Series, Target,
};
use crate::harness::{proc, Ctx};

const PEERS: [&str; 3] = ["ours", "tokio", "monoio"];

/// The two operation counts of the callgrind runs. `timers` (and
/// `timers_1ms`) waits 100 µs per timer before its first deadline under
/// `--only`, so it gets smaller counts.
fn counts(bench: &str) -> (u64, u64) {
    if bench.starts_with("timers") {
        (2_000, 6_000)
    } else {
        (10_000, 30_000)
    }
}

fn rounds(ctx: &Ctx) -> usize {
    ctx.rounds
}

/// Whether callgrind measures `rt` on `bench`: everything in full mode;
/// in quick mode only ours and tokio (the target's peer), on the
/// benchmarks tokio has.
fn callgrind_applies(ctx: &Ctx, bench: &str, rt: &str) -> bool {
    !ctx.quick || (!bench.starts_with("nop") && (rt == "ours" || rt == "tokio"))
}

/// Planned seconds: core's own run plus the valgrind runs (~1.4 s each,
/// mostly valgrind's start-up).
pub(crate) fn plan(ctx: &Ctx) -> f64 {
    let core = 4.0 + 5.0 * rounds(ctx) as f64;
    let pairs = if ctx.quick { 6.0 } else { 11.0 };
    core + pairs * 2.0 * 1.4
}

/// `==PID== Collected : <n>` from valgrind's stderr.
pub(crate) fn collected(stderr: &str) -> Option<f64> {
    stderr
        .lines()
        .filter_map(|l| l.split_once("Collected :").map(|(_, n)| n.trim()))
        .find_map(|n| n.parse::<f64>().ok())
}

/// Instructions of `<core> --only bench --rt rt --n n` under callgrind.
fn instructions(
    ctx: &Ctx,
    out: &mut Outcome,
    core: &str,
    (bench, rt): (&str, &str),
    n: u64,
) -> Result<f64, String> {
    let args: Vec<String> = [
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        core,
        "--only",
        bench,
        "--rt",
        rt,
        "--n",
        &n.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (cmd, f) = proc::run(ctx.loader_core, "valgrind", &args, Duration::from_secs(180))?;
    out.command(&cmd);
    if !f.success() {
        return Err(format!("valgrind: {}", f.describe()));
    }
    collected(&f.stderr).ok_or_else(|| "no `Collected :` line on valgrind's stderr".to_string())
}

/// Instructions per operation of `bench` on `rt` with the `core` program
/// at path `core`, from callgrind at two operation counts:
/// (Collected(N2) − Collected(N1)) / (N2 − N1), so start-up costs cancel.
pub(crate) fn instructions_per_op(
    ctx: &Ctx,
    out: &mut Outcome,
    core: &str,
    bench: &str,
    rt: &str,
) -> Result<f64, String> {
    let (n1, n2) = counts(bench);
    let a = instructions(ctx, out, core, (bench, rt), n1)?;
    let b = instructions(ctx, out, core, (bench, rt), n2)?;
    Ok((b - a) / (n2 - n1) as f64)
}

/// Runs the scenario.
pub(crate) fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome {
        name: "executor",
        title: "Executor micro-benchmarks".to_string(),
        ..Default::default()
    };
    let r = rounds(ctx);
    out.notes.push(format!(
        "`core --rounds {r}` pinned to core 1: a warm-up, then {r} rounds, each running every benchmark on ours, tokio (current_thread) and monoio in turn; rate = operations per second (timers: per CPU second). Instructions per operation: `valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/core --only <bench> --rt <rt> --n N` at two N (10,000 and 30,000; timers and timers_1ms 2,000 and 6,000), (Collected(N2) − Collected(N1)) / (N2 − N1), so start-up costs cancel out.{}",
        if ctx.quick { " Quick mode: 2 rounds; callgrind only for ours and tokio, on the benchmarks tokio has." } else { "" }
    ));
    let core = ctx.bin("core");
    let args = vec!["--rounds".to_string(), r.to_string()];
    let res = proc::run(ctx.loader_core, &core, &args, Duration::from_secs(300));
    let lines = match res {
        Ok((cmd, f)) => {
            out.command(&cmd);
            let lines = result_lines(&f.stdout);
            if !f.success() || lines.is_empty() {
                let why = if lines.is_empty() {
                    format!("core printed no RESULT line: {}", f.describe())
                } else {
                    format!("core: {}", f.describe())
                };
                out.notes.push(format!("not measured: {why}"));
                if lines.is_empty() {
                    return out;
                }
            }
            lines
        }
        Err(e) => {
            out.notes.push(format!("not measured: {e}"));
            return out;
        }
    };
    // Benches in first-seen order; rounds placed by their round= index.
    let mut cells: Vec<Cell> = Vec::new();
    for l in &lines {
        let (Some(bench), Some(rt), Some(rate)) =
            (field(l, "bench"), field(l, "rt"), num(l, "rate"))
        else {
            continue;
        };
        let round = num(l, "round").map(|r| r as usize).unwrap_or(0);
        if !cells.iter().any(|c| c.label == bench) {
            cells.push(Cell::new(bench.to_string(), 0.0, &PEERS, "ops/s"));
        }
        let cell = cells.iter_mut().find(|c| c.label == bench).expect("cell");
        if cell.get(rt).is_none() {
            cell.series.push(Series::new(rt));
        }
        let s = cell.get_mut(rt).expect("series");
        // core numbers its rounds from 0; a missing one stays a gap.
        while s.rounds.len() < round {
            s.rounds.push(Err("missing round".to_string()));
        }
        s.rounds.push(Ok(Sample::new(rate)));
    }
    for c in cells.iter_mut() {
        c.series.retain(|s| !s.rounds.is_empty());
    }
    for c in &cells {
        ctx.log(&format!(
            "  [executor] {}: {}",
            c.label,
            c.series
                .iter()
                .map(|s| format!("{} {}", s.peer, s.median().map(human).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        if c.get("tokio").is_some() {
            out.targets.push(Target::ratio(
                format!("executor {}: ≥ 1.0x tokio", c.label),
                c.ratio("ours", "tokio"),
                1.0,
            ));
        }
    }

    // Instructions per operation.
    if !proc::program_in_path("valgrind") {
        out.notes.push(
            "Instructions per operation: not measured (valgrind is not installed).".to_string(),
        );
    } else {
        let mut md = String::from(
            "| benchmark | runtime | instructions/op | peer/ours |\n|---|---|---:|---:|\n",
        );
        for c in &cells {
            let mut ours_ipo = None;
            for s in c
                .series
                .iter()
                .filter(|s| callgrind_applies(ctx, &c.label, &s.peer))
            {
                let ipo = instructions_per_op(ctx, &mut out, &core, &c.label, &s.peer);
                let cell = match &ipo {
                    Ok(v) => {
                        if s.peer == "ours" {
                            ours_ipo = Some(*v);
                        }
                        format!("{v:.0}")
                    }
                    Err(e) => {
                        eprintln!("suite: callgrind {} {}: {e}", c.label, s.peer);
                        format!("not measured: {}", proc::shorten(e, 80))
                    }
                };
                let rel = match (&ipo, ours_ipo) {
                    (Ok(v), Some(o)) if s.peer != "ours" && o > 0.0 => format!("{:.2}x", v / o),
                    _ => String::new(),
                };
                ctx.log(&format!(
                    "  [executor] callgrind {} {}: {cell} instructions/op",
                    c.label, s.peer
                ));
                md.push_str(&format!("| {} | {} | {cell} | {rel} |\n", c.label, s.peer));
            }
        }
        out.extra_md.push(format!(
            "Instructions per operation (callgrind; lower is better; peer/ours > 1 means the peer executes more instructions):\n\n{md}"
        ));
    }
    out.tables
        .push(("Operations per second".to_string(), cells));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_collected() {
        let err = "==123== Callgrind, a call-graph generating cache profiler\n==123== Events    : Ir\n==123== Collected : 123456789\n==123==\n==123== I   refs:      123,456,789\n";
        assert_eq!(collected(err), Some(123456789.0));
        assert_eq!(collected("nothing"), None);
    }
}
