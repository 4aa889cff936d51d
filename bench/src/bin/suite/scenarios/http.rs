//! Scenarios `http` and `arch`: our HTTP server against tokio, hyper and
//! monoio servers, and against the seven classic server architectures.
//!
//! On a loopback machine with two cores the load generator competes with
//! the server for the same machine, and a closed loop (wrk as fast as it
//! goes) mostly measures the client. The first table of each scenario is
//! therefore what a request costs the server at a given offered load:
//! h2load at a fixed rate (`--rps`), the server's CPU per request (its
//! whole process group, user and system apart) and the client's
//! p50/p99/p99.9. The closed-loop peak (wrk) comes second; its first round
//! is every server's warm-up and the calibration of the fixed rates.
//!
//! Each table has `ours'`, a second copy of our server measured in the
//! same rounds: its ratio to `ours` is the table's noise floor, and a
//! target is judged only when its ratio clears it.
//!
//! `arch` adds the C10k cells: the same 10,000 req/s offered over 100,
//! 1,000 and 10,000 keep-alive connections.

use std::net::SocketAddr;
use std::time::Duration;

use crate::harness::fleet::{Fleet, Spec};
use crate::harness::h2load::{self, time_us, FixedRun, Load};
use crate::harness::model::{human, Cell, Outcome, Sample, Target, OURS2, SATURATED};
use crate::harness::rounds::Rounds;
use crate::harness::{chart, proc, Ctx};

/// Seconds of every measured run (wrk `-d`, h2load `-D`).
pub(crate) const SECS: u32 = 3;

/// The seven architectures, after ours.
pub(crate) const ARCHS: [&str; 7] = [
    "arch_iterative",
    "arch_fork",
    "arch_prefork",
    "arch_thread",
    "arch_prethread",
    "arch_poll",
    "arch_epoll",
];

/// The architectures that hold only a few connections at once (one, or
/// their pool of [`bench::arch::DEFAULT_POOL`] workers): with C keep-alive
/// connections the others wait in the backlog, so they cannot be offered
/// a load spread over C connections. They are in the peak table only.
const FEW_AT_ONCE: [(&str, usize); 3] = [
    ("arch_iterative", 1),
    ("arch_prefork", bench::arch::DEFAULT_POOL),
    ("arch_prethread", bench::arch::DEFAULT_POOL),
];

/// Connections of the HTTP scenario's cells (wrk and h2load alike).
const HTTP_CONNS: usize = 50;
/// Connections of the architectures' peak and fixed-rate cells.
const ARCH_CONNS: usize = 100;
/// The C10k cells: this rate spread over each of these connection counts.
const C10K_RATE: usize = 10_000;
const C10K_CONNS: [usize; 3] = [100, 1_000, 10_000];
/// Rounds of the C10k cells over 1,000 and 10,000 connections: 1 (each
/// takes seconds to open and close its connections; one round keeps the
/// full run under 20 minutes; the ours' column still shows the noise).
const C10K_ROUNDS: usize = 1;
/// The fractions of the slowest peer's closed-loop peak offered.
const HTTP_FRACTIONS: [f64; 2] = [0.25, 0.60];
/// The architectures' first rate (the second is [`C10K_RATE`] over
/// [`ARCH_CONNS`], the first point of the C10k chart).
const ARCH_FRACTION: f64 = 0.60;

/// Rounds of the fixed-rate cells of `http`: the run's, at most 3.
fn fixed_rounds(ctx: &Ctx) -> usize {
    ctx.rounds.min(3)
}

/// Rounds of the fixed-rate cells of `arch`: at most 2 (they are many),
/// 1 in quick mode.
fn arch_rounds(ctx: &Ctx) -> usize {
    if ctx.quick {
        1
    } else {
        ctx.rounds.min(2)
    }
}

/// Rounds of the peak tables: 1 (the fixed-rate tables come first; the
/// time goes to them).
fn peak_rounds(_ctx: &Ctx, _arch: bool) -> usize {
    1
}

