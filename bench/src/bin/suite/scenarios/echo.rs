//! Scenario 1, TCP echo: `echo_server <rt>` for seven runtimes under
//! `echo_load`, peak throughput with latency, then a fixed-rate run that
//! measures the server's CPU time per message.

use std::time::Duration;

use super::ecosystem::{cpu_per, server_cpu};
use crate::harness::fleet::{Fleet, Spec};
use crate::harness::model::{
    human, num, result_lines, Cell, NoiseRow, Outcome, Sample, Target, OURS2, SATURATED,
};
use crate::harness::rounds::Rounds;
use crate::harness::{chart, proc, Ctx};

/// The echo servers, ours first.
pub(crate) const PEERS: [&str; 7] = [
    "ours",
    "tokio",
    "raw",
    "monoio",
    "tokio_uring",
    "glommio",
    "compio",
];

/// The fixed-rate table's servers: ours, its second copy (the noise
/// floor), and the peers it is compared with.
pub(crate) const FIXED_PEERS: [&str; 5] = ["ours", OURS2, "tokio", "raw", "monoio"];

/// What one invocation of the scenario runs.
pub(crate) struct Config {
    /// (message size, connections) of the peak-throughput cells.
    pub cells: Vec<(usize, usize)>,
    /// Rounds of every peak cell.
    pub peak_rounds: usize,
    /// Measured seconds per peak run.
    pub secs: f64,
    /// echo_load's warm-up seconds per peak run.
    pub warmup: f64,
    /// Measured seconds of each fixed-rate run.
    pub fixed_secs: f64,
    /// Rounds of each fixed-rate cell.
    pub fixed_rounds: usize,
    /// Size and connections of the fixed-rate runs.
    pub fixed: (usize, usize),
    /// The offered rates, as shares of the slowest peer's closed-loop
    /// peak at `fixed`.
    pub fixed_shares: [f64; 2],
}

/// The matrix for this mode.
pub(crate) fn config(ctx: &Ctx) -> Config {
    if ctx.quick {
        Config {
            cells: vec![(64, 100), (64, 1000)],
            peak_rounds: ctx.rounds,
            secs: 0.4,
            warmup: 0.15,
            fixed_secs: 1.0,
            fixed_rounds: ctx.rounds,
            fixed: (64, 100),
            fixed_shares: [0.25, 0.6],
        }
    } else {
        Config {
            cells: vec![(64, 1), (64, 100), (64, 1000), (4096, 100)],
            // The peak table is the second one: 1 round.
            peak_rounds: 1,
            secs: 0.6,
            warmup: 0.2,
            fixed_secs: 3.0,
            fixed_rounds: ctx.rounds.min(3),
            fixed: (64, 100),
            fixed_shares: [0.25, 0.6],
        }
    }
}

/// Per-run overhead on top of warm-up + measurement (spawn, connect):
/// about 0.02 s measured on 2 cores, with a margin.
const OVERHEAD: f64 = 0.05;

/// Planned seconds.
pub(crate) fn plan(ctx: &Ctx) -> f64 {
    let c = config(ctx);
    let peak = c.cells.len() as f64
        * c.peak_rounds as f64
        * PEERS.len() as f64
        * (c.secs + c.warmup + OVERHEAD);
    let fixed = c.fixed_shares.len() as f64
        * c.fixed_rounds as f64
        * FIXED_PEERS.len() as f64
        * (c.fixed_secs + OVERHEAD);
    // Starting the servers (ours' too).
    let start = (PEERS.len() + 1) as f64 * 0.2;
    peak + fixed + start + callgrind_plan()
}

