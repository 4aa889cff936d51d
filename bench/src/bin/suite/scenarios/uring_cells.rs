//! The cells of the `uring` scenario ([`super::uring`]) and their
//! parameters ([`Config`]): the runs themselves (echo pairs, idle
//! connections, send_bench, timeout_read, fs_randread) and the samples
//! they give. The scenario (which cells, the summary) uses this module,
//! never the other way round.

use std::time::{Duration, Instant};

use super::echo::{fixed_rate_sample, fmt_secs, half_slowest, label, load, peak_sample, Load};
use super::files;
use crate::harness::fleet::{Fleet, Spec};
use crate::harness::model::{field, human, num, result_lines, Cell, Outcome, Sample, SATURATED};
use crate::harness::rounds::Rounds;
use crate::harness::{proc, Ctx};

/// The parameters of one invocation.
pub(crate) struct Config {
    /// Connections of the idle cell.
    pub idle_conns: usize,
    /// Total message rate of the idle cell (so each connection sends once
    /// every `idle_conns / idle_rate` seconds).
    pub idle_rate: f64,
    /// Measured seconds of an idle run.
    pub idle_secs: f64,
    /// Warm-up seconds of an idle run.
    pub idle_warmup: f64,
    /// Whether to add the idle pair's peak at 1,000 connections.
    pub idle_peak: bool,
    /// Measured seconds of a peak run.
    pub peak_secs: f64,
    /// Warm-up seconds of a peak run.
    pub peak_warmup: f64,
    /// Measured seconds of a fixed-rate run.
    pub fixed_secs: f64,
    /// Bytes per send_bench run.
    pub send_bytes: u64,
    /// Round trips per timeout_read measurement.
    pub timeout_trips: u32,
    /// Seconds per fs_randread run.
    pub randread_secs: u32,
}

/// The configuration for this mode.
pub(crate) fn config(ctx: &Ctx) -> Config {
    if ctx.quick {
        Config {
            idle_conns: 10_000,
            idle_rate: 5000.0,
            idle_secs: 1.5,
            idle_warmup: 0.3,
            idle_peak: false,
            peak_secs: 0.4,
            peak_warmup: 0.15,
            fixed_secs: 0.8,
            send_bytes: 256 << 20,
            timeout_trips: 30_000,
            randread_secs: 1,
        }
    } else {
        Config {
            idle_conns: 10_000,
            idle_rate: 5000.0,
            idle_secs: 3.0,
            idle_warmup: 0.5,
            idle_peak: true,
            peak_secs: 0.8,
            peak_warmup: 0.25,
            fixed_secs: 1.5,
            send_bytes: 1 << 30,
            timeout_trips: 100_000,
            randread_secs: 1,
        }
    }
}

/// The idle cell's servers: A, B, then the reference.
pub(crate) const IDLE: [&str; 3] = ["ours", "ours_multishot", "tokio"];
/// send_bench's ways: A (copy), B (SEND_ZC), C (SEND_ZC, fixed buffer).
pub(crate) const WAYS: [&str; 3] = ["write_all", "write_all_zc", "send_zc_fixed"];
/// Write sizes of the SEND_ZC cell.
pub(crate) const SEND_SIZES: [usize; 2] = [64 << 10, 1 << 20];

/// The send-bundle cell's ways: a `SendQueue` without and with bundles.
pub(crate) const QUEUE_WAYS: [&str; 2] = ["queue_sendmsg", "queue_bundle"];