/// Seconds one fixed-rate run takes besides [`SECS`]: h2load's warm-up,
/// start and tear-down.
pub(crate) fn fixed_overhead(conns: usize) -> f64 {
    Load { conns, rps: 1 }.warm_up()
        + match conns {
            0..=100 => 0.15,
            101..=1000 => 0.4,
            // Opening and closing 10,000 connections, reading 10,000
            // processes' CPU for arch_fork.
            _ => 2.0,
        }
}

/// At most this long after a run at 1,000 connections or more, the suite
/// waits for the server to settle ([`proc::wait_settled`]).
const SETTLE: Duration = Duration::from_secs(5);

/// Seconds of one wrk run besides [`SECS`].
const WRK_OVERHEAD: f64 = 0.25;

/// The peers of `http`: ours, the three others, ours'.
fn http_peers(ctx: &Ctx) -> Vec<Spec> {
    vec![
        Spec::new("ours", &ctx.example("http"), &[]),
        Spec::new("tokio_http", &ctx.bin("tokio_http"), &[]),
        Spec::new("hyper_http", &ctx.bin("hyper_http"), &[]),
        Spec::new("monoio_http", &ctx.bin("monoio_http"), &[]),
        Spec::new(OURS2, &ctx.example("http"), &[]),
    ]
}

/// The peers of `arch`: ours, the seven, ours'. Ours is `arch_ours`, the
/// seven's protocol code (`bench::arch::answer`) on this runtime, so that
/// the table compares architectures and not HTTP parsers (the `http`
/// example's full parser is measured in `http`).
fn arch_peers(ctx: &Ctx) -> Vec<Spec> {
    let mut v = vec![Spec::new("ours", &ctx.bin("arch_ours"), &[])];
    v.extend(ARCHS.iter().map(|a| Spec::new(a, &ctx.bin(a), &[])));
    v.push(Spec::new(OURS2, &ctx.bin("arch_ours"), &[]));
    v
}

/// Planned seconds of the HTTP scenario.
pub(crate) fn plan_http(ctx: &Ctx) -> f64 {
    let n = 5.0;
    let peak = peak_rounds(ctx, false) as f64 * n * (SECS as f64 + WRK_OVERHEAD);
    let fixed = HTTP_FRACTIONS.len() as f64
        * fixed_rounds(ctx) as f64
        * n
        * (SECS as f64 + fixed_overhead(HTTP_CONNS));
    n * 0.1 + peak + fixed
}

/// The peers of the fixed-rate cells of `arch`: all but [`FEW_AT_ONCE`].
fn arch_fixed_count() -> f64 {
    (ARCHS.len() + 2 - FEW_AT_ONCE.len()) as f64
}

/// Planned seconds of the architectures scenario.
pub(crate) fn plan_arch(ctx: &Ctx) -> f64 {
    let n = 9.0;
    let peak = peak_rounds(ctx, true) as f64 * n * (SECS as f64 + WRK_OVERHEAD);
    let m = arch_fixed_count();
    let run = |conns: usize| SECS as f64 + fixed_overhead(conns);
    let r = arch_rounds(ctx) as f64;
    // Two rates over ARCH_CONNS (the second is the first C10k cell).
    let fixed = 2.0 * r * m * run(ARCH_CONNS);
    let rc = C10K_ROUNDS.min(arch_rounds(ctx)) as f64;
    let c10k: f64 = C10K_CONNS[1..].iter().map(|&c| rc * m * run(c)).sum();
    // Fork at 10,000 connections: 10,000 processes to start and end.
    let fork = rc * 4.0;
    n * 0.1 + peak + fixed + c10k + fork
}

/// What wrk printed that the suite uses.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct WrkOutput {
    /// Requests/sec.
    pub rps: f64,
    /// 50th percentile latency in µs.
    pub p50_us: Option<f64>,
    /// 99th percentile latency in µs.
    pub p99_us: Option<f64>,
    /// The "Socket errors" line, if any.
    pub socket_errors: Option<String>,
    /// Non-2xx/3xx responses.
    pub non_2xx: u64,
    /// The run's length as wrk measured it ("N requests in 1.04s").
    pub secs: Option<f64>,
}

