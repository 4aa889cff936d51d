//! Scenario 1, TCP echo: `echo_server <rt>` for seven runtimes under
//! `echo_load`, peak throughput with latency, then a fixed-rate run that
//! measures the server's CPU time per message.

use std::time::Duration;

use crate::harness::fleet::{Fleet, Spec};
use crate::harness::model::{human, num, result_lines, Cell, Outcome, Sample, Target, SATURATED};
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

/// What one invocation of the scenario runs.
pub(crate) struct Config {
    /// (message size, connections) of the peak-throughput cells.
    pub cells: Vec<(usize, usize)>,
    /// Measured seconds per run.
    pub secs: f64,
    /// echo_load's warm-up seconds per run.
    pub warmup: f64,
    /// Measured seconds of each fixed-rate run.
    pub fixed_secs: f64,
    /// Connections and size of the fixed-rate runs.
    pub fixed: (usize, usize),
}

/// The matrix for this mode.
pub(crate) fn config(ctx: &Ctx) -> Config {
    if ctx.quick {
        Config {
            cells: vec![(64, 100), (64, 1000)],
            secs: 0.4,
            warmup: 0.15,
            fixed_secs: 0.8,
            fixed: (64, 100),
        }
    } else {
        Config {
            cells: vec![
                (64, 1),
                (64, 16),
                (64, 100),
                (64, 1000),
                (4096, 100),
                (4096, 1000),
            ],
            secs: 0.8,
            warmup: 0.25,
            fixed_secs: 1.5,
            fixed: (64, 100),
        }
    }
}

/// Per-run overhead on top of warm-up + measurement (spawn, connect).
const OVERHEAD: f64 = 0.15;

/// Planned seconds.
pub(crate) fn plan(ctx: &Ctx) -> f64 {
    let c = config(ctx);
    let per_round = PEERS.len() as f64;
    let peak =
        c.cells.len() as f64 * ctx.rounds as f64 * per_round * (c.secs + c.warmup + OVERHEAD);
    let fixed = ctx.rounds as f64 * per_round * (c.fixed_secs + OVERHEAD);
    peak + fixed + PEERS.len() as f64 * 0.2 + callgrind_plan()
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
    let mut s = Sample::new((after - before) / msgs * 1e6);
    s.extras.push(("achieved msgs/s", achieved));
    if let (Some(a), Some(b)) = (sq_before, sq_after) {
        s.extras
            .push(("of which SQ thread µs/msg", (b - a) / msgs * 1e6));
    }
    if let Some(v) = num(&res, "p99_us") {
        s.extras.push(("p99 µs", v));
    }
    s.loader_cpu = num(&res, "client_cpu");
    s.rejected = s.loader_cpu.is_some_and(|c| c >= SATURATED);
    let rate = l.rate.unwrap_or(0.0);
    if achieved < 0.95 * rate {
        s.note = Some(format!("did not sustain {} msgs/s", human(rate)));
    }
    Ok(s)
}