/// The servers measured under callgrind.
const CG_PEERS: [&str; 4] = ["ours", "tokio", "raw", "monoio"];
/// The open-loop rate of the callgrind runs (msgs/s): low enough that a
/// server slowed down ~50x by valgrind keeps up.
const CG_RATE: f64 = 2000.0;
/// The measured seconds of the two callgrind runs of each server.
const CG_SECS: (f64, f64) = (1.0, 3.0);
/// Connections and size of the callgrind runs.
const CG_LOAD: (usize, usize) = (100, 64);
/// The connections and longest seconds of the wake-up load that lets
/// valgrind deliver the SIGTERM (see [`cg_run`]).
const CG_WAKE: (usize, f64) = (10, 4.0);

/// Planned seconds of the callgrind part: per server two runs, each
/// ~1.5 s of valgrind start-up, wake-up load and shutdown, plus the load
/// (22 s in all in a quick run on the 2-core machine).
fn callgrind_plan() -> f64 {
    CG_PEERS.len() as f64 * (2.0 * 1.5 + CG_SECS.0 + CG_SECS.1)
}

/// The `msgs=` of echo_load's RESULT line, also when it exited with a
/// failure (the wake-up load ends with the server's exit, so every
/// connection fails); 0 without a RESULT line (nothing connected).
fn result_msgs(stdout: &str) -> f64 {
    result_lines(stdout)
        .into_iter()
        .next()
        .and_then(|l| num(&l, "msgs"))
        .unwrap_or(0.0)
}

/// Instructions per message from two runs' (instructions, messages):
/// (I2 − I1) / (M2 − M1), so start-up, connection and shutdown costs
/// cancel.
fn per_message((i1, m1): (f64, f64), (i2, m2): (f64, f64)) -> Result<f64, String> {
    if m2 <= m1 {
        return Err(format!(
            "the longer run echoed no more messages ({m2:.0} against {m1:.0})"
        ));
    }
    Ok((i2 - i1) / (m2 - m1))
}

/// One server run under callgrind: `echo_server <peer>` under `valgrind
/// --tool=callgrind`, `secs` of echo_load at [`CG_RATE`], then SIGTERM.
/// Returns the server's instructions (callgrind's `Collected`) and the
/// messages it echoed.
///
/// Valgrind 3.19 runs io_uring_enter as a non-blocking system call, with
/// signals blocked: an io_uring server waiting for completions never sees
/// the SIGTERM, and valgrind only looks for pending signals when the
/// server runs again. So after the signal a wake-up load (10 conns at
/// the same rate) runs until the server exits, and its echoed messages
/// count too (a few in flight at the exit are not counted).
fn cg_run(ctx: &Ctx, out: &mut Outcome, peer: &str, secs: f64) -> Result<(f64, f64), String> {
    let echo = ctx.bin("echo_server");
    let args = [
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        echo.as_str(),
        peer,
    ];
    let srv = proc::start_server(ctx.server_core, "valgrind", &args, Duration::from_secs(60))?;
    out.command(&srv.child.cmdline);
    let mut child = srv.child;
    let (conns, size) = CG_LOAD;
    let l = Load {
        size,
        conns,
        secs,
        warmup: 0.0,
        rate: Some(CG_RATE),
    };
    let res = load(ctx, out, srv.addr, &l);
    let pid = child.pid();
    // SAFETY: kill(2) takes no pointers; the child is not reaped yet, so
    // its pid cannot have been reused.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let res = res?;
    let achieved = num(&res, "rate").ok_or("no rate= in RESULT")?;
    if achieved < 0.95 * CG_RATE {
        child.kill();
        return Err(format!(
            "did not sustain {} msgs/s under valgrind ({achieved:.0})",
            human(CG_RATE)
        ));
    }
    let mut msgs = num(&res, "msgs").ok_or("no msgs= in RESULT")?;
    std::thread::sleep(Duration::from_millis(300));
    if child.try_finished().is_none() {
        let wake: Vec<String> = [
            "--addr".to_string(),
            srv.addr.to_string(),
            "--conns".to_string(),
            CG_WAKE.0.to_string(),
            "--size".to_string(),
            size.to_string(),
            "--secs".to_string(),
            fmt_secs(CG_WAKE.1),
            "--warmup".to_string(),
            "0".to_string(),
            "--rate".to_string(),
            format!("{CG_RATE:.0}"),
        ]
        .to_vec();
        let (cmd, f) = proc::run(
            ctx.loader_core,
            &ctx.bin("echo_load"),
            &wake,
            Duration::from_secs_f64(CG_WAKE.1 + 20.0),
        )?;
        out.command(&cmd);
        msgs += result_msgs(&f.stdout);
    }
    let f = child.wait(Duration::from_secs(30));
    if f.timed_out {
        return Err("the server under valgrind did not exit on SIGTERM".to_string());
    }
    let n = crate::scenarios::executor::collected(&f.stderr).ok_or_else(|| {
        format!(
            "no `Collected :` line on valgrind's stderr: {}",
            f.describe()
        )
    })?;
    Ok((n, msgs))
}

