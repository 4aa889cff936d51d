//! Scenario `threads` (issue 14): HTTP on N workers (the suite's
//! `--threads N`, default 2). hyper on a `runtime::Pool` of N workers (one
//! `SO_REUSEPORT` listener each) against hyper on tokio's multi-thread
//! runtime with N workers, the native `http` example with `--threads N`
//! beside them, and `ours'`, a second copy of our hyper server, for the
//! A-vs-A noise floor.
//!
//! Nothing is pinned: the servers' two workers and h2load share the
//! machine's cores, as they would on a host where the load comes from
//! elsewhere but other work competes. Two cells:
//!
//! 1. the closed-loop peak: `h2load -t N -c 32N -m 1` as fast as it goes,
//!    req/s (and server CPU per request);
//! 2. a fixed rate below every server's peak, 15k req/s per worker (N = 2:
//!    `h2load -t 1 -c 50 --rps 600`, 30k req/s): server CPU µs per request
//!    (all the process's threads), req/s served, the client's p50/p99.
//!
//! Full mode adds the native example on one worker, the single-core
//! reference. At most 3 rounds per cell, 3 s runs, about 2 minutes.

use super::ecosystem::{cpu_per, server_cpu};
use crate::harness::fleet::{Fleet, Spec};
use crate::harness::model::{human, Cell, NoiseRow, Outcome, Sample, SATURATED};
use crate::harness::rounds::Rounds;
use crate::harness::{h2load, proc, Ctx};

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

/// The closed-loop peak against `n` workers: as many h2load threads (on
/// 2 cores it needs both to keep two workers busy), 32 connections per
/// worker, one request in flight on each.
fn peak(n: usize) -> Load {
    Load {
        threads: n,
        conns: 32 * n,
        rps: None,
    }
}

/// The fixed rate against `n` workers: 25 connections per worker × 600
/// req/s, 15k req/s per worker (30k with 2, under half of every server's
/// peak on the development VM), one h2load thread per 2 workers.
fn fixed(n: usize) -> Load {
    Load {
        threads: n.div_ceil(2),
        conns: 25 * n,
        rps: Some(600),
    }
}

impl Load {
    fn label(&self, n: usize) -> String {
        match self.rps {
            None => format!(
                "HTTP/1.1 on {n} workers, closed loop, {} conns, h2load -t {}",
                self.conns, self.threads
            ),
            Some(r) => format!(
                "HTTP/1.1 on {n} workers, {} req/s fixed, {} conns",
                human((r * self.conns) as f64),
                self.conns
            ),
        }
    }
}

fn rounds(ctx: &Ctx) -> usize {
    ctx.rounds.min(2)
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
        server_core: None,
        loader_core: None,
        ..ctx.clone()
    }
}

/// One h2load run; what it printed and its CPU share (1.0 = one core).
fn h2load(
    ctx: &Ctx,
    out: &mut Outcome,
    addr: std::net::SocketAddr,
    load: &Load,
    secs: u32,
) -> Result<(h2load::H2load, f64), String> {
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
    args.extend(["-D".into(), secs.to_string()]);
    h2load::run(ctx, out, args, addr, secs, "threads")
}

/// The worker threads of a server process and their CPU seconds so far:
/// ours are `runtime-worker-<i>` (cut to 15 bytes by the kernel), tokio's
/// multi-thread runtime's `tokio-rt-worker`.
fn workers_cpu(pid: i32) -> Vec<(i32, f64)> {
    let mut v = proc::threads_cpu_by_tid(pid, "runtime-worker");
    v.extend(proc::threads_cpu_by_tid(pid, "tokio-rt-worker"));
    v
}

