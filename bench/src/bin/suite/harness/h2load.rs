//! h2load, the HTTP load generator of every fixed-rate cell: its summary
//! and its per-request log (`--log-file`) parsed, one run to completion
//! ([`run`]), and a fixed-rate run measured over a window of its main phase
//! ([`fixed_rate`]): the server's CPU (its whole process group) read at the
//! two ends of the window, divided by the requests that ended inside it.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::model::Outcome;
use super::proc::{self, GroupCpu};
use super::Ctx;

/// Converts "123.45us" / "1.20ms" / "2.00s" / "1.5m" (wrk's and h2load's
/// times) to microseconds.
pub(crate) fn time_us(s: &str) -> Option<f64> {
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

/// What h2load printed that the suite uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct H2load {
    /// req/s over the measured duration.
    pub rps: f64,
    /// Requests that got a 2xx or 3xx answer.
    pub succeeded: u64,
    /// Failed + errored + timed-out requests.
    pub failed: u64,
    /// Mean, standard deviation and max of the request times, µs.
    pub mean_us: Option<f64>,
    pub sd_us: Option<f64>,
    pub max_us: Option<f64>,
    /// Percentiles of the request times, µs, from the per-request log
    /// (`--log-file`), when there is one.
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
}

/// Parses h2load's summary (nghttp2 1.52's format).
pub(crate) fn parse(out: &str) -> Option<H2load> {
    let mut h = H2load::default();
    let mut rps = None;
    for line in out.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("finished in ") {
            rps = rest
                .split(", ")
                .find_map(|p| p.strip_suffix(" req/s"))
                .and_then(|v| v.trim().parse::<f64>().ok());
        } else if let Some(rest) = t.strip_prefix("requests:") {
            for part in rest.split(',') {
                let mut w = part.split_whitespace();
                let (Some(n), Some(what)) = (w.next(), w.next()) else {
                    continue;
                };
                let n: u64 = n.parse().unwrap_or(0);
                match what {
                    "succeeded" => h.succeeded = n,
                    "failed" | "errored" | "timeout" => h.failed += n,
                    _ => {}
                }
            }
        } else if let Some(rest) = t.strip_prefix("time for request:") {
            // min max mean sd +/-sd
            let v: Vec<&str> = rest.split_whitespace().collect();
            h.max_us = v.get(1).and_then(|s| time_us(s));
            h.mean_us = v.get(2).and_then(|s| time_us(s));
            h.sd_us = v.get(3).and_then(|s| time_us(s));
        }
    }
    h.rps = rps?;
    Some(h)
}

/// One line of h2load's `--log-file`: tab-separated, the request's start
/// in µs since the epoch, its status code (-1 for a failed stream), and
/// the µs until the end of its response.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Logged {
    /// Start, µs since the epoch.
    pub start_us: u64,
    /// HTTP status, -1 for a failed stream.
    pub status: i32,
    /// µs from the start to the end of the response.
    pub us: u64,
}

impl Logged {
    /// When the response ended, µs since the epoch.
    pub(crate) fn end_us(&self) -> u64 {
        self.start_us + self.us
    }

    /// A 2xx or 3xx answer.
    pub(crate) fn ok(&self) -> bool {
        (200..400).contains(&self.status)
    }
}

/// The lines of a `--log-file` (lines that do not parse are skipped).
pub(crate) fn parse_log(log: &str) -> Vec<Logged> {
    log.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some(Logged {
                start_us: f.next()?.trim().parse().ok()?,
                status: f.next()?.trim().parse().ok()?,
                us: f.next()?.trim().parse().ok()?,
            })
        })
        .collect()
}

/// The 50th, 99th and 99.9th percentiles of `v` (sorted in place; the
/// nearest-rank value at or below each quantile); `None` if empty.
pub(crate) fn percentiles(v: &mut [f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    Some((at(0.50), at(0.99), at(0.999)))
}

/// p50, p99 and p99.9 of the answered (2xx/3xx) requests of a log.
pub(crate) fn log_percentiles(log: &str) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = parse_log(log)
        .iter()
        .filter(|l| l.ok())
        .map(|l| l.us as f64)
        .collect();
    percentiles(&mut v)
}

/// The answered requests of a log whose response ended in
/// `[from_us, to_us)`, the failed ones there, and the percentiles of the
/// answered ones' times.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Window {
    /// Answered (2xx/3xx) requests that ended inside the window.
    pub ok: usize,
    /// Failed requests (status -1 or another status) inside the window.
    pub failed: usize,
    /// (p50, p99, p99.9) of the answered ones, µs.
    pub pct: Option<(f64, f64, f64)>,
}