/// "64 B × 100 conns".
pub(crate) fn label(size: usize, conns: usize) -> String {
    let s = if size >= 1024 && size % 1024 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    };
    format!("{s} × {conns} conns")
}

/// Seconds without trailing zeros ("0.25").
pub(crate) fn fmt_secs(s: f64) -> String {
    let t = format!("{s:.3}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One echo_load invocation's parameters.
pub(crate) struct Load {
    /// Message size in bytes.
    pub size: usize,
    /// Connections.
    pub conns: usize,
    /// Measured seconds.
    pub secs: f64,
    /// Warm-up seconds.
    pub warmup: f64,
    /// Open-loop rate (msgs/s), or closed loop.
    pub rate: Option<f64>,
}

/// Runs echo_load once; returns the parsed RESULT line.
pub(crate) fn load(
    ctx: &Ctx,
    out: &mut Outcome,
    addr: std::net::SocketAddr,
    l: &Load,
) -> Result<Vec<(String, String)>, String> {
    let Load {
        size,
        conns,
        secs,
        warmup,
        rate,
    } = *l;
    let mut args = vec![
        "--addr".to_string(),
        addr.to_string(),
        "--conns".to_string(),
        conns.to_string(),
        "--size".to_string(),
        size.to_string(),
        "--secs".to_string(),
        fmt_secs(secs),
        "--warmup".to_string(),
        fmt_secs(warmup),
    ];
    if let Some(r) = rate {
        args.extend(["--rate".to_string(), format!("{r:.0}")]);
    }
    let timeout = Duration::from_secs_f64(secs + warmup + 20.0);
    let (cmd, f) = proc::run(ctx.loader_core, &ctx.bin("echo_load"), &args, timeout)?;
    out.command(&cmd);
    let lines = result_lines(&f.stdout);
    match lines.into_iter().next() {
        Some(l) if f.success() => Ok(l),
        Some(l) => {
            // A RESULT line with a failure exit: every connection failed, or
            // nothing was echoed.
            let errors = num(&l, "errors").unwrap_or(0.0);
            Err(format!("echo_load: {} ({errors:.0} errors)", f.describe()))
        }
        None => Err(format!(
            "echo_load printed no RESULT line: {}",
            f.describe()
        )),
    }
}

/// The sample of a closed-loop (peak) run: msgs/s, with its latency, from
/// echo_load's RESULT line.
pub(crate) fn peak_sample(l: &[(String, String)]) -> Result<Sample, String> {
    let rate = num(l, "rate").ok_or("no rate= in RESULT")?;
    let mut s = Sample::new(rate);
    for (k, name) in [("p50_us", "p50 µs"), ("p99_us", "p99 µs")] {
        if let Some(v) = num(l, k) {
            s.extras.push((name, v));
        }
    }
    s.loader_cpu = num(l, "client_cpu");
    s.rejected = s.loader_cpu.is_some_and(|c| c >= SATURATED);
    let errors = num(l, "errors").unwrap_or(0.0);
    if errors > 0.0 {
        s.note = Some(format!("{errors:.0} errors in a run"));
    }
    Ok(s)
}

/// The fixed rate for a cell's peers: half the slowest peer's median
/// there (so that every server sustains it), rounded to 1,000 and held
/// within [`min`, 50,000]; `default` when nothing was measured.
pub(crate) fn half_slowest(cell: &Cell, min: f64, default: f64) -> f64 {
    cell.series
        .iter()
        .filter_map(|s| s.median())
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))))
        .map(|v| ((v * 0.5 / 1000.0).round() * 1000.0).clamp(min, 50000.0))
        .unwrap_or(default)
}

