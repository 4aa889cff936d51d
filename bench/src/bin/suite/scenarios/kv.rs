//! Scenario 4, key-value (RESP): our `kv` example against the same server
//! on tokio (`tokio_kv`) and redis-server.
//!
//! 1. The primary table: each server's CPU time per command at fixed
//!    offered rates, user and system apart, with the client's p50, p99 and
//!    p99.9 latency at that rate. The load is `resp_load` (open loop, a
//!    mix of PING, SET and GET, every reply checked), 50 connections,
//!    without pipelining (`-P 1`) and with 16 commands per send (`-P 16`),
//!    each at two rates: 25% and 60% of the slowest server's closed-loop
//!    peak measured just before. `ours'`, a second process of our server,
//!    runs in the same rounds: ours'/ours is the noise floor, and a ratio
//!    of ours against a peer counts only when it lies beyond it.
//! 2. The second table: peak requests per second from redis-benchmark
//!    (`-c 50 -t ping,set,get -P 1|16`). On two cores redis-benchmark
//!    saturates its core before the servers do, so these figures mostly
//!    measure the client; they stay for comparison with other reports.
//!
//! `SUITE_KV_BEFORE=<path of another kv binary>` adds it as the variant
//! `before` to the fixed-rate cells (an old build against the new one in
//! the same rounds).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::ecosystem::{cpu_per, server_cpu};
use crate::harness::fleet::{Fleet, Spec};
use crate::harness::model::{human, num, result_lines, Cell, NoiseRow, Outcome, Sample, SATURATED};
use crate::harness::rounds::Rounds;
use crate::harness::{proc, Ctx};

/// Our server, its second copy (the noise floor), the peers.
const OURS: &str = "ours";
const OURS2: &str = "ours'";
const TOKIO: &str = "tokio_kv";
const REDIS: &str = "redis-server";
/// An older build of our server (`SUITE_KV_BEFORE`).
const BEFORE: &str = "before";
/// The peers of the redis-benchmark table.
const PEAK_PEERS: [&str; 3] = [OURS, TOKIO, REDIS];
const PIPELINES: [u32; 2] = [1, 16];
/// The tests redis-benchmark reports for `-t ping,set,get`.
const TESTS: [&str; 4] = ["PING_INLINE", "PING_MBULK", "SET", "GET"];
/// Connections, of redis-benchmark and of resp_load.
const CLIENTS: u32 = 50;
/// Per-run overhead on top of warm-up and measurement (spawn, connect,
/// the 150 ms after `MARK end`).
const OVERHEAD: f64 = 0.35;
/// The tag of the progress lines.
const TAG: &str = "kv";
/// Samples per second of the server's CPU time for the user/system split.
const SAMPLE_HZ: u32 = 2000;

/// What one invocation of the scenario runs.
struct Config {
    /// Measured seconds of each fixed-rate run.
    fixed_secs: f64,
    /// Seconds of resp_load's warm-up before each of them.
    warmup: f64,
    /// Rounds of the fixed-rate cells.
    rounds: usize,
    /// The offered rates, as shares of the slowest closed-loop peak.
    shares: Vec<f64>,
    /// Measured seconds of each calibration (closed-loop) run.
    calib_secs: f64,
    /// Seconds one redis-benchmark invocation (all four tests) should last.
    rb_secs: f64,
    /// Rounds of the redis-benchmark table.
    rb_rounds: usize,
}

fn config(ctx: &Ctx) -> Config {
    if ctx.quick {
        Config {
            fixed_secs: 1.0,
            warmup: 0.2,
            rounds: ctx.rounds.min(2),
            shares: vec![0.6],
            calib_secs: 0.5,
            rb_secs: 0.6,
            rb_rounds: 1,
        }
    } else {
        Config {
            fixed_secs: 3.0,
            warmup: 0.5,
            // 2 rounds: the scenario has 4 fixed-rate cells (2 pipelines
            // x 2 rates) of 4 servers; 3 would take the full run past 20
            // minutes.
            rounds: ctx.rounds.min(2),
            shares: vec![0.25, 0.6],
            calib_secs: 1.0,
            rb_secs: 1.5,
            // The peak table is the second one: 1 round.
            rb_rounds: 1,
        }
    }
}

/// The older kv binary to measure beside ours, if asked for.
fn before_binary() -> Option<String> {
    std::env::var("SUITE_KV_BEFORE")
        .ok()
        .filter(|s| !s.is_empty())
}

