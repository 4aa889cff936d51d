//! Scenario `threads` (issue 14): HTTP on two workers. hyper on a
//! `runtime::Pool` of 2 workers (one `SO_REUSEPORT` listener each) against
//! hyper on tokio's multi-thread runtime with 2 workers, the native `http`
//! example with `--threads 2` beside them, and `ours'`, a second copy of our
//! hyper server, for the A-vs-A noise floor.
//!
//! Nothing is pinned: the servers' two workers and h2load share the
//! machine's cores, as they would on a host where the load comes from
//! elsewhere but other work competes. Two cells:
//!
//! 1. the closed-loop peak: `h2load -t 2 -c 64 -m 1` as fast as it goes,
//!    req/s (and server CPU per request);
//! 2. a fixed rate below every server's peak, 30k req/s (`h2load -t 1 -c 50
//!    --rps 600`): server CPU µs per request (all the process's threads),
//!    req/s served, the client's p50/p99.
//!
//! Full mode adds the native example on one worker, the single-core
//! reference. At most 3 rounds per cell, 3 s runs, about 2 minutes.

use std::time::Duration;

use super::ecosystem::{cpu_per, fmt, log_percentiles, parse_h2load, server_cpu, NoiseRow};
use crate::harness::fleet::{Fleet, Spec};
use crate::harness::model::{human, Cell, Outcome, Sample, SATURATED};
use crate::harness::rounds::Rounds;
use crate::harness::{proc, Ctx};

/// Workers of every server (the machine's 2 cores).
pub(crate) const THREADS: usize = 2;
/// Seconds of every measured run (h2load `-D`).
const SECS: u32 = 3;
/// Seconds of each server's warm-up run.
const WARM_SECS: u32 = 1;
/// The tag of the progress lines.
const TAG: &str = "threads";

/// hyper on our pool, its second copy, hyper on tokio's multi-thread
/// runtime, the native example on 2 workers and on 1.
const OURS: &str = "ours";
const OURS2: &str = "ours'";
const TOKIO: &str = "tokio";
const NATIVE: &str = "http";
const NATIVE1: &str = "http_1w";

/// One h2load load.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// h2load's threads.
    threads: usize,
    conns: usize,
    /// Requests per second per connection; `None`: closed loop.
    rps: Option<usize>,
}

/// The closed-loop peak: two h2load threads (it needs both cores to keep
/// two workers busy), one request in flight per connection.
const PEAK: Load = Load {
    threads: 2,
    conns: 64,
    rps: None,
};

/// The fixed rate: 50 connections × 600 req/s = 30k req/s, under half of
/// every server's peak on the development VM.
const FIXED: Load = Load {
    threads: 1,
    conns: 50,
    rps: Some(600),
};

impl Load {
    fn label(&self) -> String {
        match self.rps {
            None => format!(
                "HTTP/1.1 on {THREADS} workers, closed loop, {} conns, h2load -t {}",
                self.conns, self.threads
            ),
            Some(r) => format!(
                "HTTP/1.1 on {THREADS} workers, {} req/s fixed, {} conns",
                human((r * self.conns) as f64),
                self.conns
            ),
        }
    }
}

fn rounds(ctx: &Ctx) -> usize {
    ctx.rounds.min(3)
}

fn peers(ctx: &Ctx) -> usize {
    if ctx.quick {
        4
    } else {
        5
    }
}

/// Planned seconds of the scenario.
pub(crate) fn plan(ctx: &Ctx) -> f64 {
    let p = peers(ctx) as f64;
    let run = SECS as f64 + 0.3;
    p * (WARM_SECS as f64 + 0.3) + 2.0 * p * rounds(ctx) as f64 * run
}

/// The same run settings without pinning.
fn unpinned(ctx: &Ctx) -> Ctx {
    Ctx {
        quick: ctx.quick,
        rounds: ctx.rounds,
        server_core: None,
        loader_core: None,
        charts: ctx.charts,
        out_dir: ctx.out_dir.clone(),
        start: ctx.start,
    }
}