/// What one fixed-rate run measured: the server's CPU reading (of type
/// `C`) before and after, echo_load's RESULT line, the messages echoed and
/// the rate achieved, and its SQPOLL thread's CPU per message if it has one.
struct FixedRun<C> {
    before: C,
    after: C,
    res: Vec<(String, String)>,
    msgs: f64,
    achieved: f64,
    sq_per_msg: Option<f64>,
}

/// One fixed-rate run (`l.rate`) against `peer`'s server, its CPU read with
/// `cpu` before and after; an error if nothing was echoed.
fn fixed_run<C>(
    ctx: &Ctx,
    out: &mut Outcome,
    fleet: &mut Fleet,
    peer: &str,
    l: &Load,
    cpu: impl Fn(i32) -> Option<C>,
) -> Result<FixedRun<C>, String> {
    let addr = fleet.addr(peer, out)?;
    let pid = fleet.pid(peer).ok_or("the server is not running")?;
    let before = cpu(pid).ok_or("cannot read the server's CPU time")?;
    let sq_before = proc::threads_cpu_secs(pid, "iou-sqp");
    let res = load(ctx, out, addr, l)?;
    let after = cpu(pid).ok_or("cannot read the server's CPU time")?;
    let sq_after = proc::threads_cpu_secs(pid, "iou-sqp");
    let achieved = num(&res, "rate").ok_or("no rate= in RESULT")?;
    let msgs = num(&res, "msgs").ok_or("no msgs= in RESULT")?;
    if msgs <= 0.0 {
        return Err("no messages".to_string());
    }
    let sq_per_msg = match (sq_before, sq_after) {
        (Some(a), Some(b)) => Some((b - a) / msgs * 1e6),
        _ => None,
    };
    Ok(FixedRun {
        before,
        after,
        res,
        msgs,
        achieved,
        sq_per_msg,
    })
}

impl<C> FixedRun<C> {
    /// Finishes `s`: the load generator's CPU (a saturated one rejects the
    /// run) and a note if the offered rate was not sustained.
    fn finish(&self, mut s: Sample, l: &Load) -> Sample {
        s.loader_cpu = num(&self.res, "client_cpu");
        s.rejected = s.loader_cpu.is_some_and(|c| c >= SATURATED);
        let rate = l.rate.unwrap_or(0.0);
        if self.achieved < 0.95 * rate {
            s.note = Some(format!("did not sustain {} msgs/s", human(rate)));
        }
        s
    }
}

/// One fixed-rate run (`l.rate`) against `peer`'s server: the server's CPU
/// time (`cpu` of its pid, before and after the run) divided by the
/// messages echoed, in µs per message, with the share of its SQPOLL thread
/// when it has one.
pub(crate) fn fixed_rate_sample(
    ctx: &Ctx,
    out: &mut Outcome,
    fleet: &mut Fleet,
    peer: &str,
    l: &Load,
    cpu: fn(i32) -> Option<f64>,
) -> Result<Sample, String> {
    let r = fixed_run(ctx, out, fleet, peer, l, cpu)?;
    let mut s = Sample::new((r.after - r.before) / r.msgs * 1e6);
    s.extras.push(("achieved msgs/s", r.achieved));
    if let Some(sq) = r.sq_per_msg {
        s.extras.push(("of which SQ thread µs/msg", sq));
    }
    if let Some(v) = num(&r.res, "p99_us") {
        s.extras.push(("p99 µs", v));
    }
    Ok(r.finish(s, l))
}

