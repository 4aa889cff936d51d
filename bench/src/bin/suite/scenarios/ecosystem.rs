//! Scenario `ecosystem` (issue 13): the ecosystem's stacks on this runtime
//! against the same code on tokio's current-thread runtime, each with an
//! A-vs-A noise floor (`ours'`, a second copy of our server, measured in
//! the same rounds as `ours`).
//!
//! 1. hyper (`hyper_http --rt ours|tokio`, the `http` example's answer),
//!    HTTP/1.1 and HTTP/2 (h2c prior knowledge), under h2load at a fixed
//!    offered rate (`--rps`): the server's CPU per request, user and system
//!    apart; the native `http` example beside it (HTTP/1.1 only).
//! 2. TLS (`tls_server --rt ours|tokio`, tokio-rustls with the ring
//!    provider): full handshakes at a fixed rate (half the slower peak of a
//!    calibration run): server CPU per handshake; and bulk throughput over
//!    one connection (64 MiB downloads): MB/s and server CPU per MB.
//! 3. Idle connections: 10,000 keep-alive connections idle after one
//!    request each on a fresh hyper server: its RSS growth per connection.
//!
//! Every run is at least 3 s (the idle cell's runs excepted: they measure
//! memory), the variants interleaved and rotated from round to round; at
//! most 3 rounds, about 3 minutes in all. Quick mode (2 rounds) leaves out
//! the native example.

use std::time::{Duration, Instant};

use crate::harness::fleet::{Fleet, Spec};
use crate::harness::h2load::{self, H2load};
use crate::harness::model::{
    human, num, result_lines, Cell, NoiseRow, Outcome, Sample, Target, SATURATED,
};
use crate::harness::rounds::Rounds;
use crate::harness::{proc, Ctx};

/// Seconds of every measured run (h2load `-D`, `eco_load --secs`).
const SECS: u32 = 3;
/// Seconds of each server's h2load warm-up run (not measured).
const WARM_SECS: u32 = 1;
/// Seconds of each TLS server's calibration run (closed loop).
const CALIBRATION_SECS: f64 = 1.5;
/// Handshakes in flight at most (calibration and fixed rate).
const HS_CONC: usize = 16;
/// Bytes per download of the bulk cell.
const BULK_SIZE: u64 = 64 << 20;
/// Connections of the idle cell.
const IDLE_CONNS: usize = 10_000;
/// Memory per idle connection of tokio's echo server, the bar.
const TOKIO_ECHO_IDLE_KIB: f64 = 16.8;

/// The tag of the progress lines.
const TAG: &str = "ecosystem";
/// Our server, its second copy (the noise floor), tokio's.
const OURS: &str = "ours";
const OURS2: &str = "ours'";
const TOKIO: &str = "tokio";
/// The native `http` example.
const NATIVE: &str = "http";

/// One h2load load: connections, streams per connection, requests per
/// second per connection (h2load's `--rps` is per client).
#[derive(Debug, Clone, Copy)]
struct Load {
    conns: usize,
    streams: usize,
    rps: usize,
    h2: bool,
}

impl Load {
    fn offered(&self) -> usize {
        self.conns * self.rps
    }

    fn label(&self) -> String {
        if self.h2 {
            format!(
                "hyper HTTP/2, {} conns × {} streams, {} req/s",
                self.conns,
                self.streams,
                human(self.offered() as f64)
            )
        } else {
            format!(
                "hyper HTTP/1.1, {} conns, {} req/s",
                self.conns,
                human(self.offered() as f64)
            )
        }
    }
}

/// HTTP/1.1: 50 keep-alive connections, one request at a time each.
const H1: Load = Load {
    conns: 50,
    streams: 1,
    rps: 200,
    h2: false,
};
/// HTTP/2 (h2c prior knowledge): 10 connections × 10 concurrent streams.
const H2: Load = Load {
    conns: 10,
    streams: 10,
    rps: 1000,
    h2: true,
};

/// Rounds per cell: the run's, at most 2 (the scenario's ~2 minutes).
fn rounds(ctx: &Ctx) -> usize {
    ctx.rounds.min(2)
}

