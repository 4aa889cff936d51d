//! The benchmark suite's runner: every scenario of issue 5 in one command.
//!
//! ```text
//! bench/run [--quick] [--only <scenario,...>]     (builds, then runs this)
//! target/release/suite [--quick] [--only <scenario,...>] [--rounds N] [--threads N]
//! ```
//!
//! Scenarios: `echo` (TCP echo, seven runtimes), `http` (ours vs tokio,
//! hyper, monoio), `arch` (seven server architectures), `kv` (vs
//! redis-server), `files` (random reads vs tokio::fs and fio; 1 GiB copy vs
//! cp), `executor` (micro-benchmarks and callgrind instructions per op),
//! `uring` (each io_uring facility of the runtime measured both ways),
//! `ecosystem` (hyper, TLS and idle connections, ours vs tokio), `threads`
//! (HTTP on 2 workers: hyper on our pool vs tokio's multi-thread runtime,
//! unpinned), `drivers` (echo and HTTP CPU at fixed rates: ours on the
//! epoll driver vs tokio, with a noise floor and io_uring beside them).
//!
//! Servers run pinned to core 0, load generators to core 1; every cell runs
//! several rounds with the peers interleaved, and the ratios quoted are the
//! median (min, max) of the per-round ratios ours/peer. Rounds where the
//! load generator saturated its core are rejected and counted. The results
//! are printed and written to `bench/BENCHMARKS.md` with PNG charts under
//! `bench/charts/` when every scenario ran; a partial run (`--only`) writes
//! `target/bench-partial/BENCHMARKS.md` and its charts under
//! `target/bench-partial/charts/` instead, so that it never overwrites the
//! full report. Every child process runs in its own process group and is
//! killed when the suite ends, is interrupted, or panics.

mod ab;
mod harness;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use harness::{chart, proc, report, Ctx};
use scenarios::{OPT_IN, SCENARIOS};

const USAGE: &str =
    "usage: bench/run [--quick] [--only <scenario,...>] [--rounds N] [--threads N] [--plan]
  scenarios: echo, http, arch, kv, files, executor, uring, ecosystem, threads, drivers
             (default: all); opt-in, run only when named in --only: levers
  --only     run some scenarios; the report then goes to target/bench-partial/BENCHMARKS.md
             (bench/BENCHMARKS.md is written only by a run of every scenario)
  --plan     print the planned time and exit
  --quick    2 rounds and a reduced matrix; default: 3 rounds
  --threads  workers of the servers of the threads scenario (default 2)";

struct Args {
    quick: bool,
    plan_only: bool,
    only: Vec<String>,
    rounds: Option<usize>,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        quick: false,
        plan_only: false,
        only: Vec::new(),
        rounds: None,
        threads: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--quick" => a.quick = true,
            "--plan" => a.plan_only = true,
            "--only" => {
                for s in value()?.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if !SCENARIOS.contains(&s) && !OPT_IN.contains(&s) {
                        return Err(format!(
                            "unknown scenario {s:?} (known: {}; opt-in: {})",
                            SCENARIOS.join(", "),
                            OPT_IN.join(", ")
                        ));
                    }
                    a.only.push(s.to_string());
                }
            }
            "--rounds" => {
                a.rounds = Some(
                    value()?
                        .parse()
                        .ok()
                        .filter(|&n: &usize| n >= 1)
                        .ok_or("--rounds needs a positive number")?,
                )
            }
            "--threads" => {
                a.threads = value()?
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n >= 1)
                    .ok_or("--threads needs a positive number")?
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

/// The workspace root: three levels above target/release/suite, else the
/// current directory.
fn workspace_root() -> PathBuf {
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        let root = exe.parent()?.parent()?.parent()?.to_path_buf();
        root.join("bench")
            .join("Cargo.toml")
            .exists()
            .then_some(root)
    });
    from_exe.unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")))
}