/// Runs the scenario.
pub(crate) fn run(ctx: &Ctx) -> Outcome {
    let c = config(ctx);
    let mut out = Outcome {
        name: "echo",
        title: "TCP echo".to_string(),
        ..Default::default()
    };
    if !proc::program_in_path(&ctx.bin("echo_load")) {
        out.notes
            .push("not measured: target/release/echo_load is missing".to_string());
        return out;
    }
    let mut specs: Vec<Spec> = PEERS
        .iter()
        .map(|p| Spec::new(p, &ctx.bin("echo_server"), &[p]))
        .collect();
    specs.push(Spec::new(OURS2, &ctx.bin("echo_server"), &["ours"]));
    let mut fleet = Fleet::start(ctx, &mut out, specs);
    let running = fleet.peers();
    if !running.iter().any(|p| p == "ours") {
        out.notes
            .push("not measured: our echo server did not start".to_string());
        fleet.stop();
        return out;
    }

    let peers: Vec<&str> = running
        .iter()
        .map(String::as_str)
        .filter(|p| PEERS.contains(p))
        .collect();
    let mut cells = Vec::new();
    for &(size, conns) in &c.cells {
        let mut cell = Cell::new(label(size, conns), conns as f64, &PEERS, "msgs/s");
        let l = Load {
            size,
            conns,
            secs: c.secs,
            warmup: c.warmup,
            rate: None,
        };
        let mut rounds = Rounds::new(ctx, "echo").rounds(c.peak_rounds);
        if cells.is_empty() {
            rounds = rounds.stop_if_first_round_fails();
        }
        let stopped = rounds.run(&mut out, &mut cell, &peers, |out, peer| {
            let addr = fleet.addr(peer, out)?;
            peak_sample(&load(ctx, out, addr, &l)?)
        });
        if let Some(why) = stopped {
            out.notes.push(format!(
                "not measured: every run of the first round failed ({why})"
            ));
            break;
        }
        cells.push(cell);
    }

    let fixed = if cells.is_empty() {
        Vec::new()
    } else {
        fixed_cost_cells(ctx, &mut out, &mut fleet, &c, &cells)
    };
    fleet.stop();

    // User-space instructions per message under callgrind.
    let cg = callgrind_cell(ctx, &mut out);
    fixed_cost_report(ctx, &mut out, &c, &fixed);
    out.notes.push(format!(
        "Peak throughput (secondary): echo_load closed loop (ping-pong: each connection sends a message and waits for its echo) for {} s after a {} s warm-up, {} rounds with the servers interleaved, no noise floor: a throughput ratio here is indicative only and carries no target. Cells: {}.{}",
        fmt_secs(c.secs),
        fmt_secs(c.warmup),
        c.peak_rounds,
        c.cells.iter().map(|&(s, n)| label(s, n)).collect::<Vec<_>>().join(", "),
        if ctx.quick {
            " Quick mode: a subset of the full matrix (64 B × 1, 100, 1000 conns and 4 KiB × 100 conns)."
        } else {
            " The issue's full matrix (64 B and 4 KiB × 1, 16, 100, 1000 conns) is trimmed to these four cells to keep the scenario near 3 minutes."
        }
    ));
    out.charts.extend(chart::lines(
        ctx,
        "echo",
        "TCP echo, 64 B messages: msgs/s by connections",
        ("connections", "messages/s"),
        cells.iter().filter(|cl| cl.label.starts_with("64 B")),
    ));
    if !fixed.is_empty() {
        out.tables.push((
            "Server CPU per message at a fixed rate (primary)".to_string(),
            fixed,
        ));
    }
    out.tables
        .push(("Peak throughput (closed loop)".to_string(), cells));
    if let Some(cg) = cg {
        out.tables.push((
            "User-space instructions per message (callgrind)".to_string(),
            vec![cg],
        ));
    }
    out
}

