//! Reads with a deadline, two ways (issue 7): `runtime::time::timeout`
//! around a plain read (a runtime timer per read) against
//! `read_timeout` (a linked `IORING_OP_LINK_TIMEOUT` per read), beside a
//! plain read with no deadline. Two tasks on a Unix socket pair bounce one
//! byte back and forth; the reader side's reads carry the deadline (1 s,
//! never reached). After a warm-up (a tenth of the round trips, each way),
//! rounds interleave the three ways; medians are printed.
//!
//! ```text
//! taskset -c 1 target/release/timeout_read [round trips per round, default 100000] [--rounds R (default 5)]
//! ```
//!
//! Machine-readable output (read by the suite's `uring` scenario): one line
//! per measurement,
//! `RESULT bench=timeout_read rt=<plain_read|time_timeout|read_timeout> round=<i> ops=<n> secs=<s> rate=<round trips/s>`,
//! then a human-readable table of medians. Exits non-zero with a message if
//! a read fails or a deadline passes.

use std::time::{Duration, Instant};

use net::UnixStream;

const DEADLINE: Duration = Duration::from_secs(1);

const USAGE: &str = "usage: timeout_read [round trips per round] [--rounds R]";

#[derive(Clone, Copy)]
enum Way {
    Plain,
    Timer,
    Linked,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Plain => "plain_read",
            Way::Timer => "time_timeout",
            Way::Linked => "read_timeout",
        }
    }
}

/// One read of a byte, the given way.
async fn read_one(s: &UnixStream, buf: Vec<u8>, way: Way) -> Result<Vec<u8>, String> {
    let (res, buf) = match way {
        Way::Plain => s.read(buf).await,
        Way::Linked => s.read_timeout(buf, DEADLINE).await,
        Way::Timer => runtime::time::timeout(DEADLINE, s.read(buf))
            .await
            .map_err(|_| "the 1 s deadline passed".to_string())?,
    };
    match res {
        Ok(1) => Ok(buf),
        Ok(n) => Err(format!("read {n} bytes, not 1")),
        Err(e) => Err(format!("read failed: {e}")),
    }
}

/// Round trips per second over `n` round trips, and the seconds taken.
fn measure(way: Way, n: u32) -> Result<(f64, f64), String> {
    let rt = runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        let (a, b) = UnixStream::pair().map_err(|e| format!("socket pair: {e}"))?;
        let echo = runtime::spawn(async move {
            let mut buf = Vec::with_capacity(1);
            for _ in 0..n {
                buf.clear();
                buf = read_one(&b, buf, way).await?;
                let (res, b2) = b.write_all(buf).await;
                res.map_err(|e| format!("write failed: {e}"))?;
                buf = b2;
            }
            Ok::<(), String>(())
        });
        let start = Instant::now();
        let mut buf = vec![7u8];
        for _ in 0..n {
            let (res, mut b2) = a.write_all(buf).await;
            res.map_err(|e| format!("write failed: {e}"))?;
            b2.clear();
            buf = read_one(&a, b2, way).await?;
        }
        let secs = start.elapsed().as_secs_f64();
        echo.await.map_err(|e| format!("echo task: {e}"))??;
        Ok((f64::from(n) / secs, secs))
    })
}

fn parse() -> Result<(u32, usize), String> {
    let (mut n, mut rounds) = (100_000u32, 5usize);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--rounds" {
            rounds = it
                .next()
                .and_then(|v| v.parse().ok())
                .filter(|&r| r > 0)
                .ok_or("--rounds needs a positive number")?;
        } else {
            n = a
                .parse()
                .ok()
                .filter(|&n| n >= 10)
                .ok_or(format!("bad round trip count {a:?} (at least 10)"))?;
        }
    }
    Ok((n, rounds))
}

fn run() -> Result<(), String> {
    let (n, rounds) = parse()?;
    let ways = [Way::Plain, Way::Timer, Way::Linked];
    for &w in &ways {
        measure(w, n / 10)?; // warm-up
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    for round in 0..rounds {
        for (i, &w) in ways.iter().enumerate() {
            let (r, secs) = measure(w, n)?;
            println!(
                "RESULT bench=timeout_read rt={} round={round} ops={n} secs={secs:.4} rate={r:.0}",
                w.name()
            );
            rates[i].push(r);
        }
    }
    for (i, &w) in ways.iter().enumerate() {
        let v = &mut rates[i];
        v.sort_by(f64::total_cmp);
        println!(
            "{:<14} median {:>10.0} round trips/s  [{:.0}..{:.0}]",
            w.name(),
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        );
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("timeout_read: {e}\n{USAGE}");
        std::process::exit(1);
    }
}