/// Parses wrk's `--latency` output.
pub(crate) fn parse_wrk(out: &str) -> Option<WrkOutput> {
    let mut w = WrkOutput::default();
    let mut rps = None;
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = t.strip_prefix("50%") {
            w.p50_us = time_us(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            w.p99_us = time_us(v);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            w.socket_errors = Some(v.trim().to_string());
        } else if let Some((_, v)) = t.split_once(" requests in ") {
            w.secs = v.split(',').next().and_then(time_us).map(|us| us / 1e6);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            w.non_2xx = v.trim().parse().unwrap_or(0);
        }
    }
    w.rps = rps?;
    Some(w)
}

/// One wrk run against `addr`.
fn wrk(ctx: &Ctx, out: &mut Outcome, addr: SocketAddr, conns: usize) -> Result<Sample, String> {
    let args = vec![
        "-t1".to_string(),
        format!("-c{conns}"),
        format!("-d{SECS}s"),
        "--latency".to_string(),
        format!("http://{addr}/"),
    ];
    let (cmd, f) = proc::run(
        ctx.loader_core,
        "wrk",
        &args,
        Duration::from_secs(u64::from(SECS) + 30),
    )?;
    out.command(&cmd.replace(&addr.to_string(), "<addr>"));
    if !f.success() {
        return Err(format!("wrk: {}", f.describe()));
    }
    let w = parse_wrk(&f.stdout)
        .ok_or_else(|| format!("no Requests/sec in wrk's output: {}", f.describe()))?;
    if w.rps <= 0.0 {
        return Err(format!(
            "no request completed in {SECS} s{}",
            w.socket_errors
                .map(|e| format!(" (wrk socket errors: {e})"))
                .unwrap_or_default()
        ));
    }
    let mut s = Sample::new(w.rps);
    if let Some(v) = w.p50_us {
        s.extras.push(("p50 µs", v));
    }
    if let Some(v) = w.p99_us {
        s.extras.push(("p99 µs", v));
    }
    // wrk's CPU (rusage of the child, all threads) over the run's length
    // as wrk measured it (its process lifetime also counts start-up).
    let cpu = f.cpu_secs / w.secs.unwrap_or(f.wall_secs).max(1e-3);
    s.loader_cpu = Some(cpu);
    s.extras.push(("wrk CPU %", cpu * 100.0));
    s.rejected = cpu >= SATURATED;
    let mut notes = Vec::new();
    if let Some(e) = w.socket_errors {
        notes.push(format!("wrk socket errors: {e}"));
    }
    if w.non_2xx > 0 {
        notes.push(format!("{} non-2xx responses", w.non_2xx));
    }
    if !notes.is_empty() {
        s.note = Some(notes.join("; "));
    }
    Ok(s)
}

/// The peak cell: closed-loop wrk at `conns`, `rounds` rounds. Its first
/// round is every server's warm-up.
fn peak_cell(
    ctx: &Ctx,
    out: &mut Outcome,
    fleet: &mut Fleet,
    tag: &str,
    names: &[&str],
    conns: usize,
    rounds: usize,
) -> Cell {
    let mut cell = Cell::new(
        format!("{conns} conns, closed loop"),
        conns as f64,
        names,
        "req/s",
    );
    let peers = fleet.peers();
    let peers: Vec<&str> = peers.iter().map(String::as_str).collect();
    Rounds::new(ctx, tag)
        .rounds(rounds)
        .rotate()
        .run(out, &mut cell, &peers, |out, peer| {
            let addr = fleet.addr(peer, out)?;
            wrk(ctx, out, addr, conns)
        });
    cell
}

/// The sample of one fixed-rate run.
fn fixed_sample(run: &FixedRun, load: Load) -> Sample {
    let (total, user, sys) = run.cpu_per_request();
    let mut s = Sample::new(total);
    for (key, v) in [("user µs/req", user), ("sys µs/req", sys)] {
        if v.is_finite() {
            s.extras.push((key, v));
        }
    }
    s.extras.push(("served req/s", run.served()));
    if let Some((p50, p99, p999)) = run.window.pct {
        s.extras.push(("p50 µs", p50));
        s.extras.push(("p99 µs", p99));
        s.extras.push(("p99.9 µs", p999));
    }
    s.extras.push(("h2load CPU %", run.loader_cpu * 100.0));
    s.loader_cpu = Some(run.loader_cpu);
    s.rejected = run.loader_cpu >= SATURATED;
    let mut notes = Vec::new();
    if run.window.failed > 0 {
        notes.push(format!(
            "{} requests failed in the window",
            run.window.failed
        ));
    } else if run.summary.failed > 0 {
        notes.push(format!(
            "h2load counted {} failed requests over its run",
            run.summary.failed
        ));
    }
    if run.served() < 0.97 * load.offered() {
        notes.push(format!(
            "served {} of the {} req/s offered",
            human(run.served()),
            human(load.offered())
        ));
    }
    if user.is_nan() {
        notes.push(
            "user/system split unknown (most of the CPU was in processes that each ran under a 10 ms tick)"
                .to_string(),
        );
    }
    if !notes.is_empty() {
        s.note = Some(notes.join("; "));
    }
    s
}