/// The offered rate at `share` of the slowest peer's median in `cell`,
/// rounded to 1,000 msgs/s (at least 1,000); `None` when nothing was
/// measured there.
pub(crate) fn share_of_slowest(cell: &Cell, share: f64) -> Option<f64> {
    cell.series
        .iter()
        .filter_map(|s| s.median())
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))))
        .map(|v| ((v * share / 1000.0).round() * 1000.0).max(1000.0))
}

/// The fixed-rate cells, one per offered rate (`c.fixed_shares` of the
/// slowest peer's peak at `c.fixed`, or of 40,000 msgs/s when that cell
/// was not measured), over [`FIXED_PEERS`], their order rotated.
fn fixed_cost_cells(
    ctx: &Ctx,
    out: &mut Outcome,
    fleet: &mut Fleet,
    c: &Config,
    peak: &[Cell],
) -> Vec<Cell> {
    let (size, conns) = c.fixed;
    let at = peak.iter().find(|cl| cl.label == label(size, conns));
    let running = fleet.peers();
    let peers: Vec<&str> = FIXED_PEERS
        .iter()
        .copied()
        .filter(|p| running.iter().any(|r| r == p))
        .collect();
    let mut cells = Vec::new();
    for share in c.fixed_shares {
        let rate = at
            .and_then(|cl| share_of_slowest(cl, share))
            .unwrap_or((40000.0 * share / 1000.0_f64).round() * 1000.0);
        let mut cell = Cell::new(
            format!(
                "{}, {} msgs/s ({:.0}% of the slowest peak)",
                label(size, conns),
                human(rate),
                share * 100.0
            ),
            rate,
            &FIXED_PEERS,
            "server CPU µs/msg",
        );
        cell.higher_is_better = false;
        // No warm-up: the servers are warm from the peak runs, and the CPU
        // delta then covers exactly the measured messages (plus the
        // connects and closes, alike for all).
        let l = Load {
            size,
            conns,
            secs: c.fixed_secs,
            warmup: 0.0,
            rate: Some(rate),
        };
        Rounds::new(ctx, "echo")
            .rounds(c.fixed_rounds)
            .rotate()
            .show(|v| format!("{v:.2}µs"))
            .run(out, &mut cell, &peers, |out, peer| {
                fixed_cost_sample(ctx, out, fleet, peer, &l)
            });
        cells.push(cell);
    }
    cells
}

/// One fixed-rate run (`l.rate`) against `peer`'s server: its CPU time
/// (every thread, [`server_cpu`]) per message echoed, in µs, split into
/// user and system, with echo_load's latency percentiles.
fn fixed_cost_sample(
    ctx: &Ctx,
    out: &mut Outcome,
    fleet: &mut Fleet,
    peer: &str,
    l: &Load,
) -> Result<Sample, String> {
    let r = fixed_run(ctx, out, fleet, peer, l, server_cpu)?;
    let (total, user, sys) = cpu_per(r.before, r.after, r.msgs);
    let mut s = Sample::new(total);
    s.extras.push(("user µs/msg", user));
    s.extras.push(("sys µs/msg", sys));
    s.extras.push(("achieved msgs/s", r.achieved));
    for (k, name) in [
        ("p50_us", "p50 µs"),
        ("p99_us", "p99 µs"),
        ("p999_us", "p99.9 µs"),
    ] {
        if let Some(v) = num(&r.res, k) {
            s.extras.push((name, v));
        }
    }
    if let Some(sq) = r.sq_per_msg {
        s.extras.push(("of which SQ thread µs/msg", sq));
    }
    Ok(r.finish(s, l))
}