/// The requests of `log` that ended in `[from_us, to_us)`.
pub(crate) fn window(log: &[Logged], from_us: u64, to_us: u64) -> Window {
    let inside: Vec<&Logged> = log
        .iter()
        .filter(|l| (from_us..to_us).contains(&l.end_us()))
        .collect();
    let mut times: Vec<f64> = inside
        .iter()
        .filter(|l| l.ok())
        .map(|l| l.us as f64)
        .collect();
    Window {
        ok: times.len(),
        failed: inside.len() - times.len(),
        pct: percentiles(&mut times),
    }
}

/// A temporary file for the per-request log of one run.
fn log_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("suite-{tag}-{}.tsv", std::process::id()))
}

/// Runs h2load with `args` (the load, `-D` included) against `addr` for
/// `secs`, logging each request to a temporary file named after `tag` for
/// the percentiles h2load does not print; returns what it printed and its
/// CPU share (1.0 = one core).
pub(crate) fn run(
    ctx: &Ctx,
    out: &mut Outcome,
    mut args: Vec<String>,
    addr: SocketAddr,
    secs: u32,
    tag: &str,
) -> Result<(H2load, f64), String> {
    let log = log_path(tag);
    args.extend([
        "--log-file".into(),
        log.display().to_string(),
        format!("http://{addr}/"),
    ]);
    let run = proc::run(
        ctx.loader_core,
        "h2load",
        &args,
        Duration::from_secs(u64::from(secs) + 30),
    );
    let times = std::fs::read_to_string(&log).ok();
    let _ = std::fs::remove_file(&log);
    let (cmd, f) = run?;
    out.command(&cmd);
    if !f.success() {
        return Err(format!("h2load: {}", f.describe()));
    }
    let mut h =
        parse(&f.stdout).ok_or_else(|| format!("no req/s in h2load's output: {}", f.describe()))?;
    if let Some((p50, p99, p999)) = times.as_deref().and_then(log_percentiles) {
        h.p50_us = Some(p50);
        h.p99_us = Some(p99);
        h.p999_us = Some(p999);
    }
    if h.succeeded == 0 {
        return Err(format!(
            "h2load: no request succeeded ({} failed)",
            h.failed
        ));
    }
    Ok((h, f.cpu_secs / f.wall_secs.max(1e-3)))
}

/// A fixed offered load: `conns` keep-alive HTTP/1.1 connections, one
/// request in flight on each, `rps` requests per second per connection
/// (h2load's `--rps` is per connection).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Load {
    pub conns: usize,
    pub rps: usize,
}

impl Load {
    /// The offered rate, req/s.
    pub(crate) fn offered(&self) -> f64 {
        (self.conns * self.rps) as f64
    }

    /// Seconds of h2load's warm-up before its main phase (its connections
    /// are opened first: 10,000 take a while, more so with a process
    /// forked for each; h2load starts its main phase only once it has
    /// started them all).
    pub(crate) fn warm_up(&self) -> f64 {
        if self.conns <= 1000 {
            0.25
        } else {
            1.0
        }
    }
}

/// What one [`fixed_rate`] run measured over its window.
#[derive(Debug, Clone)]
pub(crate) struct FixedRun {
    /// Seconds between the two readings of the server's CPU.
    pub window_secs: f64,
    /// The requests that ended inside the window.
    pub window: Window,
    /// The server's CPU over the window (the difference of two readings).
    pub cpu: GroupCpu,
    /// h2load's CPU share over its whole run (1.0 = one core).
    pub loader_cpu: f64,
    /// h2load's own summary of the whole run.
    pub summary: H2load,
}

impl FixedRun {
    /// Answered req/s inside the window.
    pub(crate) fn served(&self) -> f64 {
        self.window.ok as f64 / self.window_secs.max(1e-9)
    }

    /// The server's CPU µs per answered request inside the window:
    /// (total, user, system).
    pub(crate) fn cpu_per_request(&self) -> (f64, f64, f64) {
        let n = self.window.ok.max(1) as f64;
        (
            self.cpu.total * 1e6 / n,
            self.cpu.user * 1e6 / n,
            self.cpu.system * 1e6 / n,
        )
    }
}

/// What h2load prints when its main phase starts (after the warm-up).
const MAIN_STARTED: &str = "Main benchmark duration is started";

