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
    peak + fixed + PEERS.len() as f64 * 0.2
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
    out
}