/// The minimum peer/ours CPU-per-message ratio each peer is held to.
const FIXED_TARGETS: [(&str, f64); 3] = [("tokio", 1.2), ("monoio", 1.0), ("raw", 0.9)];

/// The fixed-rate table's notes, its comparison beside the noise floor
/// ours'/ours, and its targets (a verdict only beyond the noise).
fn fixed_cost_report(ctx: &Ctx, out: &mut Outcome, c: &Config, cells: &[Cell]) {
    out.notes.push(format!(
        "Fixed rate (the primary table): echo_load --rate R --warmup 0 (open loop, {} conns × {} B; latency counted from each message's scheduled send time) for {} s, {} rounds with the servers' order rotated, at {} of the slowest server's closed-loop peak at that cell (rounded to 1,000 msgs/s), after the peak runs (so the servers are warm). Server CPU = the server process's CPU-time clock (every thread) over the run / messages echoed, split into user and system by the share of the scheduler's ticks that found it in user mode (taskstats, or /proc/<pid>/stat). `ours'` is a second process of our echo server: ours'/ours is the noise floor, and a ratio counts (verdict, target) only when every round lies beyond its band made symmetric around 1.00x. Lower is better; the table's ratio column is peer/ours (how many times more CPU the peer spends per message). Only ours, ours', tokio, raw and monoio are measured at the fixed rate; the others are in the peak table.",
        c.fixed.1,
        c.fixed.0,
        fmt_secs(c.fixed_secs),
        c.fixed_rounds,
        c.fixed_shares
            .iter()
            .map(|s| format!("{:.0}%", s * 100.0))
            .collect::<Vec<_>>()
            .join(" and "),
    ));
    let mut md = String::from(
        "### CPU per message at a fixed rate: ours against each peer, beside the noise floor\n\n\
| rate | figure | ours | peer | ours/peer median [min–max] | noise floor ours'/ours [min–max] | beyond the noise? |\n\
|---|---|---:|---:|---:|---:|---|\n",
    );
    for cell in cells {
        let rate = human(cell.x);
        let mut rows = Vec::new();
        for (peer, _) in FIXED_TARGETS {
            rows.push(NoiseRow::against(
                cell,
                peer,
                None,
                format!("server CPU µs/msg vs {peer}"),
                false,
                None,
            ));
        }
        for (key, what) in [
            ("user µs/msg", "user µs/msg vs tokio"),
            ("sys µs/msg", "sys µs/msg vs tokio"),
            ("p99 µs", "p99 µs vs tokio"),
            ("p99.9 µs", "p99.9 µs vs tokio"),
        ] {
            rows.push(NoiseRow::against(
                cell,
                "tokio",
                Some(key),
                what.to_string(),
                false,
                None,
            ));
        }
        for r in &rows {
            let line = format!("| {rate} | {} | {} |", r.what, r.md_cells());
            ctx.log(&format!("  [echo] {line}"));
            md.push_str(&line);
            md.push('\n');
        }
        let noise = cell.ratio("ours", OURS2);
        for (peer, min) in FIXED_TARGETS {
            out.targets.push(Target::beyond_noise(
                format!("echo CPU/msg at {rate} msgs/s: {peer} spends ≥ {min:.1}x ours"),
                cell.ratio("ours", peer),
                noise,
                min,
            ));
        }
    }
    if !cells.is_empty() {
        out.extra_md.push(md);
    }
}