/// One h2load run; what it printed and its CPU share (1.0 = one core).
fn h2load(
    ctx: &Ctx,
    out: &mut Outcome,
    addr: std::net::SocketAddr,
    load: &Load,
    secs: u32,
) -> Result<(super::ecosystem::H2load, f64), String> {
    let mut args: Vec<String> = vec![
        "--h1".into(),
        "-t".into(),
        load.threads.to_string(),
        "-c".into(),
        load.conns.to_string(),
        "-m".into(),
        "1".into(),
    ];
    if let Some(r) = load.rps {
        args.extend(["--rps".into(), r.to_string()]);
    }
    let log = std::env::temp_dir().join(format!("suite-threads-{}.tsv", std::process::id()));
    args.extend([
        "-D".into(),
        secs.to_string(),
        "--log-file".into(),
        log.display().to_string(),
        format!("http://{addr}/"),
    ]);
    let run = proc::run(
        ctx.loader_core,
        "h2load",
        &args,
        Duration::from_secs(u64::from(secs) + 30),
    );
    let times = std::fs::read_to_string(&log).ok();
    let _ = std::fs::remove_file(&log);
    let (cmd, f) = run?;
    out.command(&cmd);
    if !f.success() {
        return Err(format!("h2load: {}", f.describe()));
    }
    let mut h = parse_h2load(&f.stdout)
        .ok_or_else(|| format!("no req/s in h2load's output: {}", f.describe()))?;
    if let Some((p50, p99)) = times.as_deref().and_then(log_percentiles) {
        h.p50_us = Some(p50);
        h.p99_us = Some(p99);
    }
    if h.succeeded == 0 {
        return Err(format!(
            "h2load: no request succeeded ({} failed)",
            h.failed
        ));
    }
    Ok((h, f.cpu_secs / f.wall_secs.max(1e-3)))
}

/// The rounds of one cell over the running `fleet`.
fn cell(ctx: &Ctx, out: &mut Outcome, fleet: &mut Fleet, names: &[&str], load: Load) -> Cell {
    let peak = load.rps.is_none();
    let (unit, show): (&'static str, fn(f64) -> String) = if peak {
        ("req/s", human)
    } else {
        ("server CPU µs/req", |v| format!("{v:.1}µs"))
    };
    let offered = load.rps.map_or(0, |r| r * load.conns) as f64;
    let mut cell = Cell::new(load.label(), offered, names, unit);
    cell.higher_is_better = peak;
    let peers = fleet.peers();
    let peers: Vec<&str> = peers.iter().map(String::as_str).collect();
    Rounds::new(ctx, TAG)
        .rounds(rounds(ctx))
        .rotate()
        .show(show)
        .run(out, &mut cell, &peers, |out, peer| {
            let addr = fleet.addr(peer, out)?;
            let pid = fleet.pid(peer).ok_or("the server is not running")?;
            let before = server_cpu(pid).ok_or("cannot read the server's CPU time")?;
            let (h, loader) = h2load(ctx, out, addr, &load, SECS)?;
            let after = server_cpu(pid).ok_or("cannot read the server's CPU time")?;
            let (total, user, sys) = cpu_per(before, after, h.succeeded as f64);
            let mut s = Sample::new(if peak { h.rps } else { total });
            if peak {
                s.extras.push(("server CPU µs/req", total));
            } else {
                s.extras.push(("req/s", h.rps));
            }
            s.extras.push(("user µs/req", user));
            s.extras.push(("sys µs/req", sys));
            for (key, v) in [("p50 µs", h.p50_us), ("p99 µs", h.p99_us)] {
                if let Some(v) = v {
                    s.extras.push((key, v));
                }
            }
            s.loader_cpu = Some(loader);
            // The closed loop shares the cores with h2load by design;
            // at the fixed rate a saturated h2load measured itself.
            s.rejected = !peak && loader >= SATURATED;
            let mut notes = Vec::new();
            if h.failed > 0 {
                notes.push(format!("{} requests failed", h.failed));
            }
            if !peak && h.rps < 0.97 * offered {
                notes.push(format!(
                    "served {} of the {} req/s offered",
                    human(h.rps),
                    human(offered)
                ));
            }
            if !notes.is_empty() {
                s.note = Some(notes.join("; "));
            }
            Ok(s)
        });
    cell
}