/// The variants of the fixed-rate cells.
fn fixed_peers() -> Vec<&'static str> {
    let mut v = vec![OURS, TOKIO, REDIS, OURS2];
    if before_binary().is_some() {
        v.push(BEFORE);
    }
    v
}

/// Planned seconds.
pub(crate) fn plan(ctx: &Ctx) -> f64 {
    let c = config(ctx);
    let n = fixed_peers().len() as f64;
    let per_p = n * (c.calib_secs + 0.3 + OVERHEAD)
        + c.shares.len() as f64 * c.rounds as f64 * n * (c.fixed_secs + c.warmup + OVERHEAD);
    let peak_n = PEAK_PEERS.len() as f64;
    let rb = peak_n * 0.8 + c.rb_rounds as f64 * peak_n * (c.rb_secs + 0.3);
    PIPELINES.len() as f64 * (per_p + rb) + n * 0.2
}

/// Requests per test of the calibration / warm-up runs, per pipeline.
fn calib_n(pipeline: u32) -> u64 {
    if pipeline == 1 {
        5_000
    } else {
        50_000
    }
}

/// One parsed CSV row: (test, rps, p50 ms, p99 ms).
type Row = (String, f64, Option<f64>, Option<f64>);

/// Parses redis-benchmark's `--csv` output.
pub(crate) fn parse_csv(out: &str) -> Vec<Row> {
    let mut header: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for line in out.lines() {
        let cols: Vec<String> = line
            .trim()
            .split(',')
            .map(|c| c.trim().trim_matches('"').to_string())
            .collect();
        if cols.len() < 2 {
            continue;
        }
        if cols[0] == "test" {
            header = cols;
            continue;
        }
        let idx = |name: &str| header.iter().position(|h| h == name);
        let get = |i: Option<usize>| {
            i.and_then(|i| cols.get(i))
                .and_then(|v| v.parse::<f64>().ok())
        };
        let rps = get(idx("rps").or(Some(1)));
        if let Some(rps) = rps {
            rows.push((
                cols[0].clone(),
                rps,
                get(idx("p50_latency_ms")),
                get(idx("p99_latency_ms")),
            ));
        }
    }
    rows
}

/// One redis-benchmark run: the rows plus the tool's CPU share.
fn bench(
    ctx: &Ctx,
    out: &mut Outcome,
    addr: SocketAddr,
    pipeline: u32,
    n: u64,
) -> Result<(Vec<Row>, f64, f64), String> {
    let args: Vec<String> = [
        "-h",
        "127.0.0.1",
        "-p",
        &addr.port().to_string(),
        "-c",
        &CLIENTS.to_string(),
        "-n",
        &n.to_string(),
        "-t",
        "ping,set,get",
        "-P",
        &pipeline.to_string(),
        "--csv",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (cmd, f) = proc::run(
        ctx.loader_core,
        "redis-benchmark",
        &args,
        Duration::from_secs(120),
    )?;
    out.command(&cmd.replace(&addr.port().to_string(), "<port>"));
    if !f.success() {
        return Err(format!("redis-benchmark: {}", f.describe()));
    }
    let rows = parse_csv(&f.stdout);
    if rows.is_empty() {
        return Err(format!(
            "no CSV rows from redis-benchmark: {}",
            f.describe()
        ));
    }
    Ok((rows, f.cpu_secs / f.wall_secs.max(1e-3), f.wall_secs))
}

/// One resp_load invocation's parameters.
struct Load {
    pipeline: u32,
    secs: f64,
    warmup: f64,
    /// Commands per second offered, or closed loop.
    rate: Option<f64>,
}

impl Load {
    fn args(&self, addr: SocketAddr) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "--addr".into(),
            addr.to_string(),
            "--conns".into(),
            CLIENTS.to_string(),
            "--pipeline".into(),
            self.pipeline.to_string(),
            "--secs".into(),
            super::echo::fmt_secs(self.secs),
            "--warmup".into(),
            super::echo::fmt_secs(self.warmup),
        ];
        if let Some(r) = self.rate {
            v.extend(["--rate".into(), format!("{r:.0}")]);
        }
        v
    }
}

/// The RESULT line of a finished resp_load, or why it failed.
fn result_of(f: &proc::Finished) -> Result<Vec<(String, String)>, String> {
    match result_lines(&f.stdout).into_iter().next() {
        Some(l) if f.success() => Ok(l),
        Some(l) => Err(format!(
            "resp_load: {} errors: {}",
            num(&l, "errors").unwrap_or(0.0),
            f.describe()
        )),
        None => Err(format!("resp_load printed no RESULT: {}", f.describe())),
    }
}