/// The callgrind part: each of [`CG_PEERS`] in two fresh runs under
/// callgrind, [`per_message`] of the two; `None` (with a note) without
/// valgrind.
fn callgrind_cell(ctx: &Ctx, out: &mut Outcome) -> Option<Cell> {
    if !proc::program_in_path("valgrind") {
        out.notes.push(
            "User-space instructions per message: not measured: valgrind is not installed"
                .to_string(),
        );
        return None;
    }
    let (conns, size) = CG_LOAD;
    let mut cell = Cell::new(
        format!("{} at {} msgs/s", label(size, conns), human(CG_RATE)),
        conns as f64,
        &CG_PEERS,
        "instructions/msg",
    );
    cell.higher_is_better = false;
    Rounds::new(ctx, "echo callgrind")
        .rounds(1)
        .show(|v| format!("{v:.0}"))
        .run(out, &mut cell, &CG_PEERS, |out, peer| {
            let a = cg_run(ctx, out, peer, CG_SECS.0)?;
            let b = cg_run(ctx, out, peer, CG_SECS.1)?;
            let mut s = Sample::new(per_message(a, b)?);
            s.extras.push(("msgs (short run)", a.1));
            s.extras.push(("msgs (long run)", b.1));
            Ok(s)
        });
    out.notes.push(format!(
        "User-space instructions per message: each server in two fresh runs of `valgrind --tool=callgrind --callgrind-out-file=/dev/null echo_server <rt>` (one round), driven by `echo_load --conns {conns} --size {size} --rate {CG_RATE:.0} --warmup 0` for {} s and {} s, then SIGTERM; instructions = callgrind's `Collected` total (user space only: valgrind does not see the kernel). (I2 − I1) / (M2 − M1) over the two runs' messages, so start-up, the {conns} connects and shutdown cancel. Valgrind 3.19 delivers the SIGTERM to an io_uring server only when it runs again, so a wake-up `echo_load --conns {} --rate {CG_RATE:.0}` runs after it until the server exits, and its echoed messages are counted. Lower is better; the ratio is peer/ours.",
        fmt_secs(CG_SECS.0),
        fmt_secs(CG_SECS.1),
        CG_WAKE.0,
    ));
    Some(cell)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(quick: bool) -> Ctx {
        Ctx::for_tests(quick)
    }

    #[test]
    fn full_mode_fits_two_and_a_half_minutes() {
        // The fixed-rate and peak tables in under two minutes; the
        // callgrind part adds its half minute.
        let full = plan(&ctx(false));
        let tables = full - callgrind_plan();
        assert!((100.0..=120.0).contains(&tables), "{tables}");
        assert!(callgrind_plan() <= 30.0, "{}", callgrind_plan());
        assert!(plan(&ctx(true)) < full);
        let c = config(&ctx(false));
        assert_eq!((c.peak_rounds, c.fixed_rounds), (1, 3));
        assert!(c.fixed_secs >= 3.0);
    }

    #[test]
    fn rates_are_shares_of_the_slowest_peak() {
        let mut cell = Cell::new("x".into(), 100.0, &["ours", "tokio"], "msgs/s");
        assert_eq!(share_of_slowest(&cell, 0.25), None);
        for (peer, v) in [("ours", 120_000.0), ("tokio", 80_000.0)] {
            cell.series
                .iter_mut()
                .find(|s| s.peer == peer)
                .unwrap()
                .rounds
                .push(Ok(Sample::new(v)));
        }
        assert_eq!(share_of_slowest(&cell, 0.25), Some(20_000.0));
        assert_eq!(share_of_slowest(&cell, 0.6), Some(48_000.0));
        assert_eq!(share_of_slowest(&cell, 0.001), Some(1000.0));
    }

    #[test]
    fn result_msgs_reads_a_failed_runs_result_line() {
        let out = "RESULT msgs=857 secs=0.4664 rate=1837 p50_us=37.6 errors=10\n";
        assert_eq!(result_msgs(out), 857.0);
        assert_eq!(result_msgs("echo_load: every connection failed\n"), 0.0);
    }

    #[test]
    fn per_message_takes_the_difference_of_two_runs() {
        let v = per_message((1_000_000.0, 2000.0), (3_000_000.0, 6000.0)).unwrap();
        assert_eq!(v, 500.0);
        assert!(per_message((1.0, 10.0), (2.0, 10.0)).is_err());
    }
}