/// Planned seconds of the scenario.
pub(crate) fn plan(ctx: &Ctx) -> f64 {
    let r = rounds(ctx) as f64;
    // Quick mode leaves out the native example.
    let extra = if ctx.quick { 0.0 } else { 1.0 };
    let run = SECS as f64 + 0.2;
    let warm = WARM_SECS as f64 + 0.2;
    let h1 = (3.0 + extra) * (warm + r * run);
    let h2 = 3.0 * (warm + r * run);
    let tls = 2.0 * (CALIBRATION_SECS + 0.6) + r * 3.0 * run * 2.0;
    let idle = r * 3.0 * 2.2;
    h1 + h2 + tls + idle
}

/// The server's CPU so far: (total with ns resolution, user, system), the
/// last two as the scheduler's raw tick counts (taskstats), or from
/// `/proc/<pid>/stat` where taskstats cannot be read.
pub(crate) fn server_cpu(pid: i32) -> Option<(f64, f64, f64)> {
    let (u, s) = proc::user_system_ticks(pid).or_else(|| proc::proc_user_system_secs(pid))?;
    Some((proc::cpu_secs_precise(pid)?, u, s))
}

/// The server's CPU between `before` and `after`, in µs per `per` units:
/// (total, user, system). The total is the difference of the precise
/// clock; it is split into user and system by the share of the ticks
/// counted in user mode over the same interval (NaN, which medians skip,
/// when no tick fell in it).
pub(crate) fn cpu_per(
    before: (f64, f64, f64),
    after: (f64, f64, f64),
    per: f64,
) -> (f64, f64, f64) {
    let total = (after.0 - before.0) * 1e6 / per.max(1e-9);
    let (du, ds) = (after.1 - before.1, after.2 - before.2);
    if du + ds <= 0.0 {
        return (total, f64::NAN, f64::NAN);
    }
    let user = total * du / (du + ds);
    (total, user, total - user)
}

