//! Scenarios 2 and 3 under wrk: our HTTP server against tokio, hyper and
//! monoio servers, and against the seven classic server architectures.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::harness::fleet::{Fleet, Spec};
use crate::harness::model::{human, Cell, Outcome, Sample, Target, SATURATED};
use crate::harness::rounds::Rounds;
use crate::harness::{chart, proc, Ctx};

/// The HTTP peers: (name, program).
fn http_peers(ctx: &Ctx) -> Vec<Spec> {
    vec![
        Spec::new("ours", &ctx.example("http"), &[]),
        Spec::new("tokio_http", &ctx.bin("tokio_http"), &[]),
        Spec::new("hyper_http", &ctx.bin("hyper_http"), &[]),
        Spec::new("monoio_http", &ctx.bin("monoio_http"), &[]),
    ]
}

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

fn arch_peers(ctx: &Ctx) -> Vec<Spec> {
    let mut v = vec![Spec::new("ours", &ctx.example("http"), &[])];
    v.extend(ARCHS.iter().map(|a| Spec::new(a, &ctx.bin(a), &[])));
    v
}

/// wrk's run length in seconds (whole seconds: wrk takes no fractions).
fn wrk_secs(_ctx: &Ctx) -> u32 {
    1
}

fn http_conc(ctx: &Ctx) -> Vec<usize> {
    if ctx.quick {
        vec![50, 1000]
    } else {
        vec![50, 256, 1000]
    }
}

fn arch_conc(ctx: &Ctx) -> Vec<usize> {
    if ctx.quick {
        vec![200, 1000]
    } else {
        vec![20, 200, 1000]
    }
}

/// Per-run overhead on top of wrk's duration (start, connect, tear-down;
/// a forking server at 1,000 connections takes a while).
const OVERHEAD: f64 = 0.3;

/// Seconds of one server's warm-up: a wrk run in full mode, a few hundred
/// requests from [`quick_warm_up`] in quick mode.
fn warm_secs(ctx: &Ctx) -> f64 {
    if ctx.quick {
        0.1
    } else {
        wrk_secs(ctx) as f64 + OVERHEAD
    }
}

/// Planned seconds of the HTTP scenario.
pub(crate) fn plan_http(ctx: &Ctx) -> f64 {
    let n = 4.0;
    let per = wrk_secs(ctx) as f64 + OVERHEAD;
    n * warm_secs(ctx) + http_conc(ctx).len() as f64 * ctx.rounds as f64 * n * per + n * 0.2
}

/// Planned seconds of the architectures scenario.
pub(crate) fn plan_arch(ctx: &Ctx) -> f64 {
    let n = 8.0;
    let per = wrk_secs(ctx) as f64 + OVERHEAD;
    n * warm_secs(ctx) + arch_conc(ctx).len() as f64 * ctx.rounds as f64 * n * per + n * 0.2
}

/// The request of every run.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Quick mode's warm-up: 200 requests, one at a time, over one keep-alive
/// connection (one, because an iterative or pre-forked server serves only
/// as many connections at once as it has workers); checks that the server
/// answers 200 at all.
fn quick_warm_up(addr: SocketAddr) -> Result<(), String> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    for _ in 0..200 {
        c.write_all(REQUEST).map_err(|e| format!("write: {e}"))?;
        // Read until the whole 13-byte body has arrived.
        let mut got = Vec::new();
        loop {
            let n = c.read(&mut buf).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("the server closed the connection".to_string());
            }
            got.extend_from_slice(&buf[..n]);
            if got.windows(13).any(|w| w == b"Hello, World!") {
                break;
            }
        }
        if !got.starts_with(b"HTTP/1.1 200") {
            return Err(format!(
                "unexpected answer: {}",
                proc::shorten(&String::from_utf8_lossy(&got), 60)
            ));
        }
    }
    Ok(())
}