/// A closed-loop resp_load run against `peer`: its commands per second.
fn peak(
    ctx: &Ctx,
    out: &mut Outcome,
    fleet: &mut Fleet,
    peer: &str,
    load: &Load,
) -> Result<(f64, f64), String> {
    let addr = fleet.addr(peer, out)?;
    let (cmd, f) = proc::run(
        ctx.loader_core,
        &ctx.bin("resp_load"),
        &load.args(addr),
        Duration::from_secs_f64(load.secs + load.warmup + 30.0),
    )?;
    out.command(&cmd.replace(&addr.to_string(), "<addr>"));
    let l = result_of(&f)?;
    Ok((
        num(&l, "rate").ok_or("no rate= in RESULT")?,
        num(&l, "client_cpu").unwrap_or(0.0),
    ))
}

/// One fixed-rate run against `peer`: the server's CPU time over
/// resp_load's measured window (sampled at its `MARK window` and `MARK
/// end`) per command answered in it, user and system apart, with the
/// latency the client saw.
fn fixed_run(
    ctx: &Ctx,
    out: &mut Outcome,
    fleet: &mut Fleet,
    peer: &str,
    load: &Load,
) -> Result<Sample, String> {
    let addr = fleet.addr(peer, out)?;
    let pid = fleet.pid(peer).ok_or("the server is not running")?;
    let mut args = load.args(addr);
    args.push("--marks".into());
    // Sampling runs from before the warm-up (perf takes a while to attach)
    // to the window's end: the warm-up is at the same offered rate.
    let sampler = proc::ModeSampler::start(ctx.loader_core, pid, SAMPLE_HZ);
    let mut child =
        proc::spawn(ctx.loader_core, &ctx.bin("resp_load"), &args).map_err(|e| e.to_string())?;
    out.command(&child.cmdline.replace(&addr.to_string(), "<addr>"));
    let deadline = Instant::now() + Duration::from_secs_f64(load.secs + load.warmup + 30.0);
    let (mut at_window, mut at_end) = (None, None);
    loop {
        if at_end.is_none() {
            let so_far = child.stdout_so_far();
            if at_window.is_none() && so_far.contains("MARK window") {
                at_window = server_cpu(pid);
            }
            if at_window.is_some() && so_far.contains("MARK end") {
                at_end = server_cpu(pid);
            }
        }
        if at_end.is_some() || child.try_finished().is_some() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let modes = sampler.and_then(proc::ModeSampler::finish);
    let f = child.wait(Duration::from_secs(5));
    let l = result_of(&f)?;
    let (before, after) = at_window
        .zip(at_end)
        .ok_or("the server could not be sampled during the measured window")?;
    let cmds = num(&l, "cmds").ok_or("no cmds= in RESULT")?;
    if cmds <= 0.0 {
        return Err("no command answered".into());
    }
    let (total, mut user, mut sys) = cpu_per(before, after, cmds);
    if let Some((u, k)) = modes {
        // perf's samples split the total (see `ModeSampler`); the ticks
        // only where perf is missing.
        user = total * u as f64 / (u + k) as f64;
        sys = total - user;
    }
    let mut s = Sample::new(total);
    s.extras.push(("user µs/cmd", user));
    s.extras.push(("sys µs/cmd", sys));
    for (k, name) in [
        ("p50_us", "p50 µs"),
        ("p99_us", "p99 µs"),
        ("p999_us", "p99.9 µs"),
        ("rate", "cmds/s"),
    ] {
        if let Some(v) = num(&l, k) {
            s.extras.push((name, v));
        }
    }
    s.loader_cpu = num(&l, "client_cpu");
    s.rejected = s.loader_cpu.is_some_and(|c| c >= SATURATED);
    let offered = load.rate.unwrap_or(0.0);
    if num(&l, "rate").is_some_and(|r| r < 0.97 * offered) {
        s.note = Some(format!("did not sustain {} cmds/s", human(offered)));
    }
    Ok(s)
}

/// The rate a share of `slowest` comes to: two significant digits.
fn rate_of(share: f64, slowest: f64) -> f64 {
    let r = share * slowest;
    let unit = 10f64.powi((r.max(10.0).log10().floor() as i32) - 1);
    ((r / unit).round() * unit).max(1000.0)
}

/// Runs the scenario.
pub(crate) fn run(ctx: &Ctx) -> Outcome {
    let c = config(ctx);
    let mut out = Outcome {
        name: "kv",
        title: "Key-value (RESP)".to_string(),
        ..Default::default()
    };
    if !proc::program_in_path(&ctx.bin("resp_load")) {
        out.notes
            .push("not measured: target/release/resp_load is missing".to_string());
        return out;
    }
    let mut specs = vec![
        Spec::new(OURS, &ctx.example("kv"), &[]),
        Spec::new(TOKIO, &ctx.bin("tokio_kv"), &[]),
        Spec::new(
            REDIS,
            "redis-server",
            &[
                "--port",
                "{port}",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
        ),
        Spec::new(OURS2, &ctx.example("kv"), &[]),
    ];
    if let Some(path) = before_binary() {
        specs.push(Spec::new(BEFORE, &path, &[]));
    }
    let names = fixed_peers();
    let mut fleet = Fleet::start(ctx, &mut out, specs);
    let peers = fleet.peers();
    if !peers.iter().any(|p| p == OURS) {
        out.notes
            .push("not measured: our kv server did not start".to_string());
        fleet.stop();
        return out;
    }
    let peers: Vec<&str> = peers.iter().map(String::as_str).collect();

    // 1. Fixed rates.
    let mut fixed_cells = Vec::new();
    let mut calib_notes = Vec::new();
    for &p in &PIPELINES {
        // Calibration (and warm-up): the closed-loop peak of every server.
        let load = Load {
            pipeline: p,
            secs: c.calib_secs,
            warmup: 0.3,
            rate: None,
        };
        let mut peaks = Vec::new();
        for &peer in &peers {
            match peak(ctx, &mut out, &mut fleet, peer, &load) {
                Ok((rate, client)) => {
                    peaks.push((peer, rate, client));
                }
                Err(e) => eprintln!("suite: {TAG} calibration -P {p} {peer}: {e}"),
            }
        }
        let slowest = peaks.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
        let slowest = if slowest.is_finite() {
            slowest
        } else {
            // Nothing answered: a rate every server sustains on 2 cores.
            if p == 1 {
                40_000.0
            } else {
                200_000.0
            }
        };
        calib_notes.push(format!(
            "-P {p}: {}",
            peaks
                .iter()
                .map(|(peer, r, cl)| format!(
                    "{peer} {} (client CPU {:.0}%)",
                    human(*r),
                    cl * 100.0
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        ctx.log(&format!(
            "  [{TAG}] -P {p} closed-loop peaks: {}",
            calib_notes.last().map(String::as_str).unwrap_or("")
        ));
        for &share in &c.shares {
            let rate = rate_of(share, slowest);
            let mut cell = Cell::new(
                format!(
                    "-P {p}, {CLIENTS} conns, {} cmds/s ({:.0}% of the slowest peak)",
                    human(rate),
                    share * 100.0
                ),
                rate,
                &names,
                "server CPU µs/cmd",
            );
            cell.higher_is_better = false;
            let load = Load {
                pipeline: p,
                secs: c.fixed_secs,
                warmup: c.warmup,
                rate: Some(rate),
            };
            Rounds::new(ctx, TAG)
                .rounds(c.rounds)
                .rotate()
                .show(|v| format!("{v:.2}µs"))
                .run(&mut out, &mut cell, &peers, |out, peer| {
                    fixed_run(ctx, out, &mut fleet, peer, &load)
                });
            fixed_cells.push(cell);
        }
    }
    out.notes.push(format!(
        "Fixed rate (the primary table): `resp_load --conns {CLIENTS} --pipeline P --rate R --secs {} --warmup {} --marks` (open loop on the raw io-uring crate; commands PING, SET, GET in turn, 10,000 keys split between the connections, 32-byte values; every reply parsed and checked against what the connection last SET, any mismatch fails the run). R is {} of the slowest server's closed-loop peak from a calibration run just before (`resp_load` without `--rate`, {} s; cmds/s: {}). Server CPU = the server process's CPU over resp_load's measured window (sampled at its `MARK window` and `MARK end` lines; the CPU-time clock for the total, split into user and system by the share of `perf record -e cpu-clock -F {SAMPLE_HZ}` samples of the server in user mode over the warm-up and the window (the same offered rate), a few hundred to a few thousand per run; without perf, by the scheduler's ticks from taskstats, which at low rates can miss user time entirely) divided by the commands answered in it. p50/p99/p99.9: the latency of a batch from its scheduled send time to its last reply, as the client saw it. `ours'` is a second process of our server, its ratio to ours the noise floor. {} rounds per cell, the variants interleaved and their order rotated; a round is rejected if resp_load used {:.0}% of its core.{}",
        super::echo::fmt_secs(c.fixed_secs),
        super::echo::fmt_secs(c.warmup),
        c.shares
            .iter()
            .map(|s| format!("{:.0}%", s * 100.0))
            .collect::<Vec<_>>()
            .join(" and "),
        super::echo::fmt_secs(c.calib_secs),
        calib_notes.join("; "),
        c.rounds,
        SATURATED * 100.0,
        if before_binary().is_some() {
            " `before` is the older kv binary named by SUITE_KV_BEFORE."
        } else {
            ""
        }
    ));

    // 2. Peak throughput, redis-benchmark.
    let peak_cells = redis_benchmark_table(ctx, &mut out, &mut fleet, &c);
    fleet.stop();

    // Ours against each peer, beside the noise floor.
    let mut rows = Vec::new();
    for cell in &fixed_cells {
        let short = cell
            .label
            .split(" (")
            .next()
            .unwrap_or(&cell.label)
            .to_string();
        for (peer, key, what) in [
            (REDIS, None, "server CPU µs/cmd"),
            (REDIS, Some("user µs/cmd"), "user µs/cmd"),
            (REDIS, Some("sys µs/cmd"), "system µs/cmd"),
            (REDIS, Some("p99 µs"), "p99 µs"),
            (TOKIO, None, "server CPU µs/cmd"),
            (BEFORE, None, "server CPU µs/cmd"),
        ] {
            if cell.get(peer).is_none() {
                continue;
            }
            let goal = (peer == REDIS && key.is_none()).then_some((1.0, "≤"));
            rows.push(NoiseRow::against(
                cell,
                peer,
                key,
                format!("{short}: {what}"),
                false,
                goal,
            ));
        }
    }
    for r in &rows {
        if r.peer_name == REDIS && r.what.ends_with(": server CPU µs/cmd") {
            let mut t = r.target();
            t.what = format!("kv {}: ours ≤ redis-server", r.what);
            t.measured = format!(
                "{}; noise floor {}: {}",
                t.measured,
                r.noise.map(|x| x.show()).unwrap_or_else(|| "—".into()),
                r.verdict()
            );
            out.targets.push(t);
        }
        ctx.log(&format!(
            "  [{TAG}] {} vs {}: {}",
            r.what,
            r.peer_name,
            r.summary("peer")
        ));
    }
    out.extra_md.push(noise_md(&rows));
    out.tables.push((
        "Server CPU per command at fixed offered rates (resp_load)".to_string(),
        fixed_cells,
    ));
    out.tables.push((
        "Peak requests per second (redis-benchmark; the client saturates)".to_string(),
        peak_cells,
    ));
    out
}

/// The comparison table of the fixed-rate cells.
fn noise_md(rows: &[NoiseRow]) -> String {
    let mut s = String::from(
        "### Ours against each peer at fixed rates, beside the noise floor\n\n\
| figure | peer | ours | peer | ours/peer median [min–max] | noise floor ours'/ours [min–max] | beyond the noise? |\n\
|---|---|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} |\n",
            r.what,
            r.peer_name,
            r.md_cells()
        ));
    }
    s.push_str(
        "\nours/peer is the median of the per-round ratios (below 1: ours spends less). ours'/ours, two processes of the same server in the same rounds, is how far identical servers differ here; a ratio counts only when every round of it lies outside that range, made symmetric around 1.00x (an A-vs-A ratio r means identical servers differ by r either way): \"within the noise\" otherwise.\n",
    );
    s
}

/// The redis-benchmark cells: peak req/s per test.
fn redis_benchmark_table(ctx: &Ctx, out: &mut Outcome, fleet: &mut Fleet, c: &Config) -> Vec<Cell> {
    if !proc::program_in_path("redis-benchmark") {
        out.notes
            .push("peak table not measured: redis-benchmark is not installed".to_string());
        return Vec::new();
    }
    let peers: Vec<String> = fleet
        .peers()
        .into_iter()
        .filter(|p| PEAK_PEERS.contains(&p.as_str()))
        .collect();
    let mut notes_n = Vec::new();
    let mut all_cells = Vec::new();
    for &p in &PIPELINES {
        // Calibration: one short run per server; -n for the measured runs
        // is chosen from ours so that a run lasts rb_secs.
        let mut n = None;
        for peer in &peers {
            let r = fleet
                .addr(peer, out)
                .and_then(|a| bench(ctx, out, a, p, calib_n(p)));
            match r {
                Ok((_, _, wall)) if peer == OURS => {
                    let per_req = wall / (TESTS.len() as f64 * calib_n(p) as f64);
                    let want = c.rb_secs / TESTS.len() as f64 / per_req;
                    n = Some(((want / 1000.0).round() as u64 * 1000).clamp(2_000, 5_000_000));
                }
                Ok(_) => {}
                Err(e) => eprintln!("suite: kv warm-up {peer}: {e}"),
            }
        }
        let n = n.unwrap_or(calib_n(p) * 2);
        notes_n.push(format!("-P {p}: -n {n}"));
        let mut cells: Vec<Cell> = TESTS
            .iter()
            .map(|t| Cell::new(format!("{t} -P {p}"), p as f64, &PEAK_PEERS, "req/s"))
            .collect();
        for round in 0..c.rb_rounds {
            let mut line = format!(
                "  [kv] redis-benchmark -P {p} round {}/{}:",
                round + 1,
                c.rb_rounds
            );
            for peer in &peers {
                let r = fleet.addr(peer, out).and_then(|a| bench(ctx, out, a, p, n));
                match r {
                    Ok((rows, cpu, _)) => {
                        line.push_str(&format!(" {peer}"));
                        for cell in cells.iter_mut() {
                            let test = cell.label.split(' ').next().unwrap_or_default().to_string();
                            let sample = match rows.iter().find(|r| r.0 == test) {
                                Some((_, rps, p50, p99)) => {
                                    let mut s = Sample::new(*rps);
                                    if let Some(v) = p50 {
                                        s.extras.push(("p50 µs", v * 1e3));
                                    }
                                    if let Some(v) = p99 {
                                        s.extras.push(("p99 µs", v * 1e3));
                                    }
                                    s.loader_cpu = Some(cpu);
                                    s.rejected = cpu >= SATURATED;
                                    line.push_str(&format!(
                                        " {}={}{}",
                                        test.to_lowercase(),
                                        human(*rps),
                                        if s.rejected { "(sat)" } else { "" }
                                    ));
                                    Ok(s)
                                }
                                None => Err(format!("no {test} row")),
                            };
                            cell.get_mut(peer).expect("peer").rounds.push(sample);
                        }
                    }
                    Err(e) => {
                        line.push_str(&format!(" {peer} FAIL"));
                        eprintln!("suite: kv {peer}: {e}");
                        for cell in cells.iter_mut() {
                            cell.get_mut(peer)
                                .expect("peer")
                                .rounds
                                .push(Err(e.clone()));
                        }
                    }
                }
            }
            ctx.log(&line);
        }
        all_cells.extend(cells);
    }
    out.notes.push(format!(
        "Peak (the second table): redis-benchmark -c {CLIENTS} -t ping,set,get -P <1|16> --csv; -n chosen from a calibration run against ours so that one invocation (four tests) lasts about {} s ({}); one warm-up run per server, then {} rounds with the servers interleaved. redis-server runs as `redis-server --port P --save \"\" --appendonly no --daemonize no`. The load generator's CPU is redis-benchmark's rusage over its wall time (one value per invocation); it is near a full core in most runs, so this table mostly measures redis-benchmark and carries no target.",
        c.rb_secs,
        notes_n.join(", "),
        c.rb_rounds
    ));
    all_cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_csv() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"PING_INLINE\",\"131578.95\",\"0.199\",\"0.048\",\"0.191\",\"0.287\",\"0.407\",\"1.175\"\n\"SET\",\"100000.00\",\"0.2\",\"0.1\",\"0.2\",\"0.3\",\"0.5\",\"1.0\"\n";
        let rows = parse_csv(out);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, "PING_INLINE");
        assert_eq!(rows[0].1, 131578.95);
        assert_eq!(rows[0].2, Some(0.191));
        assert_eq!(rows[1].3, Some(0.5));
    }

    #[test]
    fn rates_have_two_significant_digits() {
        assert_eq!(rate_of(0.25, 123_456.0), 31_000.0);
        assert_eq!(rate_of(0.6, 1_234_567.0), 740_000.0);
        assert_eq!(rate_of(0.25, 1000.0), 1000.0);
    }

    #[test]
    fn plan_is_under_four_minutes() {
        let ctx = Ctx::for_tests(false);
        let p = plan(&ctx);
        assert!((150.0..=245.0).contains(&p), "{p}");
    }
}