/// A fixed-rate cell: its label, its x in a chart, its load and rounds.
pub(crate) struct Fixed {
    /// Shown in tables.
    pub label: String,
    /// The x coordinate in a chart.
    pub x: f64,
    /// The offered load.
    pub load: Load,
    /// Rounds.
    pub rounds: usize,
}

/// A fixed-rate cell: `f.load` offered to each of `peers` (those of the
/// fleet among them), `f.rounds` rounds, rotated.
pub(crate) fn fixed_cell(
    ctx: &Ctx,
    out: &mut Outcome,
    fleet: &mut Fleet,
    tag: &str,
    peers: &[&str],
    f: Fixed,
) -> Cell {
    let Fixed {
        label,
        x,
        load,
        rounds,
    } = f;
    let mut cell = Cell::new(label, x, peers, "server CPU µs/req");
    cell.higher_is_better = false;
    let up = fleet.peers();
    let running: Vec<&str> = peers
        .iter()
        .copied()
        .filter(|p| up.iter().any(|u| u == p))
        .collect();
    Rounds::new(ctx, tag)
        .rounds(rounds)
        .rotate()
        .show(|v| format!("{v:.1}µs"))
        .stop_if_first_round_fails()
        .run(out, &mut cell, &running, |out, peer| {
            let addr = fleet.addr(peer, out)?;
            let pgid = fleet.pid(peer).ok_or("the server is not running")?;
            let run = h2load::fixed_rate(ctx, out, addr, pgid, load, SECS, tag);
            // Let the server finish closing the connections (and its
            // workers exit) before the next run.
            if load.conns >= 1000 && !proc::wait_settled(pgid, SETTLE) {
                eprintln!(
                    "suite: {tag}: {peer} still busy {} s after its run",
                    SETTLE.as_secs()
                );
            }
            Ok(fixed_sample(&run?, load))
        });
    cell
}

/// The load closest to `rate` req/s over `conns` connections (h2load's
/// `--rps` is a whole number per connection, at least 1).
pub(crate) fn load_for(rate: f64, conns: usize) -> Load {
    Load {
        conns,
        rps: ((rate / conns as f64).round() as usize).max(1),
    }
}