/// Bytes per flush of the send-bundle cell (1 KiB pieces).
pub(crate) const QUEUE_FLUSH: usize = 64 << 10;
/// timeout_read's ways: A (the default path), B (linked), reference.
pub(crate) const TIMEOUT_WAYS: [&str; 3] = ["time_timeout", "read_timeout", "plain_read"];
/// Peak throughput, and (if `fixed`) CPU per message at a fixed rate, of
/// the echo servers `specs` (A first) at `size` × `conns`.
pub(crate) fn echo_pair(
    ctx: &Ctx,
    out: &mut Outcome,
    c: &Config,
    tag: &str,
    specs: Vec<Spec>,
    (size, conns): (usize, usize),
    fixed: bool,
) -> (Cell, Option<Cell>) {
    let names: Vec<String> = specs.iter().map(|s| s.peer.clone()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut peak = Cell::new(
        format!("{tag}: {}", label(size, conns)),
        conns as f64,
        &names,
        "msgs/s",
    );
    peak.vs_first = true;
    let mut fleet = Fleet::start(ctx, out, specs);
    let peers = fleet.peers();
    let peers: Vec<&str> = peers.iter().map(String::as_str).collect();
    let l = Load {
        size,
        conns,
        secs: c.peak_secs,
        warmup: c.peak_warmup,
        rate: None,
    };
    Rounds::new(ctx, "uring").run(out, &mut peak, &peers, |out, peer| {
        let addr = fleet.addr(peer, out)?;
        peak_sample(&load(ctx, out, addr, &l)?)
    });
    if !fixed || peers.is_empty() {
        fleet.stop();
        return (peak, None);
    }
    // Half the slower variant's peak, so that both sustain it.
    let rate = half_slowest(&peak, 2000.0, 10000.0);
    let mut cpu = Cell::new(
        format!(
            "{tag}: CPU/msg, {} at {} msgs/s",
            label(size, conns),
            human(rate)
        ),
        conns as f64,
        &names,
        "CPU µs/msg",
    );
    cpu.higher_is_better = false;
    cpu.vs_first = true;
    let l = Load {
        size,
        conns,
        secs: c.fixed_secs,
        warmup: 0.0,
        rate: Some(rate),
    };
    Rounds::new(ctx, "uring").show(|v| format!("{v:.2}µs")).run(
        out,
        &mut cpu,
        &peers,
        |out, peer| fixed_rate_sample(ctx, out, &mut fleet, peer, &l, proc::cpu_secs_precise),
    );
    fleet.stop();
    (peak, Some(cpu))
}

/// One idle run: a fresh `echo_server <variant>`, its RSS, then
/// `echo_load --marks` at a low rate over many connections, sampling the
/// server's RSS and CPU time at the measured window's start and end.
fn idle_run(ctx: &Ctx, out: &mut Outcome, variant: &str, c: &Config) -> Result<Sample, String> {
    let server = proc::start_server(
        ctx.server_core,
        &ctx.bin("echo_server"),
        &[variant],
        Duration::from_secs(5),
    )?;
    out.command(
        &server
            .child
            .cmdline
            .replace(&server.addr.to_string(), "<addr>"),
    );
    let pid = server.child.pid();
    // Let the readiness probe's connection close down.
    std::thread::sleep(Duration::from_millis(100));
    let rss0 = proc::rss_bytes(pid).ok_or("cannot read the server's VmRSS")?;
    let args: Vec<String> = vec![
        "--addr".into(),
        server.addr.to_string(),
        "--conns".into(),
        c.idle_conns.to_string(),
        "--size".into(),
        "64".into(),
        "--secs".into(),
        fmt_secs(c.idle_secs),
        "--warmup".into(),
        fmt_secs(c.idle_warmup),
        "--rate".into(),
        format!("{:.0}", c.idle_rate),
        "--marks".into(),
    ];
    let mut child =
        proc::spawn(ctx.loader_core, &ctx.bin("echo_load"), &args).map_err(|e| e.to_string())?;
    out.command(&child.cmdline.replace(&server.addr.to_string(), "<addr>"));
    let deadline = Instant::now() + Duration::from_secs_f64(c.idle_secs + c.idle_warmup + 60.0);
    let sample_now = || Some((proc::cpu_secs_precise(pid)?, proc::rss_bytes(pid)?));
    let (mut at_window, mut at_end) = (None, None);
    loop {
        let so_far = child.stdout_so_far();
        if at_window.is_none() && so_far.contains("MARK window") {
            at_window = sample_now();
        }
        if at_end.is_none() && so_far.contains("MARK end") {
            at_end = sample_now();
        }
        if child.try_finished().is_some() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    let f = child.wait(Duration::from_secs(5));
    let server_end = server.child.kill();
    let lines = result_lines(&f.stdout);
    let l = match lines.into_iter().next() {
        Some(l) if f.success() => l,
        _ => {
            return Err(format!(
                "echo_load: {}; server: {}",
                f.describe(),
                server_end.describe()
            ))
        }
    };
    let ((cpu_w, rss_w), (cpu_e, rss_e)) = at_window
        .zip(at_end)
        .ok_or("the server could not be sampled during the measured window")?;
    let msgs = num(&l, "msgs").ok_or("no msgs= in RESULT")?;
    if msgs <= 0.0 {
        return Err("no messages".to_string());
    }
    let rss_open = rss_w.max(rss_e);
    let mut s = Sample::new((rss_open - rss0) / c.idle_conns as f64 / 1024.0);
    s.extras.push(("CPU µs/msg", (cpu_e - cpu_w) / msgs * 1e6));
    for (k, name) in [("p50_us", "p50 µs"), ("p99_us", "p99 µs")] {
        if let Some(v) = num(&l, k) {
            s.extras.push((name, v));
        }
    }
    s.extras.push(("RSS before MiB", rss0 / (1 << 20) as f64));
    s.extras.push(("RSS open MiB", rss_open / (1 << 20) as f64));
    if let Some(v) = num(&l, "rate") {
        s.extras.push(("achieved msgs/s", v));
    }
    s.loader_cpu = num(&l, "client_cpu");
    s.rejected = s.loader_cpu.is_some_and(|c| c >= SATURATED);
    let errors = num(&l, "errors").unwrap_or(0.0);
    if errors > 0.0 {
        s.note = Some(format!("{errors:.0} errors in a run"));
    }
    Ok(s)
}

/// The idle cell: every round runs each variant once, interleaved.
pub(crate) fn idle(ctx: &Ctx, out: &mut Outcome, c: &Config) -> Cell {
    let mut cell = Cell::new(
        format!(
            "idle: 64 B × {} conns at {} msgs/s",
            c.idle_conns,
            human(c.idle_rate)
        ),
        c.idle_conns as f64,
        &IDLE,
        "KiB RSS/conn",
    );
    cell.higher_is_better = false;
    cell.vs_first = true;
    Rounds::new(ctx, "uring")
        .show(|x| format!("{x:.2}KiB"))
        .run(out, &mut cell, &IDLE, |out, v| idle_run(ctx, out, v, c));
    cell
}

/// One send_bench run of `way` against the reader at `addr`.
fn send_run(
    ctx: &Ctx,
    out: &mut Outcome,
    fleet: &mut Fleet,
    way: &str,
    size: usize,
    bytes: u64,
) -> Result<Sample, String> {
    let addr = fleet.addr("reader", out)?;
    let pid = fleet.pid("reader").ok_or("the reader is not running")?;
    let args: Vec<String> = vec![
        "send".into(),
        "--addr".into(),
        addr.to_string(),
        "--way".into(),
        way.into(),
        "--size".into(),
        size.to_string(),
        "--bytes".into(),
        bytes.to_string(),
    ];
    let before = proc::cpu_secs_precise(pid).ok_or("cannot read the reader's CPU time")?;
    let (cmd, f) = proc::run(
        ctx.loader_core,
        &ctx.bin("send_bench"),
        &args,
        Duration::from_secs(120),
    )?;
    let after = proc::cpu_secs_precise(pid).ok_or("cannot read the reader's CPU time")?;
    out.command(&cmd.replace(&addr.to_string(), "<addr>"));
    let lines = result_lines(&f.stdout);
    let l = match lines.into_iter().next() {
        Some(l) if f.success() => l,
        _ => return Err(format!("send_bench: {}", f.describe())),
    };
    if field(&l, "skipped") == Some("1") {
        let why = f.stderr_line("skipped").unwrap_or("skipped");
        out.unavailable(way, why);
        return Err(why.to_string());
    }
    let mbps = num(&l, "mbps").ok_or("no mbps= in RESULT")?;
    let sender = num(&l, "sender_cpu").ok_or("no sender_cpu= in RESULT")?;
    let gb = bytes as f64 / 1e9;
    let reader = after - before;
    let mut s = Sample::new(mbps);
    s.extras.push(("sender CPU s/GB", sender / gb));
    s.extras.push(("reader CPU s/GB", reader / gb));
    s.extras.push(("total CPU s/GB", (sender + reader) / gb));
    Ok(s)
}

/// The SEND_ZC cell: one table per write size.
pub(crate) fn send_zc(ctx: &Ctx, out: &mut Outcome, c: &Config) -> Vec<Cell> {
    send_cells(
        ctx,
        out,
        &WAYS,
        &SEND_SIZES,
        c.send_bytes,
        "send_zc",
        "writes",
    )
}

/// The send-bundle cell: a `SendQueue` of 1 KiB pieces flushed every
/// 64 KiB, through SENDMSG or as a bundle.
pub(crate) fn send_bundle(ctx: &Ctx, out: &mut Outcome, c: &Config) -> Vec<Cell> {
    send_cells(
        ctx,
        out,
        &QUEUE_WAYS,
        &[QUEUE_FLUSH],
        c.send_bytes / 4,
        "send bundles",
        "flushes of 1 KiB pieces",
    )
}

/// One table per size: `send_bench` runs of each way, interleaved.
fn send_cells(
    ctx: &Ctx,
    out: &mut Outcome,
    ways: &[&str],
    sizes: &[usize],
    bytes: u64,
    what: &str,
    unit: &str,
) -> Vec<Cell> {
    let spec = Spec::new("reader", &ctx.bin("send_bench"), &["reader"]);
    let mut fleet = Fleet::start(ctx, out, vec![spec]);
    if fleet.peers().is_empty() {
        fleet.stop();
        return Vec::new();
    }
    let mut cells = Vec::new();
    for &size in sizes {
        let mut cell = Cell::new(
            format!("{what}: {} × {} KiB {unit}", bytes_label(bytes), size >> 10),
            size as f64,
            ways,
            "MB/s",
        );
        cell.vs_first = true;
        Rounds::new(ctx, "uring")
            .show(|v| format!("{v:.0}MB/s"))
            .run(out, &mut cell, ways, |out, way| {
                if out.unavailable.iter().any(|(p, _)| p == way) {
                    return Err("not available".to_string());
                }
                send_run(ctx, out, &mut fleet, way, size, bytes)
            });
        cells.push(cell);
    }
    fleet.stop();
    cells
}

fn bytes_label(b: u64) -> String {
    if b >= 1 << 30 && b % (1 << 30) == 0 {
        format!("{} GiB", b >> 30)
    } else {
        format!("{} MiB", b >> 20)
    }
}

/// The link-timeout cell: one timeout_read invocation, its rounds
/// interleaved by the program itself.
pub(crate) fn link_timeout(ctx: &Ctx, out: &mut Outcome, c: &Config) -> Result<Cell, String> {
    let mut cell = Cell::new(
        format!(
            "link_timeout: 1-byte ping-pong, {} round trips",
            human(c.timeout_trips as f64)
        ),
        1.0,
        &TIMEOUT_WAYS,
        "round trips/s",
    );
    cell.vs_first = true;
    let args = vec![
        c.timeout_trips.to_string(),
        "--rounds".into(),
        ctx.rounds.to_string(),
    ];
    let (cmd, f) = proc::run(
        ctx.loader_core,
        &ctx.bin("timeout_read"),
        &args,
        Duration::from_secs(180),
    )?;
    out.command(&cmd);
    if !f.success() {
        return Err(format!("timeout_read: {}", f.describe()));
    }
    for l in result_lines(&f.stdout) {
        let Some(way) = field(&l, "rt") else { continue };
        let Some(rate) = num(&l, "rate") else {
            continue;
        };
        if let Some(s) = cell.get_mut(way) {
            s.rounds.push(Ok(Sample::new(rate)));
        }
    }
    if cell.series.iter().all(|s| s.rounds.is_empty()) {
        return Err(format!(
            "timeout_read printed no RESULT line: {}",
            f.describe()
        ));
    }
    for round in 0..ctx.rounds {
        let mut line = format!(
            "  [uring] {} round {}/{}:",
            cell.label,
            round + 1,
            ctx.rounds
        );
        for s in &cell.series {
            if let Some(Ok(x)) = s.rounds.get(round) {
                line.push_str(&format!(" {} {}", s.peer, human(x.value)));
            }
        }
        ctx.log(&line);
    }
    Ok(cell)
}

/// The registered-buffers cell on files.
pub(crate) fn fixed_files(ctx: &Ctx, out: &mut Outcome, c: &Config) -> Result<Cell, String> {
    let peers = ["ours", "ours_fixed"];
    let mut cell = Cell::new(
        "fixed buffers: 4 KiB random reads, depth 32".to_string(),
        32.0,
        &peers,
        "reads/s",
    );
    cell.vs_first = true;
    ctx.log("  [uring] preparing the 1 GiB data file (page cache warm)");
    files::prepare()?;
    Rounds::new(ctx, "uring").run(out, &mut cell, &peers, |out, rt| {
        if out.unavailable.iter().any(|(p, _)| p == rt) {
            return Err("not built in".to_string());
        }
        files::randread(ctx, out, rt, 32, c.randread_secs)
    });
    Ok(cell)
}