/// The value of extra `key` of a sample.
fn extra(s: &Sample, key: &str) -> Option<f64> {
    s.extras.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// One h2load run against `addr`.
fn h2load(
    ctx: &Ctx,
    out: &mut Outcome,
    addr: std::net::SocketAddr,
    load: &Load,
    secs: u32,
) -> Result<(H2load, f64), String> {
    let mut args: Vec<String> = Vec::new();
    if !load.h2 {
        args.push("--h1".into());
    }
    args.extend([
        "-c".into(),
        load.conns.to_string(),
        "-m".into(),
        load.streams.to_string(),
        "--rps".into(),
        load.rps.to_string(),
        "-D".into(),
        secs.to_string(),
    ]);
    h2load::run(ctx, out, args, addr, secs, "h2load")
}

/// The hyper cell of `load`: server CPU per request at the fixed rate.
fn hyper_cell(ctx: &Ctx, out: &mut Outcome, load: Load) -> Cell {
    let bin = ctx.bin("hyper_http");
    let mut args = vec!["--rt", "ours"];
    if load.h2 {
        args.push("--h2");
    }
    let tokio_args: Vec<&str> = ["--rt", "tokio"]
        .into_iter()
        .chain(load.h2.then_some("--h2"))
        .collect();
    let mut specs = vec![
        Spec::new(OURS, &bin, &args),
        Spec::new(TOKIO, &bin, &tokio_args),
        Spec::new(OURS2, &bin, &args),
    ];
    if !ctx.quick && !load.h2 {
        specs.push(Spec::new(NATIVE, &ctx.example("http"), &[]));
    }
    let names: Vec<String> = specs.iter().map(|s| s.peer.clone()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut cell = Cell::new(
        load.label(),
        load.offered() as f64,
        &names,
        "server CPU µs/req",
    );
    cell.higher_is_better = false;
    if !proc::program_in_path("h2load") {
        out.unavailable(
            "h2load",
            "h2load is not installed (bench/run installs nghttp2-client)",
        );
        return cell;
    }
    let mut fleet = Fleet::start(ctx, out, specs);
    let peers = fleet.peers();
    for peer in &peers {
        if let Ok(addr) = fleet.addr(peer, out) {
            if let Err(e) = h2load(ctx, out, addr, &load, WARM_SECS) {
                eprintln!("suite: {TAG} warm-up {peer}: {e}");
            }
        }
    }
    let peers: Vec<&str> = peers.iter().map(String::as_str).collect();
    Rounds::new(ctx, TAG)
        .rounds(rounds(ctx))
        .rotate()
        .show(|v| format!("{v:.1}µs"))
        .run(out, &mut cell, &peers, |out, peer| {
            let addr = fleet.addr(peer, out)?;
            let pid = fleet.pid(peer).ok_or("the server is not running")?;
            let before = server_cpu(pid).ok_or("cannot read the server's CPU time")?;
            let (h, loader) = h2load(ctx, out, addr, &load, SECS)?;
            let after = server_cpu(pid).ok_or("cannot read the server's CPU time")?;
            let (total, user, sys) = cpu_per(before, after, h.succeeded as f64);
            let mut s = Sample::new(total);
            s.extras.push(("user µs/req", user));
            s.extras.push(("sys µs/req", sys));
            s.extras.push(("req/s", h.rps));
            for (key, v) in [
                ("p50 µs", h.p50_us),
                ("p99 µs", h.p99_us),
                ("max µs", h.max_us),
            ] {
                if let Some(v) = v {
                    s.extras.push((key, v));
                }
            }
            s.loader_cpu = Some(loader);
            s.rejected = loader >= SATURATED;
            let mut notes = Vec::new();
            if h.failed > 0 {
                notes.push(format!("{} requests failed", h.failed));
            }
            if h.rps < 0.97 * load.offered() as f64 {
                notes.push(format!(
                    "served {} of the {} req/s offered",
                    human(h.rps),
                    human(load.offered() as f64)
                ));
            }
            if !notes.is_empty() {
                s.note = Some(notes.join("; "));
            }
            Ok(s)
        });
    fleet.stop();
    cell
}

/// One `eco_load` run; its RESULT line.
fn eco_load(
    ctx: &Ctx,
    out: &mut Outcome,
    args: Vec<String>,
    secs: f64,
) -> Result<Vec<(String, String)>, String> {
    let (cmd, f) = proc::run(
        ctx.loader_core,
        &ctx.bin("eco_load"),
        &args,
        Duration::from_secs_f64(secs + 60.0),
    )?;
    out.command(&cmd);
    if !f.success() {
        return Err(format!("eco_load: {}", f.describe()));
    }
    result_lines(&f.stdout)
        .pop()
        .ok_or_else(|| format!("no RESULT line from eco_load: {}", f.describe()))
}

/// The TLS cells: handshakes at a fixed rate (server CPU per handshake),
/// bulk throughput (MB/s) and the server's CPU per MB of it.
fn tls_cells(ctx: &Ctx, out: &mut Outcome) -> Vec<Cell> {
    let bin = ctx.bin("tls_server");
    let specs = vec![
        Spec::new(OURS, &bin, &["--rt", "ours"]),
        Spec::new(TOKIO, &bin, &["--rt", "tokio"]),
        Spec::new(OURS2, &bin, &["--rt", "ours"]),
    ];
    let names = [OURS, TOKIO, OURS2];
    let mut fleet = Fleet::start(ctx, out, specs);
    let peers = fleet.peers();
    let peers: Vec<&str> = peers.iter().map(String::as_str).collect();
    let addr_arg = |a: std::net::SocketAddr| vec!["--addr".to_string(), a.to_string()];

    // Calibration (and warm-up): the closed-loop peak of ours and tokio.
    let mut peaks = Vec::new();
    for peer in [OURS, TOKIO] {
        let Ok(addr) = fleet.addr(peer, out) else {
            continue;
        };
        let mut args = vec!["handshakes".to_string()];
        args.extend(addr_arg(addr));
        args.extend([
            "--secs".into(),
            CALIBRATION_SECS.to_string(),
            "--warmup".into(),
            "0.3".into(),
            "--conc".into(),
            HS_CONC.to_string(),
        ]);
        match eco_load(ctx, out, args, CALIBRATION_SECS) {
            Ok(r) => {
                if let Some(rate) = num(&r, "rate") {
                    peaks.push((peer, rate, num(&r, "client_cpu").unwrap_or(0.0)));
                }
            }
            Err(e) => eprintln!("suite: {TAG} TLS calibration {peer}: {e}"),
        }
    }
    let slower = peaks.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let rate = if slower.is_finite() {
        ((slower * 0.5 / 10.0).round() * 10.0).clamp(20.0, 20_000.0)
    } else {
        100.0
    };
    out.notes.push(format!(
        "TLS calibration (also the servers' warm-up): `eco_load handshakes --conc {HS_CONC}` closed loop for {CALIBRATION_SECS} s, one run each: {}; the fixed rate is half the slower: {} handshakes/s.",
        if peaks.is_empty() {
            "no result (the fixed rate falls back to 100/s)".to_string()
        } else {
            peaks
                .iter()
                .map(|(p, r, c)| format!("{p} {}/s (client CPU {:.0}%)", human(*r), c * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        },
        human(rate)
    ));
    ctx.log(&format!(
        "  [{TAG}] TLS calibration, closed-loop handshakes/s: {}; fixed rate {rate}/s",
        peaks
            .iter()
            .map(|(p, r, _)| format!("{p} {}", human(*r)))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let mut hs = Cell::new(
        format!("TLS handshakes at {}/s", human(rate)),
        rate,
        &names,
        "server CPU µs/handshake",
    );
    hs.higher_is_better = false;
    Rounds::new(ctx, TAG)
        .rounds(rounds(ctx))
        .rotate()
        .show(|v| format!("{v:.0}µs"))
        .run(out, &mut hs, &peers, |out, peer| {
            let addr = fleet.addr(peer, out)?;
            let pid = fleet.pid(peer).ok_or("the server is not running")?;
            let mut args = vec!["handshakes".to_string()];
            args.extend(addr_arg(addr));
            args.extend([
                "--secs".into(),
                SECS.to_string(),
                "--warmup".into(),
                "0".into(),
                "--conc".into(),
                HS_CONC.to_string(),
                "--rate".into(),
                format!("{rate:.0}"),
            ]);
            let before = server_cpu(pid).ok_or("cannot read the server's CPU time")?;
            let r = eco_load(ctx, out, args, SECS as f64)?;
            let after = server_cpu(pid).ok_or("cannot read the server's CPU time")?;
            let completed = num(&r, "completed").unwrap_or(0.0);
            if completed < 1.0 {
                return Err("no handshake completed".into());
            }
            let (total, user, sys) = cpu_per(before, after, completed);
            let mut s = Sample::new(total);
            s.extras.push(("user µs/hs", user));
            s.extras.push(("sys µs/hs", sys));
            for (key, name, scale) in [
                ("rate", "handshakes/s", 1.0),
                ("p50_us", "p50 ms", 1e-3),
                ("p99_us", "p99 ms", 1e-3),
            ] {
                if let Some(v) = num(&r, key) {
                    s.extras.push((name, v * scale));
                }
            }
            let loader = num(&r, "client_cpu").unwrap_or(0.0);
            s.loader_cpu = Some(loader);
            s.rejected = loader >= SATURATED;
            let errors = num(&r, "errors").unwrap_or(0.0);
            if errors > 0.0 {
                s.note = Some(format!("{errors:.0} connections failed"));
            }
            Ok(s)
        });

    let mut bulk = Cell::new(
        format!("TLS bulk, {} MiB downloads, 1 conn", BULK_SIZE >> 20),
        1.0,
        &names,
        "MB/s",
    );
    Rounds::new(ctx, TAG)
        .rounds(rounds(ctx))
        .rotate()
        .show(|v| format!("{v:.0}MB/s"))
        .run(out, &mut bulk, &peers, |out, peer| {
            let addr = fleet.addr(peer, out)?;
            let pid = fleet.pid(peer).ok_or("the server is not running")?;
            let mut args = vec!["bulk".to_string()];
            args.extend(addr_arg(addr));
            args.extend([
                "--secs".into(),
                SECS.to_string(),
                "--size".into(),
                BULK_SIZE.to_string(),
            ]);
            let before = server_cpu(pid).ok_or("cannot read the server's CPU time")?;
            let r = eco_load(ctx, out, args, SECS as f64)?;
            let after = server_cpu(pid).ok_or("cannot read the server's CPU time")?;
            let mbs = num(&r, "mb_per_s").ok_or("no mb_per_s")?;
            let total_mb = num(&r, "total_bytes").ok_or("no total_bytes")? / 1e6;
            let (total, user, sys) = cpu_per(before, after, total_mb);
            let mut s = Sample::new(mbs);
            s.extras.push(("server CPU µs/MB", total));
            s.extras.push(("user µs/MB", user));
            s.extras.push(("sys µs/MB", sys));
            let loader = num(&r, "client_cpu").unwrap_or(0.0);
            s.extras.push(("client CPU %", loader * 100.0));
            s.loader_cpu = Some(loader);
            s.rejected = loader >= SATURATED;
            Ok(s)
        });
    fleet.stop();
    // The server's CPU per MB as a cell of its own (the same runs).
    let mut per_mb = bulk.clone();
    per_mb.label = format!("{}: server CPU per MB", bulk.label);
    per_mb.unit = "server CPU µs/MB";
    per_mb.higher_is_better = false;
    for ser in &mut per_mb.series {
        for s in ser.rounds.iter_mut().flatten() {
            if let Some(v) = extra(s, "server CPU µs/MB") {
                s.value = v;
            }
            // The MB/s row already shows the rest.
            s.extras
                .retain(|(k, _)| *k == "user µs/MB" || *k == "sys µs/MB");
        }
    }
    vec![hs, bulk, per_mb]
}

/// One idle run: a fresh `hyper_http` with `args`, its VmRSS, then
/// `eco_load idle --request` holding [`IDLE_CONNS`] connections, and the
/// VmRSS again.
fn idle_run(ctx: &Ctx, out: &mut Outcome, args: &[&str]) -> Result<Sample, String> {
    let server = proc::start_server(
        ctx.server_core,
        &ctx.bin("hyper_http"),
        args,
        Duration::from_secs(5),
    )?;
    let addr = server.addr.to_string();
    out.command(&server.child.cmdline.replace(&addr, "<addr>"));
    let pid = server.child.pid();
    // Let the readiness probe's connection close down.
    std::thread::sleep(Duration::from_millis(100));
    let rss0 = proc::rss_bytes(pid).ok_or("cannot read the server's VmRSS")?;
    let load_args: Vec<String> = [
        "idle",
        "--addr",
        &addr,
        "--conns",
        &IDLE_CONNS.to_string(),
        "--request",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut client = proc::spawn(ctx.loader_core, &ctx.bin("eco_load"), &load_args)
        .map_err(|e| e.to_string())?;
    out.command(&client.cmdline.replace(&addr, "<addr>"));
    let t0 = Instant::now();
    loop {
        if client.stdout_so_far().contains("READY") {
            break;
        }
        if let Some(f) = client.try_finished() {
            return Err(format!("eco_load idle: {}", f.describe()));
        }
        if t0.elapsed() > Duration::from_secs(60) {
            return Err("eco_load idle did not open its connections in 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let open_secs = t0.elapsed().as_secs_f64();
    // Let the server finish with the last answers.
    std::thread::sleep(Duration::from_millis(300));
    let rss1 = proc::rss_bytes(pid).ok_or("cannot read the server's VmRSS")?;
    client.kill();
    server.child.kill();
    let mut s = Sample::new((rss1 - rss0) / 1024.0 / IDLE_CONNS as f64);
    s.extras.push(("RSS before MiB", rss0 / (1 << 20) as f64));
    s.extras.push(("RSS after MiB", rss1 / (1 << 20) as f64));
    s.extras.push(("open secs", open_secs));
    Ok(s)
}

/// The idle cell: RSS per idle keep-alive connection, a fresh server per
/// run.
fn idle_cell(ctx: &Ctx, out: &mut Outcome) -> Cell {
    let variants: [(&str, &[&str]); 3] = [
        (OURS, &["--rt", "ours"]),
        (TOKIO, &["--rt", "tokio"]),
        (OURS2, &["--rt", "ours"]),
    ];
    let names: Vec<&str> = variants.iter().map(|v| v.0).collect();
    let mut cell = Cell::new(
        format!(
            "hyper HTTP/1.1, {}k keep-alive conns idle after one request",
            IDLE_CONNS / 1000
        ),
        IDLE_CONNS as f64,
        &names,
        "RSS KiB/conn",
    );
    cell.higher_is_better = false;
    Rounds::new(ctx, TAG)
        .rounds(rounds(ctx))
        .rotate()
        .show(|v| format!("{v:.1}KiB"))
        .run(out, &mut cell, &names, |out, peer| {
            let args = variants
                .iter()
                .find(|v| v.0 == peer)
                .map(|v| v.1)
                .ok_or("unknown variant")?;
            idle_run(ctx, out, args)
        });
    cell
}

fn noise_md(rows: &[NoiseRow]) -> String {
    let mut s = String::from(
        "### Ours against tokio, beside the noise floor\n\n\
| figure | ours | tokio | ours/tokio median [min–max] | noise floor ours'/ours [min–max] | beyond the noise? | issue 13's goal |\n\
|---|---:|---:|---:|---:|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            r.what,
            r.md_cells(),
            r.goal()
        ));
    }
    s.push_str(
        "\nours/tokio is the median of the per-round ratios of the figure (below 1 = ours lower; for CPU and memory lower is better, for MB/s higher). ours' is a second copy of our server measured in the same rounds: ours'/ours shows how far two identical servers differ on this machine, so a ours/tokio inside that range (made symmetric around 1.00x: an A-vs-A ratio r means identical servers differ by r either way) is no difference. \"beyond the noise\" needs every round's ours/tokio outside it.\n",
    );
    s
}

/// Runs the scenario.
pub(crate) fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome {
        name: "ecosystem",
        title: "Ecosystem: hyper, TLS, idle connections".to_string(),
        ..Default::default()
    };
    let n = rounds(ctx);
    out.notes.push(format!(
        "The same code above the stream on this runtime (`ours`) and on tokio's current-thread runtime (`tokio`); `ours'` is a second copy of our server, its ratio to `ours` the noise floor. {n} rounds per cell, the variants interleaved and their order rotated from round to round; measured runs of {SECS} s. Servers on core {}, load generators on core {}. Server CPU = the server process's CPU-time clock over the run, divided by the work done; split into user and system by the share of the scheduler's ticks (1/HZ each) that found it in user mode over the run (raw per-thread counts from taskstats).",
        ctx.server_core.map(|x| x.to_string()).unwrap_or_else(|| "–".into()),
        ctx.loader_core.map(|x| x.to_string()).unwrap_or_else(|| "–".into()),
    ));
    for bin in ["hyper_http", "tls_server", "eco_load"] {
        if !proc::program_in_path(&ctx.bin(bin)) {
            out.notes
                .push(format!("not measured: target/release/{bin} is missing"));
            return out;
        }
    }
    let mut rows = Vec::new();

    // 1. hyper at a fixed rate.
    let mut hyper_cells = Vec::new();
    for load in [H1, H2] {
        let cell = hyper_cell(ctx, &mut out, load);
        let proto = if load.h2 { "HTTP/2" } else { "HTTP/1.1" };
        rows.push(NoiseRow::new(
            &cell,
            None,
            format!("hyper {proto}: server CPU µs/req"),
            false,
            Some((0.9, "≤")),
        ));
        for (key, what) in [
            ("user µs/req", "user µs/req"),
            ("sys µs/req", "system µs/req"),
        ] {
            rows.push(NoiseRow::new(
                &cell,
                Some(key),
                format!("hyper {proto}: {what}"),
                false,
                None,
            ));
        }
        hyper_cells.push(cell);
    }
    out.notes.push(format!(
        "hyper: `hyper_http --rt ours|tokio [--h2]` (hyper 1's connection builders) and the native `http` example (HTTP/1.1 only), each started once; a {WARM_SECS} s h2load warm-up per server, then `h2load [--h1] -c C -m M --rps R -D {SECS}` (h2load's --rps is per connection; HTTP/2 is h2c with prior knowledge). CPU per request = the server's CPU over the h2load run / requests succeeded. p50/p99 µs: the time per request from h2load's per-request log (`--log-file`), max from its summary. A round is rejected if h2load used {:.0}% of its core.",
        SATURATED * 100.0
    ));
    out.tables.push((
        "hyper at a fixed offered rate: server CPU per request".to_string(),
        hyper_cells,
    ));

    // 2. TLS.
    let tls = tls_cells(ctx, &mut out);
    rows.push(NoiseRow::new(
        &tls[0],
        None,
        "TLS: server CPU µs/handshake".into(),
        false,
        None,
    ));
    rows.push(NoiseRow::new(
        &tls[1],
        None,
        "TLS bulk: MB/s".into(),
        true,
        Some((1.0, "≥")),
    ));
    rows.push(NoiseRow::new(
        &tls[2],
        None,
        "TLS bulk: server CPU µs/MB".into(),
        false,
        None,
    ));
    out.notes.push(format!(
        "TLS: `tls_server --rt ours|tokio` (tokio-rustls 0.26, ring provider, a self-signed ECDSA P-256 certificate from rcgen, TLS 1.3, no session tickets or cache) against `eco_load` (a tokio-rustls client on a tokio current-thread runtime, pinned to the loader core; it offers the X25519 key exchange only, as browsers and curl lead with it, where the ring provider's default would lead with P-384, several times slower in ring; it skips certificate verification). Handshakes: `eco_load handshakes --conc {HS_CONC} --rate R --secs {SECS}`, every connection new (no resumption): connect, handshake, one byte each way, the server closes; CPU per handshake = the server's CPU over the run / handshakes completed; p50/p99 from connect to the server's close. Bulk: `eco_load bulk --size {BULK_SIZE}`: {} MiB downloads (the server writes 64 KiB at a time) one after another over one connection for {SECS} s after a 4 MiB warm-up; MB = 10^6 bytes; CPU per MB over every byte sent. The client decrypts as much as the server encrypts, so on 2 cores MB/s can be bounded by the client (see client CPU %); CPU per MB compares the servers either way.",
        BULK_SIZE >> 20
    ));
    let mut tls = tls.into_iter();
    out.tables.push((
        "TLS handshakes (tokio-rustls, ring): server CPU per handshake at a fixed rate".to_string(),
        tls.next().into_iter().collect(),
    ));
    out.tables.push((
        "TLS bulk throughput (tokio-rustls, ring)".to_string(),
        tls.collect(),
    ));

    // 3. Idle connections.
    let idle = idle_cell(ctx, &mut out);
    rows.push(NoiseRow::new(
        &idle,
        None,
        format!("RSS KiB per idle conn ({}k)", IDLE_CONNS / 1000),
        false,
        None,
    ));
    let idle_row = rows.last().expect("the idle row");
    let ours_idle = idle.get(OURS).and_then(|s| s.median());
    let tokio_idle = idle.get(TOKIO).and_then(|s| s.median());
    out.targets.push(Target {
        what: format!(
            "idle hyper connection: ours ≤ tokio's RSS per connection (not above it beyond the noise floor) and ≤ tokio's echo server's {TOKIO_ECHO_IDLE_KIB} KiB"
        ),
        measured: match (ours_idle, tokio_idle) {
            (Some(o), Some(t)) => format!(
                "ours {o:.2} KiB, tokio {t:.2} KiB; ours/tokio {}, noise {}",
                idle_row.vs_peer.map(|r| r.show()).unwrap_or_default(),
                idle_row.noise.map(|r| r.show()).unwrap_or_default()
            ),
            _ => "not measured".into(),
        },
        pass: match (ours_idle, tokio_idle) {
            (Some(o), Some(_)) => {
                Some(idle_row.verdict() != "ours worse" && o <= TOKIO_ECHO_IDLE_KIB)
            }
            _ => None,
        },
        ..Default::default()
    });
    out.notes.push(format!(
        "idle: a fresh `hyper_http --rt <rt>` per run (HTTP/1.1, no header-read timeout); its VmRSS (/proc/<pid>/status) 100 ms after start, then `eco_load idle --conns {IDLE_CONNS} --request` (blocking std sockets, loader core) opens the connections and sends one `GET /` on each, reads the answer, and holds them; 300 ms after its READY the VmRSS again: KiB per connection = (after − before) / {IDLE_CONNS}. The socket buffers the kernel holds are not in the RSS. The issue's bar: tokio's echo server, {TOKIO_ECHO_IDLE_KIB} KiB per idle connection."
    ));
    out.tables
        .push(("Idle connections: server memory".to_string(), vec![idle]));

    for r in &rows {
        if r.goal.is_some() {
            out.targets.push(r.target());
        }
    }
    for r in &rows {
        ctx.log(&format!("  [{TAG}] {}: {}", r.what, r.summary("tokio")));
    }
    out.extra_md.push(noise_md(&rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(ours: &[f64], tokio: &[f64], ours2: &[f64]) -> Cell {
        let mut c = Cell::new("x".into(), 1.0, &[OURS, TOKIO, OURS2], "u");
        c.higher_is_better = false;
        for (peer, v) in [(OURS, ours), (TOKIO, tokio), (OURS2, ours2)] {
            for &x in v {
                c.get_mut(peer).unwrap().rounds.push(Ok(Sample::new(x)));
            }
        }
        c
    }

    #[test]
    fn noise_row_verdicts_and_goals() {
        // ours 8 µs, tokio 10 µs: ours/tokio 0.8, noise 0.98–1.02.
        let c = cell(&[8.0, 8.0, 8.0], &[10.0, 10.0, 10.0], &[7.9, 8.1, 8.0]);
        let r = NoiseRow::new(&c, None, "cpu".into(), false, Some((0.9, "≤")));
        assert!((r.vs_peer.unwrap().median - 0.8).abs() < 1e-9);
        assert_eq!(r.verdict(), "ours better");
        assert_eq!(r.goal(), "≤ 0.90x: pass");
        assert_eq!(r.target().pass, Some(true));
        // Higher is better: the same ratio is worse.
        let r = NoiseRow::new(&c, None, "mb".into(), true, Some((1.0, "≥")));
        assert_eq!(r.verdict(), "ours worse");
        assert_eq!(r.goal(), "≥ 1.00x: MISS");
        // Beyond a one-sided noise floor, but not beyond its mirror image:
        // ours' 0.90x-0.98x of ours says identical servers differ by up to
        // 11% either way, so ours 5% above tokio is no difference.
        let c = cell(
            &[10.5, 10.5, 10.5],
            &[10.0, 10.0, 10.0],
            &[9.45, 10.29, 9.8],
        );
        let r = NoiseRow::new(&c, None, "cpu".into(), false, None);
        assert_eq!(r.verdict(), "within the noise");
        // A ratio inside the noise floor.
        let c = cell(&[10.0, 10.0], &[9.5, 10.5], &[9.0, 11.0]);
        let r = NoiseRow::new(&c, None, "cpu".into(), false, None);
        assert_eq!(r.verdict(), "within the noise");
        assert_eq!(r.goal(), "—");
        let empty = cell(&[], &[], &[]);
        assert_eq!(
            NoiseRow::new(&empty, None, "e".into(), false, None).verdict(),
            "not measured"
        );
        assert!(noise_md(&[r]).contains("| cpu | 10.00 | 10.00 |"));
    }

    #[test]
    fn cpu_per_splits_the_precise_total_by_the_window_ticks() {
        // 0.5 s of CPU over 1000 requests; 12 ms of user ticks, 16 ms of system.
        let (t, u, s) = cpu_per((10.0, 5.0, 5.0), (10.5, 5.012, 5.016), 1000.0);
        assert!((t - 500.0).abs() < 1e-6);
        assert!((u - 500.0 * 0.012 / 0.028).abs() < 1e-6);
        assert!((u + s - t).abs() < 1e-9);
        // No tick in the window: the split is unknown.
        let (t, u, s) = cpu_per((1.0, 2.0, 3.0), (1.001, 2.0, 3.0), 10.0);
        assert!((t - 100.0).abs() < 1e-6);
        assert!(u.is_nan() && s.is_nan());
    }

    #[test]
    fn plan_is_about_two_minutes() {
        let p = plan(&Ctx::for_tests(false));
        assert!((90.0..=130.0).contains(&p), "{p}");
    }
}