/// Converts wrk's "123.45us" / "1.20ms" / "2.00s" to microseconds.
pub(crate) fn wrk_time_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mul) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix("m") {
        (v, 60e6)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        (s, 1.0)
    };
    num.trim().parse::<f64>().ok().map(|v| v * mul)
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
            w.p50_us = wrk_time_us(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            w.p99_us = wrk_time_us(v);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            w.socket_errors = Some(v.trim().to_string());
        } else if let Some((_, v)) = t.split_once(" requests in ") {
            w.secs = v.split(',').next().and_then(wrk_time_us).map(|us| us / 1e6);
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            w.non_2xx = v.trim().parse().unwrap_or(0);
        }
    }
    w.rps = rps?;
    Some(w)
}

/// One wrk run against `addr`.
fn wrk(
    ctx: &Ctx,
    out: &mut Outcome,
    addr: SocketAddr,
    conns: usize,
    secs: u32,
) -> Result<Sample, String> {
    let args = vec![
        "-t1".to_string(),
        format!("-c{conns}"),
        format!("-d{secs}s"),
        "--latency".to_string(),
        format!("http://{addr}/"),
    ];
    let (cmd, f) = proc::run(
        ctx.loader_core,
        "wrk",
        &args,
        Duration::from_secs(secs as u64 + 30),
    )?;
    out.command(&cmd);
    if !f.success() {
        return Err(format!("wrk: {}", f.describe()));
    }
    let w = parse_wrk(&f.stdout)
        .ok_or_else(|| format!("no Requests/sec in wrk's output: {}", f.describe()))?;
    if w.rps <= 0.0 {
        return Err(format!(
            "no request completed in {secs} s{}",
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

/// Runs one wrk matrix: warm-up per peer, then for each concurrency the
/// rounds with the peers interleaved.
fn matrix(ctx: &Ctx, out: &mut Outcome, tag: &str, specs: Vec<Spec>, concs: &[usize]) -> Vec<Cell> {
    let names: Vec<String> = specs.iter().map(|s| s.peer.clone()).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    if !proc::program_in_path("wrk") {
        out.notes
            .push("not measured: wrk is not installed".to_string());
        return Vec::new();
    }
    let mut fleet = Fleet::start(ctx, out, specs);
    let peers = fleet.peers();
    if !peers.iter().any(|p| p == "ours") {
        out.notes
            .push("not measured: our http server did not start".to_string());
        fleet.stop();
        return Vec::new();
    }
    let secs = wrk_secs(ctx);
    let warm_conc = concs[concs.len() / 2].min(256);
    for peer in &peers {
        if let Ok(addr) = fleet.addr(peer, out) {
            let r = if ctx.quick {
                quick_warm_up(addr)
            } else {
                wrk(ctx, out, addr, warm_conc, secs).map(|_| ())
            };
            if let Err(e) = r {
                eprintln!("suite: {tag} warm-up {peer}: {e}");
            }
        }
    }
    if ctx.quick {
        ctx.log(&format!("  [{tag}] warm-up done (200 requests per server)"));
    } else {
        ctx.log(&format!(
            "  [{tag}] warm-up done ({secs} s of wrk at {warm_conc} conns per server)"
        ));
    }
    let peers: Vec<&str> = peers.iter().map(String::as_str).collect();
    let mut cells = Vec::new();
    for &conc in concs {
        let mut cell = Cell::new(format!("{conc} conns"), conc as f64, &name_refs, "req/s");
        Rounds::new(ctx, tag).run(out, &mut cell, &peers, |out, peer| {
            let cpu_before = fleet.cpu_secs(peer);
            let addr = fleet.addr(peer, out)?;
            let mut s = wrk(ctx, out, addr, conc, secs)?;
            // The server's own CPU per request over the run: steadier
            // than req/s when wrk, not the server, is the bottleneck.
            // /proc/<pid>/stat does not count worker processes.
            let multi_process = matches!(peer, "arch_fork" | "arch_prefork");
            let requests = s.value * f64::from(secs);
            if let (Some(before), Some(after)) = (cpu_before, fleet.cpu_secs(peer)) {
                if requests > 0.0 && !multi_process {
                    s.extras
                        .push(("server CPU µs/req", (after - before) * 1e6 / requests));
                }
            }
            Ok(s)
        });
        cells.push(cell);
    }
    fleet.stop();
    cells
}

fn method_note(ctx: &Ctx, concs: &[usize]) -> String {
    format!(
        "wrk -t1 -c<conns> -d{}s --latency, conns {}; {}, then {} rounds with the servers interleaved. The load generator's CPU is wrk's rusage (wait4) over the run's length as wrk reports it. `server CPU µs/req` is the server's utime + stime (/proc/<pid>/stat, all threads; not shown for arch_fork and arch_prefork, whose worker processes it does not count) before and after the run divided by the requests answered: where wrk saturates, req/s measures wrk, and this column compares the servers.",
        wrk_secs(ctx),
        concs.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", "),
        if ctx.quick {
            "a warm-up of 200 requests on one keep-alive connection per server (quick mode)".to_string()
        } else {
            format!("a {} s wrk warm-up run per server", wrk_secs(ctx))
        },
        ctx.rounds
    )
}

/// Scenario 2.
pub(crate) fn run_http(ctx: &Ctx) -> Outcome {
    let mut out = Outcome {
        name: "http",
        title: "HTTP".to_string(),
        ..Default::default()
    };
    let concs = http_conc(ctx);
    out.notes.push(method_note(ctx, &concs));
    if ctx.quick {
        out.notes
            .push("Quick mode: conns 50 and 1000 only (full: 50, 256, 1000).".to_string());
    }
    out.notes.push(
        "Every server answers `GET /` with the same 13-byte body; hyper adds a Date header."
            .to_string(),
    );
    let cells = matrix(ctx, &mut out, "http", http_peers(ctx), &concs);
    for cell in &cells {
        for (peer, min) in [("tokio_http", 1.2), ("monoio_http", 1.0)] {
            out.targets.push(Target::ratio(
                format!("http {}: ≥ {min:.1}x {peer}", cell.label),
                cell.ratio("ours", peer),
                min,
            ));
        }
    }
    out.charts.extend(chart::lines(
        ctx,
        "http",
        "HTTP: requests/s by concurrency (wrk -t1)",
        ("connections", "requests/s"),
        &cells,
    ));
    out.tables.push(("Requests per second".to_string(), cells));
    out
}

/// Scenario 3.
pub(crate) fn run_arch(ctx: &Ctx) -> Outcome {
    let mut out = Outcome {
        name: "arch",
        title: "Seven server architectures".to_string(),
        ..Default::default()
    };
    let concs = arch_conc(ctx);
    out.notes.push(method_note(ctx, &concs));
    if ctx.quick {
        out.notes
            .push("Quick mode: concurrency 200 and 1000 only (full: 20, 200, 1000).".to_string());
    }
    out.notes.push("ours = the http example. arch_iterative serves one connection at a time, so with keep-alive it serves the first connection while the others wait.".to_string());
    let cells = matrix(ctx, &mut out, "arch", arch_peers(ctx), &concs);
    for cell in cells.iter().filter(|c| c.x >= 200.0) {
        let ours = cell.get("ours").and_then(|s| s.median());
        let best_other = cell
            .series
            .iter()
            .filter(|s| s.peer != "ours")
            .filter_map(|s| Some((s.peer.clone(), s.median()?)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let (measured, pass) = match (ours, &best_other) {
            (Some(o), Some((p, v))) => (
                format!("ours {} vs best other {p} {}", human(o), human(*v)),
                Some(o > *v),
            ),
            (Some(o), None) => (format!("ours {} (no other measured)", human(o)), None),
            _ => ("not measured".to_string(), None),
        };
        out.targets.push(Target {
            what: format!("arch {}: ours highest", cell.label),
            measured,
            pass,
        });
    }
    out.charts.extend(chart::lines(
        ctx,
        "arch",
        "Seven architectures + ours: requests/s by concurrency (wrk -t1)",
        ("concurrent connections", "requests/s"),
        &cells,
    ));
    out.tables.push(("Requests per second".to_string(), cells));
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
        assert_eq!(wrk_time_us("2.00s"), Some(2e6));
    }
}