/// Runs the scenario.
pub(crate) fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome {
        name: "threads",
        title: format!("More cores: HTTP on {THREADS} workers"),
        no_targets: true,
        ..Default::default()
    };
    let ctx = &unpinned(ctx);
    let n = rounds(ctx);
    let threads = THREADS.to_string();
    let hyper = ctx.bin("hyper_http");
    let http = ctx.example("http");
    for bin in [&hyper, &http] {
        if !proc::program_in_path(bin) {
            out.notes.push(format!("not measured: {bin} is missing"));
            return out;
        }
    }
    if !proc::program_in_path("h2load") {
        out.unavailable.push((
            "h2load".into(),
            "h2load is not installed (bench/run installs nghttp2-client)".into(),
        ));
        return out;
    }
    let ours_args = ["--rt", "ours", "--threads", &threads];
    let mut specs = vec![
        Spec::new(OURS, &hyper, &ours_args),
        Spec::new(TOKIO, &hyper, &["--rt", "tokio", "--threads", &threads]),
        Spec::new(OURS2, &hyper, &ours_args),
        Spec::new(NATIVE, &http, &["--threads", &threads]),
    ];
    if !ctx.quick {
        specs.push(Spec::new(NATIVE1, &http, &[]));
    }
    let names: Vec<String> = specs.iter().map(|s| s.peer.clone()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut fleet = Fleet::start(ctx, &mut out, specs);
    for peer in fleet.peers() {
        if let Ok(addr) = fleet.addr(&peer, &mut out) {
            if let Err(e) = h2load(ctx, &mut out, addr, &FIXED, WARM_SECS) {
                eprintln!("suite: {TAG} warm-up {peer}: {e}");
            }
        }
    }
    let peak = cell(ctx, &mut out, &mut fleet, &names, PEAK);
    let fixed = cell(ctx, &mut out, &mut fleet, &names, FIXED);
    fleet.stop();

    out.notes.push(format!(
        "Servers on {THREADS} workers: `hyper_http --rt ours --threads {THREADS}` (hyper 1 on a `runtime::Pool` of {THREADS} workers, each with its own `SO_REUSEPORT` listener), `hyper_http --rt tokio --threads {THREADS}` (the same hyper service on tokio's multi-thread runtime with {THREADS} workers, its accept loop a task on them), `ours'` (a second process of the first: the noise floor), the native `examples/http --threads {THREADS}`{}. Nothing is pinned: the servers and h2load share the machine's cores (this VM: 2), so the servers never have {THREADS} cores to themselves and the peak measures the server and h2load together. A {WARM_SECS} s warm-up per server at the fixed rate, then {n} rounds per cell, the variants interleaved and their order rotated, {SECS} s runs. Server CPU = the server process's CPU-time clock (every thread) over the run / requests succeeded; user and system apart from /proc/<pid>/stat (10 ms ticks). p50/p99: the time per request from h2load's per-request log. At the fixed rate a round is rejected if h2load (1 thread) used {:.0}% of a core; in the closed loop h2load uses what it can by design (its CPU share is shown).",
        if ctx.quick { "" } else { ", and the native example on one worker (`examples/http`, the single-core reference)" },
        SATURATED * 100.0
    ));
    let rows = [
        NoiseRow::new(&peak, None, "closed-loop req/s".into(), true, None),
        NoiseRow::new(
            &peak,
            Some("server CPU µs/req"),
            "closed loop: server CPU µs/req".into(),
            false,
            None,
        ),
        NoiseRow::new(
            &fixed,
            None,
            "fixed rate: server CPU µs/req".into(),
            false,
            None,
        ),
        NoiseRow::new(
            &fixed,
            Some("p99 µs"),
            "fixed rate: p99 µs".into(),
            false,
            None,
        ),
    ];
    let mut md = String::from(
        "### hyper on our pool against hyper on tokio's multi-thread runtime, beside the noise floor\n\n\
| figure | ours | tokio | ours/tokio median [min–max] | noise floor ours'/ours [min–max] | beyond the noise? |\n\
|---|---:|---:|---:|---:|---|\n",
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.what,
            fmt(r.ours),
            fmt(r.tokio),
            r.vs_tokio.map(|x| x.show()).unwrap_or_else(|| "—".into()),
            r.noise.map(|x| x.show()).unwrap_or_else(|| "—".into()),
            r.verdict()
        ));
        ctx.log(&format!(
            "  [{TAG}] {}: ours {} tokio {} ours/tokio {} noise {} -> {}",
            r.what,
            fmt(r.ours),
            fmt(r.tokio),
            r.vs_tokio.map(|x| x.show()).unwrap_or_else(|| "—".into()),
            r.noise.map(|x| x.show()).unwrap_or_else(|| "—".into()),
            r.verdict()
        ));
    }
    out.extra_md.push(md);
    out.tables.push((
        format!("HTTP/1.1 on {THREADS} workers: closed-loop peak"),
        vec![peak],
    ));
    out.tables.push((
        format!("HTTP/1.1 on {THREADS} workers: server CPU per request at a fixed rate"),
        vec![fixed],
    ));
    out
}