/// The length of the measuring window given `avail` seconds of the main
/// phase left and `rps` requests per second per connection. h2load's
/// per-connection timers fire together when the connections were opened
/// together, so at a low rate per connection the load comes in bursts, one
/// a period: a window of a whole number of periods holds the same number
/// of them wherever it starts. At 4 periods or more in `avail` the bursts
/// are small enough, and all of it is used.
pub(crate) fn window_span(avail: f64, rps: usize) -> f64 {
    let period = 1.0 / rps.max(1) as f64;
    if avail >= 4.0 * period || avail < period {
        avail
    } else {
        (avail / period).floor() * period
    }
}

/// What h2load prints as it opens its connections, and once all are.
const SOME_STARTED: &str = "of clients started";
const ALL_STARTED: &str = "100% of clients started";

/// Microseconds since the epoch (h2load's log uses the same clock).
fn epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One fixed-rate run: `h2load --h1 -c C -m 1 --rps R --warm-up-time W
/// -D secs` (W: [`Load::warm_up`]) against `addr`, pinned to the loader core. Once h2load says
/// its main phase started (its connections are up and warm), the CPU of
/// the server's process group `pgid` is read; again `secs` − 0.25 s later,
/// while h2load still holds every connection (so that forked workers,
/// which take their CPU time with them when they exit, are still there).
/// The requests counted are those whose response ended between the two
/// readings, from h2load's per-request log; so are the percentiles.
pub(crate) fn fixed_rate(
    ctx: &Ctx,
    out: &mut Outcome,
    addr: SocketAddr,
    pgid: i32,
    load: Load,
    secs: u32,
    tag: &str,
) -> Result<FixedRun, String> {
    let warm_up = load.warm_up();
    let log = log_path(tag);
    let _ = std::fs::remove_file(&log);
    let args: Vec<String> = vec![
        "--h1".into(),
        "-t".into(),
        "1".into(),
        "-c".into(),
        load.conns.to_string(),
        "-m".into(),
        "1".into(),
        "--rps".into(),
        load.rps.to_string(),
        "--warm-up-time".into(),
        // h2load takes whole units ("0.5s" is refused).
        format!("{}ms", (warm_up * 1000.0).round() as u64),
        "-D".into(),
        format!("{secs}s"),
        "--log-file".into(),
        log.display().to_string(),
        format!("http://{addr}/"),
    ];
    let mut child = proc::spawn(ctx.loader_core, "h2load", &args).map_err(|e| e.to_string())?;
    out.command(
        &child
            .cmdline
            .replace(&addr.to_string(), "<addr>")
            .replace(&log.display().to_string(), "<log>"),
    );
    // h2load normally ends within a second or two of its main phase; a
    // server that cannot take its connections can hold it much longer.
    let limit = Duration::from_secs_f64(warm_up + f64::from(secs) + 20.0);
    let t0 = Instant::now();
    // Wait for the main phase.
    let started = loop {
        if child.stdout_so_far().contains(MAIN_STARTED) {
            break true;
        }
        if child.try_finished().is_some() || t0.elapsed() > limit {
            break false;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let measured = if started {
        let main = Instant::now();
        let end = main + Duration::from_secs_f64(f64::from(secs) - 0.25);
        // A moment for the first timers of the main phase; and should
        // h2load still be opening connections (it says when it has
        // started them all), until it is done, within the first second.
        std::thread::sleep(Duration::from_millis(50));
        while !child.stdout_so_far().contains(ALL_STARTED)
            && child.stdout_so_far().contains(SOME_STARTED)
            && main.elapsed() < Duration::from_secs(1)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let (from_us, c0) = (epoch_us(), proc::group_cpu(pgid));
        let t1 = Instant::now();
        let span = window_span(end.saturating_duration_since(t1).as_secs_f64(), load.rps);
        std::thread::sleep(Duration::from_secs_f64(span));
        let c1 = proc::group_cpu(pgid);
        let window_secs = t1.elapsed().as_secs_f64();
        Some((from_us, epoch_us(), window_secs, c0, c1))
    } else {
        None
    };
    let f = child.wait(limit.saturating_sub(t0.elapsed()));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    if f.timed_out {
        return Err(format!(
            "h2load did not finish within {:.0} s",
            limit.as_secs_f64()
        ));
    }
    if !f.success() {
        return Err(format!("h2load: {}", f.describe()));
    }
    let summary =
        parse(&f.stdout).ok_or_else(|| format!("no req/s in h2load's output: {}", f.describe()))?;
    let Some((from_us, to_us, window_secs, c0, c1)) = measured else {
        return Err(format!(
            "h2load never started its main phase ({} requests succeeded)",
            summary.succeeded
        ));
    };
    let (c0, c1) = (
        c0.ok_or("cannot read the server's CPU time")?,
        c1.ok_or("cannot read the server's CPU time")?,
    );
    let window = window(&parse_log(&text), from_us, to_us);
    if window.ok == 0 {
        return Err(format!(
            "no request answered inside the measuring window ({} failed)",
            window.failed
        ));
    }
    Ok(FixedRun {
        window_secs,
        window,
        cpu: c1.since(&c0),
        loader_cpu: f.cpu_secs / f.wall_secs.max(1e-3),
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_summary() {
        let out = "finished in 3.00s, 9998.33 req/s, 1.23MB/s
requests: 29995 total, 29995 started, 29995 done, 29990 succeeded, 3 failed, 2 errored, 0 timeout
status codes: 29990 2xx, 0 3xx, 0 4xx, 0 5xx
                     min         max         mean         sd        +/- sd
time for request:      473us     17.18ms      3.85ms      3.04ms    71.46%
time for connect:       19us        21us        20us         1us   100.00%
";
        let h = parse(out).unwrap();
        assert_eq!(h.rps, 9998.33);
        assert_eq!(h.succeeded, 29990);
        assert_eq!(h.failed, 5);
        assert_eq!(h.max_us, Some(17180.0));
        assert_eq!(h.mean_us, Some(3850.0));
        assert_eq!(h.sd_us, Some(3040.0));
        assert!(parse("garbage").is_none());
        assert_eq!(time_us("2.00s"), Some(2e6));
        assert_eq!(time_us("1.5m"), Some(90e6));
        assert_eq!(time_us("x"), None);
    }

    #[test]
    fn percentiles_of_a_log() {
        // 1,000 answered requests of 1..=1000 µs and one failed stream.
        let mut log = String::new();
        for i in 1..=1000u64 {
            log.push_str(&format!("{}\t200\t{i}\n", 1_700_000_000_000_000 + i));
        }
        log.push_str("1700000000000000\t-1\t5000000\n");
        log.push_str("junk\n");
        assert_eq!(log_percentiles(&log), Some((501.0, 991.0, 1000.0)));
        assert_eq!(log_percentiles("junk\n"), None);
        let mut one = [7.0];
        assert_eq!(percentiles(&mut one), Some((7.0, 7.0, 7.0)));
        assert_eq!(percentiles(&mut []), None);
    }

    #[test]
    fn a_window_counts_what_ended_inside_it() {
        let log = parse_log(
            "100\t200\t50\n\
             120\t200\t10\n\
             140\t-1\t20\n\
             150\t200\t100\n\
             190\t404\t5\n",
        );
        assert_eq!(log.len(), 5);
        assert_eq!(log[0].end_us(), 150);
        assert!(log[0].ok() && !log[2].ok() && !log[4].ok());
        // Ends: 150, 130, 160, 250, 195.
        let w = window(&log, 130, 200);
        assert_eq!(w.ok, 2, "130 and 150 (250 is after the window)");
        assert_eq!(w.failed, 2, "the failed stream and the 404");
        assert_eq!(w.pct, Some((50.0, 50.0, 50.0)));
        let empty = window(&log, 0, 10);
        assert_eq!((empty.ok, empty.failed, empty.pct), (0, 0, None));
    }

    #[test]
    fn windows_span_whole_periods_at_low_rates() {
        assert_eq!(window_span(2.7, 1), 2.0);
        assert_eq!(window_span(2.7, 100), 2.7);
        assert_eq!(window_span(2.7, 2), 2.7, "4 periods or more: all of it");
        assert_eq!(window_span(3.5, 1), 3.0);
        assert_eq!(window_span(0.5, 1), 0.5, "less than a period: all of it");
    }

    #[test]
    fn a_fixed_load_offers_conns_times_rps() {
        let l = Load {
            conns: 10_000,
            rps: 1,
        };
        assert_eq!(l.offered(), 10_000.0);
        assert_eq!(l.warm_up(), 1.0);
        assert_eq!(Load { conns: 50, rps: 9 }.warm_up(), 0.25);
        let run = FixedRun {
            window_secs: 2.0,
            window: Window {
                ok: 1000,
                failed: 0,
                pct: None,
            },
            cpu: GroupCpu {
                total: 0.01,
                user: 0.004,
                system: 0.006,
                procs: 1,
            },
            loader_cpu: 0.5,
            summary: H2load::default(),
        };
        assert_eq!(run.served(), 500.0);
        let (t, u, s) = run.cpu_per_request();
        assert!((t - 10.0).abs() < 1e-9 && (u - 4.0).abs() < 1e-9 && (s - 6.0).abs() < 1e-9);
    }
}