/// The busiest worker's share of the workers' CPU between two readings
/// (0.5 with 2 workers = evenly spread, 1.0 = one worker did everything);
/// `None` without at least two workers or without CPU used.
fn busiest_share(before: &[(i32, f64)], after: &[(i32, f64)]) -> Option<f64> {
    let used: Vec<f64> = after
        .iter()
        .map(|&(tid, a)| {
            let b = before.iter().find(|t| t.0 == tid).map_or(0.0, |t| t.1);
            (a - b).max(0.0)
        })
        .collect();
    let total: f64 = used.iter().sum();
    if used.len() < 2 || total <= 0.0 {
        return None;
    }
    Some(used.iter().copied().fold(0.0, f64::max) / total)
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
    let mut cell = Cell::new(load.label(ctx.threads), offered, names, unit);
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
            let workers_before = workers_cpu(pid);
            let before = server_cpu(pid).ok_or("cannot read the server's CPU time")?;
            let (h, loader) = h2load(ctx, out, addr, &load, SECS)?;
            let after = server_cpu(pid).ok_or("cannot read the server's CPU time")?;
            let busiest = busiest_share(&workers_before, &workers_cpu(pid));
            let (total, user, sys) = cpu_per(before, after, h.succeeded as f64);
            let mut s = Sample::new(if peak { h.rps } else { total });
            if peak {
                s.extras.push(("server CPU µs/req", total));
            } else {
                s.extras.push(("req/s", h.rps));
            }
            s.extras.push(("user µs/req", user));
            s.extras.push(("sys µs/req", sys));
            for (key, v) in [
                ("p50 µs", h.p50_us),
                ("p99 µs", h.p99_us),
                ("busiest worker %", busiest.map(|b| b * 100.0)),
            ] {
                if let Some(v) = v {
                    s.extras.push((key, v));
                }
            }
            // Per h2load thread: 1.0 = each of them kept a core busy.
            let loader = loader / load.threads as f64;
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
        title: format!("More cores: HTTP on {} workers", ctx.threads),
        no_targets: true,
        ..Default::default()
    };
    let ctx = &unpinned(ctx);
    let n = rounds(ctx);
    let workers = ctx.threads;
    let threads = workers.to_string();
    let (peak_load, fixed_load) = (peak(workers), fixed(workers));
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
            if let Err(e) = h2load(ctx, &mut out, addr, &fixed_load, WARM_SECS) {
                eprintln!("suite: {TAG} warm-up {peer}: {e}");
            }
        }
    }
    let peak = cell(ctx, &mut out, &mut fleet, &names, peak_load);
    let fixed = cell(ctx, &mut out, &mut fleet, &names, fixed_load);
    fleet.stop();

    out.notes.push(format!(
        "Servers on {workers} workers: `hyper_http --rt ours --threads {workers}` (hyper 1 on a `runtime::Pool` of {workers} workers, each with its own `SO_REUSEPORT` listener), `hyper_http --rt tokio --threads {workers}` (the same hyper service on tokio's multi-thread runtime with {workers} workers, its accept loop a task on them), `ours'` (a second process of the first: the noise floor), the native `examples/http --threads {workers}`{}. Nothing is pinned: the servers and h2load share the machine's {} cores, so on 2 cores the servers never have their workers' cores to themselves and the peak measures the server and h2load together. A {WARM_SECS} s warm-up per server at the fixed rate, then {n} rounds per cell, the variants interleaved and their order rotated, {SECS} s runs. Server CPU = the server process's CPU-time clock (every thread) over the run / requests succeeded; split into user and system by the share of the scheduler's ticks that found it in user mode over the run (raw per-thread counts from taskstats). busiest worker %: the busiest worker thread's share of the worker threads' CPU over the run (/proc/<pid>/task/*/stat; 50% with 2 workers = evenly spread): ours spreads connections by the kernel's SO_REUSEPORT hash, tokio moves tasks between workers. p50/p99: the time per request from h2load's per-request log. At the fixed rate a round is rejected if h2load used {:.0}% of a core per thread; in the closed loop h2load uses what it can by design (its CPU share per thread is shown).",
        if ctx.quick { "" } else { ", and the native example on one worker (`examples/http`, the single-core reference)" },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        SATURATED * 100.0
    ));
    out.notes.push(format!(
        "On a bigger machine: `target/release/suite --only threads --threads 16` (after `bench/run --only threads` has built the binaries) on 32 or more cores, so that h2load's threads have cores of their own; `--threads 1, 2, 4, 8, 16` in turn give a scaling curve. On this machine ({} cores) the servers' workers share the cores with h2load and the kernel's loopback path: the peak measures server and client together, and CPU per request is the figure to compare (bench/README.md, `threads`).",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
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
        md.push_str(&format!("| {} | {} |\n", r.what, r.md_cells()));
        ctx.log(&format!("  [{TAG}] {}: {}", r.what, r.summary("tokio")));
    }
    out.extra_md.push(md);
    out.tables.push((
        format!("HTTP/1.1 on {workers} workers: closed-loop peak"),
        vec![peak],
    ));
    out.tables.push((
        format!("HTTP/1.1 on {workers} workers: server CPU per request at a fixed rate"),
        vec![fixed],
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(quick: bool, threads: usize) -> Ctx {
        Ctx {
            threads,
            ..Ctx::for_tests(quick)
        }
    }

    #[test]
    fn loads_scale_with_the_workers() {
        let f = fixed(2);
        assert_eq!((f.threads, f.conns, f.rps), (1, 50, Some(600)));
        assert_eq!(
            f.label(2),
            "HTTP/1.1 on 2 workers, 30.0k req/s fixed, 50 conns"
        );
        let f = fixed(16);
        assert_eq!((f.threads, f.conns), (8, 400));
        let p = peak(16);
        assert_eq!((p.threads, p.conns, p.rps), (16, 512, None));
        assert!(p.label(16).contains("closed loop, 512 conns, h2load -t 16"));
    }

    #[test]
    fn busiest_share_of_the_workers() {
        let before = [(1, 1.0), (2, 2.0)];
        assert_eq!(busiest_share(&before, &[(1, 4.0), (2, 3.0)]), Some(0.75));
        // A thread that appeared meanwhile counts from 0.
        assert_eq!(busiest_share(&before, &[(1, 2.0), (3, 1.0)]), Some(0.5));
        assert_eq!(busiest_share(&before, &[(1, 2.0)]), None);
        assert_eq!(busiest_share(&before, &before), None);
    }

    #[test]
    fn unpinned_and_about_a_minute() {
        let c = unpinned(&ctx(false, 4));
        assert_eq!((c.server_core, c.loader_core, c.threads), (None, None, 4));
        let full = plan(&ctx(false, 2));
        assert!((60.0..=90.0).contains(&full), "{full}");
        assert!(plan(&ctx(true, 2)) < full);
    }
}