/// Runs the scenario.
pub(crate) fn run(ctx: &Ctx) -> Outcome {
    let c = config(ctx);
    let mut out = Outcome {
        name: "echo",
        title: "TCP echo".to_string(),
        ..Default::default()
    };
    out.notes.push(format!(
        "Peak throughput: echo_load (ping-pong: each connection sends a message and waits for its echo) for {} s after a {} s warm-up, {} rounds with the servers interleaved. Cells: {}.{}",
        fmt_secs(c.secs),
        fmt_secs(c.warmup),
        ctx.rounds,
        c.cells.iter().map(|&(s, n)| label(s, n)).collect::<Vec<_>>().join(", "),
        if ctx.quick {
            " Quick mode: a subset of the full matrix (64 B × 1, 16, 100, 1000 conns and 4 KiB × 100 conns)."
        } else {
            " The issue's full matrix (64 B and 4 KiB × 1, 16, 100, 1000 conns) is trimmed to fit the 15-minute budget: 4 KiB only at 100 and 1000 conns."
        }
    ));
    if !proc::program_in_path(&ctx.bin("echo_load")) {
        out.notes
            .push("not measured: target/release/echo_load is missing".to_string());
        return out;
    }
    let specs = PEERS
        .iter()
        .map(|p| Spec::new(p, &ctx.bin("echo_server"), &[p]))
        .collect();
    let mut fleet = Fleet::start(ctx, &mut out, specs);
    let peers = fleet.peers();
    if !peers.iter().any(|p| p == "ours") {
        out.notes
            .push("not measured: our echo server did not start".to_string());
        fleet.stop();
        return out;
    }

    let peers: Vec<&str> = peers.iter().map(String::as_str).collect();
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
        let mut rounds = Rounds::new(ctx, "echo");
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

    // Fixed rate: half the slowest peer's peak at the fixed cell (so every
    // server sustains it), or 20,000 msgs/s if that cell was not measured.
    let rate = cells
        .iter()
        .find(|cl| cl.label == label(c.fixed.0, c.fixed.1))
        .map_or(20000.0, |cl| half_slowest(cl, 5000.0, 20000.0));
    let mut fixed = Cell::new(
        format!(
            "CPU/msg, {} at {} msgs/s",
            label(c.fixed.0, c.fixed.1),
            human(rate)
        ),
        c.fixed.1 as f64,
        &PEERS,
        "CPU µs/msg",
    );
    fixed.higher_is_better = false;
    if !cells.is_empty() {
        // No warm-up: the servers are warm from the peak runs, and the CPU
        // delta then covers exactly the measured messages (plus 100
        // connects and closes, alike for all).
        let l = Load {
            size: c.fixed.0,
            conns: c.fixed.1,
            secs: c.fixed_secs,
            warmup: 0.0,
            rate: Some(rate),
        };
        Rounds::new(ctx, "echo").show(|v| format!("{v:.2}µs")).run(
            &mut out,
            &mut fixed,
            &peers,
            |out, peer| fixed_rate_sample(ctx, out, &mut fleet, peer, &l, proc::proc_cpu_secs),
        );
        out.notes.push(format!(
            "Fixed rate: echo_load --rate {rate:.0} --warmup 0 (open loop, {} conns × {} B) for {} s, after the peak runs (so the servers are warm); the server's CPU time (utime + stime from /proc/<pid>/stat, before and after the run) divided by the messages echoed. Lower is better; the ratio column is then peer/ours (how many times more CPU the peer spends per message). The rate is half the slowest server's peak at that cell.",
            c.fixed.1,
            c.fixed.0,
            fmt_secs(c.fixed_secs),
        ));
    }
    fleet.stop();

    // User-space instructions per message under callgrind.
    let cg = callgrind_cell(ctx, &mut out);

    // Targets: >= 1.2x tokio, >= 1.0x monoio, >= 0.9x raw in every cell.
    for cell in &cells {
        for (peer, min) in [("tokio", 1.2), ("monoio", 1.0), ("raw", 0.9)] {
            out.targets.push(Target::ratio(
                format!("echo {}: ≥ {min:.1}x {peer}", cell.label),
                cell.ratio("ours", peer),
                min,
            ));
        }
    }
    out.charts.extend(chart::lines(
        ctx,
        "echo",
        "TCP echo, 64 B messages: msgs/s by connections",
        ("connections", "messages/s"),
        cells.iter().filter(|cl| cl.label.starts_with("64 B")),
    ));
    out.tables.push(("Peak throughput".to_string(), cells));
    if !fixed.series.iter().all(|s| s.rounds.is_empty()) {
        out.tables
            .push(("CPU per message at a fixed rate".to_string(), vec![fixed]));
    }
    if let Some(cg) = cg {
        out.tables.push((
            "User-space instructions per message (callgrind)".to_string(),
            vec![cg],
        ));
    }
    out
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
