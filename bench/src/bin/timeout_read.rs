//! Reads with a deadline, two ways (issue 7): `runtime::time::timeout`
//! around a plain read (a runtime timer per read) against
//! `read_timeout` (a linked `IORING_OP_LINK_TIMEOUT` per read), beside a
//! plain read with no deadline. Two tasks on a Unix socket pair bounce one
//! byte back and forth; the reader side's reads carry the deadline (1 s,
//! never reached). Rounds interleave the three ways; medians are printed.
//!
//! ```text
//! taskset -c 1 target/release/timeout_read [round trips per round, default 100000]
//! ```

use std::time::{Duration, Instant};

use net::UnixStream;

const DEADLINE: Duration = Duration::from_secs(1);

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
async fn read_one(s: &UnixStream, buf: Vec<u8>, way: Way) -> Vec<u8> {
    let (res, buf) = match way {
        Way::Plain => s.read(buf).await,
        Way::Linked => s.read_timeout(buf, DEADLINE).await,
        Way::Timer => runtime::time::timeout(DEADLINE, s.read(buf))
            .await
            .expect("the 1 s deadline passed"),
    };
    assert_eq!(res.expect("read"), 1);
    buf
}

/// Round trips per second over `n` round trips.
fn measure(way: Way, n: u32) -> f64 {
    let rt = runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let (a, b) = UnixStream::pair().expect("socket pair");
        let echo = runtime::spawn(async move {
            let mut buf = Vec::with_capacity(1);
            for _ in 0..n {
                buf.clear();
                buf = read_one(&b, buf, way).await;
                let (res, b2) = b.write_all(buf).await;
                res.expect("write");
                buf = b2;
            }
        });
        let start = Instant::now();
        let mut buf = vec![7u8];
        for _ in 0..n {
            let (res, mut b2) = a.write_all(buf).await;
            res.expect("write");
            b2.clear();
            buf = read_one(&a, b2, way).await;
        }
        let secs = start.elapsed().as_secs_f64();
        echo.await.expect("echo task");
        f64::from(n) / secs
    })
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("round trips: a number"))
        .unwrap_or(100_000);
    let ways = [Way::Plain, Way::Timer, Way::Linked];
    for &w in &ways {
        measure(w, n / 10); // warm-up
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    for round in 0..5 {
        for (i, &w) in ways.iter().enumerate() {
            let r = measure(w, n);
            println!(
                "RESULT bench=timeout_read rt={} round={round} ops={n} rate={r:.0}",
                w.name()
            );
            rates[i].push(r);
        }
    }
    for (i, &w) in ways.iter().enumerate() {
        rates[i].sort_by(f64::total_cmp);
        println!(
            "{:<14} median {:>10.0} round trips/s  [{:.0}..{:.0}]",
            w.name(),
            rates[i][2],
            rates[i][0],
            rates[i][4]
        );
    }
}