fn first_line(s: Option<String>) -> String {
    s.and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

fn machine() -> report::Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let kernel = first_line(proc::capture("uname", &["-r"]));
    let mut commit = first_line(proc::capture("git", &["rev-parse", "HEAD"]));
    // `git diff --quiet` exits 1 when the tree differs from HEAD.
    let dirty = std::process::Command::new("git")
        .args(["diff", "--quiet", "HEAD", "--"])
        .status()
        .map(|s| s.code() == Some(1))
        .unwrap_or(false);
    if dirty {
        commit.push_str(" (with uncommitted changes)");
    }
    let date = first_line(proc::capture("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]));
    let rustc = first_line(proc::capture("rustc", &["--version"]));
    let mut tools = Vec::new();
    let version = |p: &str, args: &[&str]| -> Option<String> {
        let out = std::process::Command::new(p).args(args).output().ok()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        text.lines()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
    };
    for (t, args) in [
        ("wrk", &["-v"][..]),
        ("redis-benchmark", &["--version"][..]),
        ("redis-server", &["--version"][..]),
        ("fio", &["--version"][..]),
        ("valgrind", &["--version"][..]),
        ("h2load", &["--version"][..]),
    ] {
        if proc::program_in_path(t) {
            if let Some(v) = version(t, args) {
                tools.push((t.to_string(), proc::shorten(&v, 100)));
            }
        }
    }
    report::Machine {
        cpu,
        cores,
        kernel,
        commit,
        date,
        rustc,
        tools,
    }
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("ab") {
        let root = workspace_root();
        if let Err(e) = std::env::set_current_dir(&root) {
            eprintln!("suite: cannot enter {}: {e}", root.display());
            return ExitCode::FAILURE;
        }
        return ab::main(&std::env::args().skip(2).collect::<Vec<_>>());
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("suite: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    proc::install_cleanup();
    let root = workspace_root();
    if let Err(e) = std::env::set_current_dir(&root) {
        eprintln!("suite: cannot enter {}: {e}", root.display());
        return ExitCode::FAILURE;
    }
    let nofile = bench::raise_nofile_limit().unwrap_or(0);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (server_core, loader_core) = if cores >= 2 {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    let rounds = args.rounds.unwrap_or(if args.quick {
        harness::QUICK_ROUNDS
    } else {
        harness::FULL_ROUNDS
    });
    // Opt-in scenarios run only when named.
    let selected: Vec<&str> = SCENARIOS
        .iter()
        .copied()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s))
        .chain(
            OPT_IN
                .iter()
                .copied()
                .filter(|s| args.only.iter().any(|o| o == s)),
        )
        .collect();
    // A partial run (or one with an opt-in scenario) must not overwrite the
    // full report (or its charts).
    let partial =
        !SCENARIOS.iter().all(|s| selected.contains(s)) || selected.len() != SCENARIOS.len();
    let out_dir = if partial {
        root.join("target").join("bench-partial")
    } else {
        root.join("bench")
    };
    let mut ctx = Ctx {
        quick: args.quick,
        rounds,
        server_core,
        loader_core,
        charts: true,
        out_dir,
        start: Instant::now(),
        threads: args.threads,
    };
    if partial {
        if let Err(e) = std::fs::create_dir_all(ctx.out_dir.join("charts")) {
            eprintln!("suite: cannot create {}: {e}", ctx.out_dir.display());
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = chart::init_font() {
        eprintln!("suite: no charts: {e}");
        ctx.charts = false;
    }
    let mut command = String::from("bench/run");
    for a in std::env::args().skip(1) {
        command.push(' ');
        command.push_str(&proc::shell_quote(&a));
    }

    let missing: Vec<&str> = [
        "taskset",
        "wrk",
        "redis-benchmark",
        "redis-server",
        "fio",
        "valgrind",
        "h2load",
    ]
    .into_iter()
    .filter(|t| !proc::program_in_path(t))
    .collect();
    if !missing.is_empty() {
        eprintln!(
            "suite: missing tools (bench/run installs them): {}; the scenarios that need them are reported as not measured",
            missing.join(", ")
        );
    }
    if cores < 2 {
        eprintln!("suite: only {cores} core: servers and load generators are not pinned apart");
    }
    println!(
        "suite: {} mode, {rounds} rounds per cell, scenarios: {}; RLIMIT_NOFILE {nofile}",
        if args.quick { "QUICK" } else { "full" },
        selected.join(", ")
    );
    let mut planned = 0.0;
    for s in &selected {
        let p = scenarios::plan(&ctx, s);
        planned += p;
        println!("  planned {s:<9} ~{}", report::duration(p));
    }
    println!("  planned total     ~{}", report::duration(planned));
    if args.plan_only {
        return ExitCode::SUCCESS;
    }

    let m = machine();
    let mut outs = Vec::new();
    for s in &selected {
        ctx.log(&format!(
            "== {s} (planned ~{})",
            report::duration(scenarios::plan(&ctx, s))
        ));
        let t = Instant::now();
        let mut o = scenarios::run(&ctx, s);
        o.secs = t.elapsed().as_secs_f64();
        // The ratio chart reads "> 1: ours better"; a scenario comparing
        // variants (B/A, costs included) has its summary table instead.
        let rows = if o.no_targets {
            Vec::new()
        } else {
            report::ratio_rows(&o)
        };
        let title = format!(
            "{}: ratio ours/peer per cell (median, bar; min–max, line)",
            o.title
        );
        let chart = chart::ratios(&ctx, &format!("ratios_{}", o.name), &title, &rows);
        o.charts.extend(chart);
        ctx.log(&format!("== {s} done in {}", report::duration(o.secs)));
        outs.push(o);
    }
    proc::kill_all();
    let total = ctx.start.elapsed().as_secs_f64();

    print!("{}", report::terminal(&outs));
    let md = report::markdown(&ctx, &m, &outs, &SCENARIOS, &command, total, planned);
    let path = ctx.out_dir.join("BENCHMARKS.md");
    match std::fs::write(&path, md) {
        Ok(()) => println!("\nwrote {}", path.display()),
        Err(e) => {
            eprintln!("suite: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if partial {
        println!(
            "partial run (--only): bench/BENCHMARKS.md and bench/charts/ were left as they are"
        );
    }
    println!(
        "total {} (planned {}){}",
        report::duration(total),
        report::duration(planned),
        if args.quick {
            "; QUICK mode: fewer rounds, reduced matrix"
        } else {
            ""
        }
    );
    ExitCode::SUCCESS
}