/// The slowest median closed-loop peak among `peers` in `peak`.
fn slowest_peak(peak: &Cell, peers: &[&str]) -> Option<(String, f64)> {
    peak.series
        .iter()
        .filter(|s| peers.contains(&s.peer.as_str()))
        .filter_map(|s| Some((s.peer.clone(), s.median()?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// The noise note every table of both scenarios carries.
fn noise_note() -> String {
    format!(
        "`{OURS2}` is a second copy of our server, started the same way and measured in the same rounds: its ratio to `ours` is the cell's noise floor, and a ratio counts as a difference only when every round's lies outside that band (made symmetric, widened to include 1.00x and by 0.5%; column \"beyond the noise floor\"). A target is judged the same way, the ratios taken relative to its threshold. Every run lasts {SECS} s; the peers' order rotates from round to round."
    )
}

/// The fixed-rate method note.
pub(crate) fn fixed_note(ctx: &Ctx) -> String {
    format!(
        "Fixed rate: `h2load --h1 -t 1 -c C -m 1 --rps R --warm-up-time W -D {SECS}` (R per connection; offered = C × R req/s), pinned to core {}, servers to core {}. The server's CPU is read when h2load's main phase starts and again {:.2} s later, while h2load still holds every connection: the CPU-time clock of every process of the server's process group (all threads, io_uring's and forked workers included), user and system apart from the ticks of /proc/<pid>/stat; divided by the answered requests whose response ended between the two readings (h2load's per-request log), which also give p50/p99/p99.9 (from the request's start to its response's end, client side). `served req/s` counts the same requests. A run where h2load used {:.0}% of its core is rejected.",
        ctx.loader_core.map(|c| c.to_string()).unwrap_or_else(|| "–".into()),
        ctx.server_core.map(|c| c.to_string()).unwrap_or_else(|| "–".into()),
        f64::from(SECS) - 0.25,
        SATURATED * 100.0
    )
}

/// The peak method note.
fn peak_note(conns: usize, rounds: usize) -> String {
    format!(
        "Peak: `wrk -t1 -c{conns} -d{SECS}s --latency`, {rounds} round{} with the servers in rotated order; the first round is each server's warm-up and the calibration of the fixed rates (the median of each peer). On this machine wrk often saturates its core before the server does (`wrk CPU %`): such a round is rejected, and the table then shows the client's limit, a lower bound for the server. The load generator's CPU is wrk's rusage (wait4) over the run's length as wrk reports it.",
        if rounds == 1 { "" } else { "s" }
    )
}

/// Scenario `http`.
pub(crate) fn run_http(ctx: &Ctx) -> Outcome {
    let tag = "http";
    let mut out = Outcome {
        name: "http",
        title: "HTTP".to_string(),
        ..Default::default()
    };
    out.notes.push(
        "Every server answers `GET /` with the same 13-byte body; hyper adds a Date header. First table: what a request costs each server at two fixed offered rates; second: the closed-loop peak.".to_string(),
    );
    for tool in ["wrk", "h2load"] {
        if !proc::program_in_path(tool) {
            out.notes.push(format!(
                "not measured: {tool} is not installed (bench/run installs it)"
            ));
            return out;
        }
    }
    let specs = http_peers(ctx);
    let names: Vec<String> = specs.iter().map(|s| s.peer.clone()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut fleet = Fleet::start(ctx, &mut out, specs);
    if !fleet.peers().iter().any(|p| p == "ours") {
        out.notes
            .push("not measured: arch_ours did not start".to_string());
        fleet.stop();
        return out;
    }
    let peak_n = peak_rounds(ctx, false);
    let peak = peak_cell(ctx, &mut out, &mut fleet, tag, &names, HTTP_CONNS, peak_n);
    let slowest = slowest_peak(&peak, &names);
    let base = slowest.as_ref().map_or(20_000.0, |s| s.1);
    ctx.log(&format!(
        "  [{tag}] calibration: slowest closed-loop peak {}",
        slowest
            .as_ref()
            .map(|(p, v)| format!("{p} {}", human(*v)))
            .unwrap_or_else(|| "unknown: rates from 20k req/s".into())
    ));
    let rounds = fixed_rounds(ctx);
    let mut cells = Vec::new();
    for f in HTTP_FRACTIONS {
        let load = load_for(f * base, HTTP_CONNS);
        let label = format!(
            "{} req/s ({:.0}% of the slowest peak), {} conns",
            human(load.offered()),
            f * 100.0,
            load.conns
        );
        let f = Fixed {
            label,
            x: load.offered(),
            load,
            rounds,
        };
        cells.push(fixed_cell(ctx, &mut out, &mut fleet, tag, &names, f));
    }
    fleet.stop();
    out.notes.push(format!(
        "The fixed rates are {} of the slowest peer's closed-loop peak ({}), {} rounds each.",
        HTTP_FRACTIONS
            .iter()
            .map(|f| format!("{:.0}%", f * 100.0))
            .collect::<Vec<_>>()
            .join(" and "),
        slowest
            .as_ref()
            .map(|(p, v)| format!("{p}, {} req/s", human(*v)))
            .unwrap_or_else(|| "not measured: 20k req/s assumed".into()),
        rounds
    ));
    out.notes.push(fixed_note(ctx));
    out.notes.push(peak_note(HTTP_CONNS, peak_n));
    out.notes.push(noise_note());
    for cell in &cells {
        let noise = cell.noise();
        for (peer, min) in [("tokio_http", 1.2), ("monoio_http", 1.0)] {
            out.targets.push(Target::beyond_noise(
                format!(
                    "http {}: {peer}'s server CPU per request ≥ {min:.1}x ours",
                    cell.label
                ),
                cell.ratio("ours", peer),
                noise,
                min,
            ));
        }
    }
    out.charts.extend(chart::lines(
        ctx,
        "http",
        "HTTP: server CPU µs per request by offered rate (lower is better)",
        ("offered req/s", "server CPU µs/req"),
        &cells,
    ));
    out.tables.push((
        "Server CPU per request at a fixed offered rate".to_string(),
        cells,
    ));
    out.tables.push((
        "Closed-loop peak (wrk -t1; also the warm-up and the calibration)".to_string(),
        vec![peak],
    ));
    out
}

/// The "ours cheapest" target of an `arch` cell: ours' CPU per request
/// against the cheapest other architecture's, judged beyond the noise.
fn cheapest_target(cell: &Cell) -> Target {
    let cheapest = cell
        .series
        .iter()
        .filter(|s| s.peer != "ours" && s.peer != OURS2)
        .filter_map(|s| Some((s.peer.clone(), s.median()?)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let what = format!("arch {}: ours costs the least CPU per request", cell.label);
    match cheapest {
        Some((peer, _)) => {
            let mut t = Target::beyond_noise(what, cell.ratio("ours", &peer), cell.noise(), 1.0);
            t.measured = format!("cheapest other: {peer}, {peer}/ours {}", t.measured);
            t
        }
        None => Target::beyond_noise(what, None, None, 1.0),
    }
}

/// Scenario `arch`.
pub(crate) fn run_arch(ctx: &Ctx) -> Outcome {
    let tag = "arch";
    let mut out = Outcome {
        name: "arch",
        title: "Seven server architectures".to_string(),
        ..Default::default()
    };
    out.notes.push("ours = `arch_ours`: the seven servers' protocol code and buffers (`bench::arch`) on this runtime, one task per connection, so that only the way connections reach the code differs (the `http` example, with its full parser, is measured in the `http` scenario). First table: what a request costs each server at two fixed offered rates over 100 connections; then the C10k cells, 10,000 req/s over 1,000 and 10,000 connections (100 connections: the first table's second cell); last, the closed-loop peak.".to_string());
    for tool in ["wrk", "h2load"] {
        if !proc::program_in_path(tool) {
            out.notes.push(format!(
                "not measured: {tool} is not installed (bench/run installs it)"
            ));
            return out;
        }
    }
    let need = C10K_CONNS[C10K_CONNS.len() - 1] as u64 + 100;
    let nofile = bench::raise_nofile_limit_to(need).unwrap_or(0);
    let specs = arch_peers(ctx);
    let names: Vec<String> = specs.iter().map(|s| s.peer.clone()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let fixed_peers: Vec<&str> = names
        .iter()
        .copied()
        .filter(|p| !FEW_AT_ONCE.iter().any(|f| f.0 == *p))
        .collect();
    let mut fleet = Fleet::start(ctx, &mut out, specs);
    if !fleet.peers().iter().any(|p| p == "ours") {
        out.notes
            .push("not measured: our http server did not start".to_string());
        fleet.stop();
        return out;
    }
    let peak_n = peak_rounds(ctx, true);
    let peak = peak_cell(ctx, &mut out, &mut fleet, tag, &names, ARCH_CONNS, peak_n);
    let slowest = slowest_peak(&peak, &fixed_peers);
    let base = slowest.as_ref().map_or(30_000.0, |s| s.1);
    ctx.log(&format!(
        "  [{tag}] calibration: slowest closed-loop peak {}",
        slowest
            .as_ref()
            .map(|(p, v)| format!("{p} {}", human(*v)))
            .unwrap_or_else(|| "unknown: 30k req/s assumed".into())
    ));
    let rounds = arch_rounds(ctx);
    let c10k_rounds = C10K_ROUNDS.min(rounds);
    // The second cell is also the first point of the C10k chart.
    let low = load_for(ARCH_FRACTION * base, ARCH_CONNS);
    let c10k_load = |conns: usize| Load {
        conns,
        rps: (C10K_RATE / conns).max(1),
    };
    let mut fixed = Vec::new();
    for (load, what) in [
        (
            low,
            format!("{:.0}% of the slowest peak", ARCH_FRACTION * 100.0),
        ),
        (c10k_load(ARCH_CONNS), "the C10k rate".to_string()),
    ] {
        let label = format!(
            "{} req/s ({what}), {} conns",
            human(load.offered()),
            load.conns
        );
        let f = Fixed {
            label,
            x: load.offered(),
            load,
            rounds,
        };
        fixed.push(fixed_cell(ctx, &mut out, &mut fleet, tag, &fixed_peers, f));
    }
    if C10K_RATE as f64 > 0.9 * base {
        out.notes.push(format!(
            "The C10k rate, {} req/s, is more than 90% of the slowest closed-loop peak here: a server that cannot keep up shows it in `served req/s`.",
            human(C10K_RATE as f64)
        ));
    }
    let mut c10k = vec![{
        let mut c = fixed[1].clone();
        c.label = format!("{ARCH_CONNS} conns × {} req/s", c10k_load(ARCH_CONNS).rps);
        c.x = ARCH_CONNS as f64;
        c
    }];
    for &conns in &C10K_CONNS[1..] {
        let load = c10k_load(conns);
        let label = format!("{conns} conns × {} req/s", load.rps);
        if nofile < conns as u64 + 100 {
            let mut cell = Cell::new(label, conns as f64, &fixed_peers, "server CPU µs/req");
            for s in &mut cell.series {
                s.unavailable = Some(format!(
                    "RLIMIT_NOFILE is {nofile}: {need} descriptors are needed"
                ));
            }
            c10k.push(cell);
            continue;
        }
        let f = Fixed {
            label,
            x: conns as f64,
            load,
            rounds: c10k_rounds,
        };
        c10k.push(fixed_cell(ctx, &mut out, &mut fleet, tag, &fixed_peers, f));
    }
    fleet.stop();

    out.notes.push(format!(
        "The fixed rates over {ARCH_CONNS} connections: {:.0}% of the slowest closed-loop peak among the servers measured at a fixed rate ({}) and {} req/s, the C10k rate; {rounds} rounds each. C10k: {} req/s over {} connections ({} req/s per connection), {c10k_rounds} round(s) each over 1,000 and 10,000 connections; RLIMIT_NOFILE {nofile} (the suite raises it for itself and its children).",
        ARCH_FRACTION * 100.0,
        slowest
            .as_ref()
            .map(|(p, v)| format!("{p}, {} req/s", human(*v)))
            .unwrap_or_else(|| "not measured: 30k req/s assumed".into()),
        human(C10K_RATE as f64),
        human(C10K_RATE as f64),
        C10K_CONNS
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        C10K_CONNS
            .iter()
            .map(|c| (C10K_RATE / c).to_string())
            .collect::<Vec<_>>()
            .join(", "),
    ));
    out.notes.push(format!(
        "Not offered a fixed rate: {}. Each holds only that many connections at once, so over {ARCH_CONNS} or more keep-alive connections the others' requests wait in the backlog until a held connection closes (h2load's never do): it cannot be offered such a load at all. They are in the peak table, where wrk's closed loop counts only the requests of the connections they hold.",
        FEW_AT_ONCE
            .iter()
            .map(|(p, n)| format!("{p} ({n} at once)", ))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out.notes.push(
        "arch_fork at 10,000 connections is 10,000 processes, arch_thread 10,000 threads (64 KiB stacks). h2load starts its main phase once it has started every connection; the window closes before h2load closes them, so the forked workers are still there to be counted. h2load's --rps timers of the connections fire together once per period: at 10,000 connections × 1 req/s the load comes as bursts of up to 10,000 requests a second, which is what the latencies there show, and the measuring window then spans a whole number of periods (2 s).".to_string(),
    );
    out.notes.push(fixed_note(ctx));
    out.notes.push(peak_note(ARCH_CONNS, peak_n));
    out.notes.push(noise_note());
    for cell in fixed.iter().chain(c10k.iter().skip(1)) {
        out.targets.push(cheapest_target(cell));
    }
    out.charts.extend(chart::lines(
        ctx,
        "arch_c10k",
        "C10k: server CPU µs per request at 10,000 req/s by connections (lower is better)",
        ("keep-alive connections", "server CPU µs/req"),
        &c10k,
    ));
    out.tables.push((
        format!("Server CPU per request at a fixed offered rate, {ARCH_CONNS} connections"),
        fixed,
    ));
    out.tables.push((
        format!(
            "C10k: server CPU per request at {} req/s by connections",
            human(C10K_RATE as f64)
        ),
        c10k.into_iter().skip(1).collect(),
    ));
    out.tables.push((
        "Closed-loop peak (wrk -t1; also the warm-up and the calibration)".to_string(),
        vec![peak],
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk() {
        let out = "Running 1s test @ http://127.0.0.1:8080/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   312.45us   40.12us   2.10ms   90.00%
    Req/Sec   150.00k     5.00k  160.00k    80.00%
  Latency Distribution
     50%  300.00us
     75%  320.00us
     90%  350.00us
     99%    1.20ms
  150000 requests in 1.00s, 12.00MB read
  Socket errors: connect 0, read 0, write 0, timeout 3
Requests/sec: 149876.54
Transfer/sec:     12.00MB
";
        let w = parse_wrk(out).unwrap();
        assert_eq!(w.rps, 149876.54);
        assert_eq!(w.p50_us, Some(300.0));
        assert_eq!(w.p99_us, Some(1200.0));
        assert_eq!(
            w.socket_errors.as_deref(),
            Some("connect 0, read 0, write 0, timeout 3")
        );
        assert_eq!(w.secs, Some(1.0));
        assert!(parse_wrk("garbage").is_none());
    }

    #[test]
    fn loads_round_to_whole_rates_per_connection() {
        assert_eq!(
            load_for(11_234.0, 50),
            Load {
                conns: 50,
                rps: 225
            }
        );
        assert_eq!(load_for(10.0, 100), Load { conns: 100, rps: 1 });
        assert_eq!(load_for(10_000.0, 10_000).offered(), 10_000.0);
    }

    #[test]
    fn the_slowest_peak_among_some_peers() {
        let mut c = Cell::new("p".into(), 1.0, &["ours", "a", "b"], "req/s");
        for (p, v) in [("ours", 50.0), ("a", 10.0), ("b", 30.0)] {
            c.get_mut(p).unwrap().rounds.push(Ok(Sample::new(v)));
        }
        assert_eq!(
            slowest_peak(&c, &["ours", "a", "b"]),
            Some(("a".into(), 10.0))
        );
        assert_eq!(slowest_peak(&c, &["ours", "b"]), Some(("b".into(), 30.0)));
        assert_eq!(slowest_peak(&c, &["zzz"]), None);
    }

    #[test]
    fn cheapest_target_judges_beyond_the_noise() {
        let mut c = Cell::new(
            "x".into(),
            1.0,
            &["ours", "arch_epoll", "arch_poll", OURS2],
            "µs",
        );
        c.higher_is_better = false;
        for (p, v) in [
            ("ours", [10.0, 10.2]),
            ("arch_epoll", [12.0, 12.5]),
            ("arch_poll", [15.0, 15.0]),
            (OURS2, [10.1, 10.0]),
        ] {
            for x in v {
                c.get_mut(p).unwrap().rounds.push(Ok(Sample::new(x)));
            }
        }
        let t = cheapest_target(&c);
        assert_eq!(t.pass, Some(true), "{t:?}");
        assert!(t.measured.starts_with("cheapest other: arch_epoll"));
        // A cheaper architecture beyond the noise: a miss.
        c.get_mut("arch_epoll").unwrap().rounds = vec![Ok(Sample::new(8.0)), Ok(Sample::new(8.0))];
        assert_eq!(cheapest_target(&c).pass, Some(false));
    }

    #[test]
    fn plans_fit_the_budget() {
        let ctx = Ctx::for_tests(false);
        let (h, a) = (plan_http(&ctx), plan_arch(&ctx));
        assert!((100.0..=180.0).contains(&h), "http {h}");
        assert!((150.0..=330.0).contains(&a), "arch {a}");
    }
}
