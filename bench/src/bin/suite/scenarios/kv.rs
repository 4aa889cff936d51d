//! Scenario 4, key-value: redis-benchmark against our kv example, the same
//! server on tokio and redis-server itself, without and with pipelining.

use std::net::SocketAddr;
use std::time::Duration;

use crate::harness::fleet::{Fleet, Spec};
use crate::harness::model::{human, Cell, Outcome, Sample, Target, SATURATED};
use crate::harness::{proc, Ctx};

const PEERS: [&str; 3] = ["ours", "tokio_kv", "redis-server"];
const PIPELINES: [u32; 2] = [1, 16];
/// The tests redis-benchmark reports for `-t ping,set,get`.
const TESTS: [&str; 4] = ["PING_INLINE", "PING_MBULK", "SET", "GET"];
/// Clients (connections) of redis-benchmark.
const CLIENTS: u32 = 50;

/// Seconds one redis-benchmark invocation (all four tests) should last.
fn run_secs(ctx: &Ctx) -> f64 {
    if ctx.quick {
        0.6
    } else {
        2.0
    }
}

/// Requests per test of the calibration / warm-up runs, per pipeline.
fn calib_n(pipeline: u32) -> u64 {
    if pipeline == 1 {
        5_000
    } else {
        50_000
    }
}

/// Planned seconds.
pub(crate) fn plan(ctx: &Ctx) -> f64 {
    let n = PEERS.len() as f64;
    let per = run_secs(ctx) + 0.3;
    PIPELINES.len() as f64 * (n * 0.8 + ctx.rounds as f64 * n * per) + n * 0.2
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
    out.command(&cmd);
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

/// Runs the scenario.
pub(crate) fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome {
        name: "kv",
        title: "Key-value (RESP)".to_string(),
        ..Default::default()
    };
    if !proc::program_in_path("redis-benchmark") {
        out.notes
            .push("not measured: redis-benchmark is not installed".to_string());
        return out;
    }
    let mut specs = vec![
        Spec::new("ours", &ctx.example("kv"), &[]),
        Spec::new("tokio_kv", &ctx.bin("tokio_kv"), &[]),
    ];
    specs.push(Spec::new(
        "redis-server",
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
    ));
    let mut fleet = Fleet::start(ctx, &mut out, specs);
    let peers = fleet.peers();
    if !peers.iter().any(|p| p == "ours") {
        out.notes
            .push("not measured: our kv server did not start".to_string());
        fleet.stop();
        return out;
    }
    let mut notes_n = Vec::new();
    let mut all_cells = Vec::new();
    for &p in &PIPELINES {
        // Warm-up and calibration: one short run per server; -n for the
        // measured runs is chosen from ours so that a run lasts run_secs.
        let mut n = None;
        for peer in &peers {
            let r = fleet
                .addr(peer, &mut out)
                .and_then(|a| bench(ctx, &mut out, a, p, calib_n(p)));
            match r {
                Ok((_, _, wall)) if peer == "ours" => {
                    let per_req = wall / (TESTS.len() as f64 * calib_n(p) as f64);
                    let want = run_secs(ctx) / TESTS.len() as f64 / per_req;
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
            .map(|t| Cell::new(format!("{t} -P {p}"), p as f64, &PEERS, "req/s"))
            .collect();
        for round in 0..ctx.rounds {
            let mut line = format!("  [kv] -P {p} round {}/{}:", round + 1, ctx.rounds);
            for peer in &peers {
                let r = fleet
                    .addr(peer, &mut out)
                    .and_then(|a| bench(ctx, &mut out, a, p, n));
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
    fleet.stop();
    out.notes.push(format!(
        "redis-benchmark -c {CLIENTS} -t ping,set,get -P <1|16> --csv; -n chosen from a calibration run against ours so that one invocation (four tests) lasts about {} s ({}); one warm-up run per server, then {} rounds with the servers interleaved. redis-server runs as `redis-server --port P --save \"\" --appendonly no --daemonize no`. The load generator's CPU is redis-benchmark's rusage over its wall time (one value per invocation).",
        run_secs(ctx),
        notes_n.join(", "),
        ctx.rounds
    ));
    for cell in &all_cells {
        out.targets.push(Target::ratio(
            format!("kv {}: ≥ 1.0x redis-server", cell.label),
            cell.ratio("ours", "redis-server"),
            1.0,
        ));
    }
    out.tables
        .push(("Requests per second".to_string(), all_cells));
    out
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
}
