//! Cross-worker round trips (issue 14): a task on worker 0 and a task on
//! worker 1 bounce a message back and forth, and worker 0 spawns tasks on
//! worker 1 and awaits them. Every round trip wakes the other worker
//! twice, so this measures the cross-thread wake-up path:
//!
//! - `ours_msg_ring`: a `runtime::Pool` of 2 pinned workers, wake-ups with
//!   `IORING_OP_MSG_RING` (`CrossWake::MsgRing`, the default);
//! - `ours_eventfd`: the same pool with `CrossWake::EventFd`;
//! - `tokio_2ct`: two tokio current-thread runtimes on two pinned threads,
//!   the closest tokio layout to a pool of two (tasks stay on their
//!   thread, wake-ups cross);
//! - `tokio_mt`: tokio's multi-thread runtime with 2 (pinned) workers and
//!   the two tasks spawned on it; its scheduler may run both on one worker
//!   (a woken task goes to the waker's worker first), so its round trips
//!   need not cross threads: the layout a tokio user gets by default.
//!
//! Two benchmarks: `channel` (tokio::sync::mpsc of capacity 1 each way, the
//! same channel on every runtime) and `spawn` (`spawn_on(1, ..)` awaited
//! from worker 0; tokio: `Handle::spawn` on the other runtime, or
//! `tokio::spawn` on the multi-thread one). After one warm-up round each,
//! rounds interleave the variants; medians are printed, with the CPU time
//! (utime + stime of the whole process, `getrusage`) per round trip.
//!
//! ```text
//! target/release/cross_worker [--n N (default 100000)] [--rounds R (default 5)] [--only channel|spawn]
//! ```
//!
//! Machine-readable output: one line per measurement,
//! `RESULT bench=<channel|spawn> rt=<variant> round=<i> ops=<n> secs=<s> rate=<round trips/s> cpu_us=<CPU µs per round trip>`,
//! then a table of medians and the ratios to `ours_eventfd`.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Instant;

use bench::{cpu_secs, ratio_text, stats};
use runtime::{CrossWake, Pool, Runtime};

const USAGE: &str = "usage: cross_worker [--n N] [--rounds R] [--only channel|spawn]";

/// Polls `future` on this thread, parking while it is pending.
fn park_on<F: Future>(future: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

/// Pins the calling thread to `cpu` (modulo the CPUs online).
fn pin_to(cpu: usize) {
    // SAFETY: sysconf has no memory effects.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    // SAFETY: a zeroed cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the CPU number is below the number online, below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu % online, &mut set) };
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Bench {
    Channel,
    Spawn,
}

impl Bench {
    fn name(self) -> &'static str {
        match self {
            Bench::Channel => "channel",
            Bench::Spawn => "spawn",
        }
    }
}

/// Worker 0's side of the channel benchmark: `n` round trips.
async fn ping(
    n: u64,
    tx: tokio::sync::mpsc::Sender<u64>,
    mut rx: tokio::sync::mpsc::Receiver<u64>,
) {
    for i in 0..n {
        tx.send(i).await.expect("pong is gone");
        let back = rx.recv().await.expect("pong is gone");
        assert_eq!(back, i);
    }
}

/// Worker 1's side: echoes until the sender goes.
async fn pong(tx: tokio::sync::mpsc::Sender<u64>, mut rx: tokio::sync::mpsc::Receiver<u64>) {
    while let Some(v) = rx.recv().await {
        if tx.send(v).await.is_err() {
            return;
        }
    }
}

type Channels = (
    (
        tokio::sync::mpsc::Sender<u64>,
        tokio::sync::mpsc::Receiver<u64>,
    ),
    (
        tokio::sync::mpsc::Sender<u64>,
        tokio::sync::mpsc::Receiver<u64>,
    ),
);

fn channels() -> Channels {
    let (to_1, at_1) = tokio::sync::mpsc::channel(1);
    let (to_0, at_0) = tokio::sync::mpsc::channel(1);
    ((to_1, at_0), (to_0, at_1))
}

/// A runtime layout under test.
enum Variant {
    Ours(&'static str, Pool),
    /// Two current-thread runtimes, each on its own pinned thread, kept
    /// running by a task that waits for the end.
    Tokio2ct {
        handles: [tokio::runtime::Handle; 2],
        stop: Vec<tokio::sync::oneshot::Sender<()>>,
        threads: Vec<thread::JoinHandle<()>>,
    },
    TokioMt(tokio::runtime::Runtime),
}

impl Variant {
    fn ours(name: &'static str, how: CrossWake) -> Variant {
        let pool = Pool::builder()
            .threads(2)
            .pin_cpus(true)
            .runtime(Runtime::builder().cross_wake(how))
            .build()
            .unwrap_or_else(|e| panic!("cannot start the pool: {e}"));
        Variant::Ours(name, pool)
    }

    fn tokio_2ct() -> Variant {
        let mut handles = Vec::new();
        let mut stop = Vec::new();
        let mut threads = Vec::new();
        for cpu in 0..2 {
            let (htx, hrx) = std::sync::mpsc::channel();
            let (stx, srx) = tokio::sync::oneshot::channel::<()>();
            threads.push(thread::spawn(move || {
                pin_to(cpu);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("tokio");
                htx.send(rt.handle().clone()).unwrap();
                rt.block_on(async {
                    let _ = srx.await;
                });
            }));
            handles.push(hrx.recv().unwrap());
            stop.push(stx);
        }
        let handles: [tokio::runtime::Handle; 2] = handles.try_into().ok().unwrap();
        Variant::Tokio2ct {
            handles,
            stop,
            threads,
        }
    }

    fn tokio_mt() -> Variant {
        let next = AtomicUsize::new(0);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .on_thread_start(move || pin_to(next.fetch_add(1, Ordering::Relaxed)))
            .build()
            .expect("tokio");
        Variant::TokioMt(rt)
    }

    fn name(&self) -> &'static str {
        match self {
            Variant::Ours(name, _) => name,
            Variant::Tokio2ct { .. } => "tokio_2ct",
            Variant::TokioMt(_) => "tokio_mt",
        }
    }

    /// `n` round trips of `bench`, blocking this thread until done.
    fn run(&self, bench: Bench, n: u64) {
        match (self, bench) {
            (Variant::Ours(_, pool), Bench::Channel) => {
                let ((tx0, rx0), (tx1, rx1)) = channels();
                let h = pool.handle();
                let b = h.spawn_on(1, move || pong(tx1, rx1));
                let a = h.spawn_on(0, move || ping(n, tx0, rx0));
                park_on(a).unwrap();
                park_on(b).unwrap();
            }
            (Variant::Ours(_, pool), Bench::Spawn) => {
                let h = pool.handle();
                let h2 = h.clone();
                let a = h.spawn_on(0, move || async move {
                    for i in 0..n {
                        let v = h2.spawn_on(1, move || async move { i }).await.unwrap();
                        assert_eq!(v, i);
                    }
                });
                park_on(a).unwrap();
            }
            (Variant::Tokio2ct { handles, .. }, Bench::Channel) => {
                let ((tx0, rx0), (tx1, rx1)) = channels();
                let b = handles[1].spawn(pong(tx1, rx1));
                let a = handles[0].spawn(ping(n, tx0, rx0));
                park_on(a).unwrap();
                park_on(b).unwrap();
            }
            (Variant::Tokio2ct { handles, .. }, Bench::Spawn) => {
                let other = handles[1].clone();
                let a = handles[0].spawn(async move {
                    for i in 0..n {
                        let v = other.spawn(async move { i }).await.unwrap();
                        assert_eq!(v, i);
                    }
                });
                park_on(a).unwrap();
            }
            (Variant::TokioMt(rt), Bench::Channel) => {
                let ((tx0, rx0), (tx1, rx1)) = channels();
                let b = rt.spawn(pong(tx1, rx1));
                let a = rt.spawn(ping(n, tx0, rx0));
                park_on(a).unwrap();
                park_on(b).unwrap();
            }
            (Variant::TokioMt(rt), Bench::Spawn) => {
                let a = rt.spawn(async move {
                    for i in 0..n {
                        let v = tokio::spawn(async move { i }).await.unwrap();
                        assert_eq!(v, i);
                    }
                });
                park_on(a).unwrap();
            }
        }
    }
}

impl Drop for Variant {
    fn drop(&mut self) {
        if let Variant::Tokio2ct { stop, threads, .. } = self {
            for s in stop.drain(..) {
                let _ = s.send(());
            }
            for t in threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

struct Args {
    n: u64,
    rounds: usize,
    only: Option<Bench>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        n: 100_000,
        rounds: 5,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--n" => a.n = value()?.parse().map_err(|e| format!("--n: {e}"))?,
            "--rounds" => a.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--only" => {
                a.only = Some(match value()?.as_str() {
                    "channel" => Bench::Channel,
                    "spawn" => Bench::Spawn,
                    other => return Err(format!("unknown benchmark {other}\n{USAGE}")),
                })
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if a.rounds == 0 || a.n == 0 {
        return Err(format!("--n and --rounds must be at least 1\n{USAGE}"));
    }
    Ok(a)
}

fn main() {
    let args = args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    let msg_ring = Pool::builder()
        .threads(1)
        .build()
        .map(|p| p.run(|_| async { runtime::features().msg_ring })[0])
        .unwrap_or(false);
    println!(
        "cross_worker: {} round trips per run, {} rounds; kernel MSG_RING: {}",
        args.n,
        args.rounds,
        if msg_ring {
            "yes"
        } else {
            "no (ours_msg_ring falls back to the eventfd)"
        }
    );
    let variants = [
        Variant::ours("ours_msg_ring", CrossWake::MsgRing),
        Variant::ours("ours_eventfd", CrossWake::EventFd),
        Variant::tokio_2ct(),
        Variant::tokio_mt(),
    ];
    let benches: Vec<Bench> = [Bench::Channel, Bench::Spawn]
        .into_iter()
        .filter(|b| args.only.is_none_or(|o| o == *b))
        .collect();
    for bench in benches {
        // (rate, CPU µs per round trip) per variant, per round.
        let mut rates = vec![Vec::new(); variants.len()];
        let mut cpus = vec![Vec::new(); variants.len()];
        for v in &variants {
            v.run(bench, (args.n / 10).max(1));
        }
        for round in 0..args.rounds {
            for (k, v) in variants.iter().enumerate() {
                let cpu0 = cpu_secs(libc::RUSAGE_SELF);
                let start = Instant::now();
                v.run(bench, args.n);
                let secs = start.elapsed().as_secs_f64();
                let cpu = cpu_secs(libc::RUSAGE_SELF) - cpu0;
                let rate = args.n as f64 / secs;
                let cpu_us = cpu * 1e6 / args.n as f64;
                println!(
                    "RESULT bench={} rt={} round={round} ops={} secs={secs:.4} rate={rate:.0} cpu_us={cpu_us:.3}",
                    bench.name(),
                    v.name(),
                    args.n
                );
                rates[k].push(rate);
                cpus[k].push(cpu_us);
            }
        }
        println!();
        println!(
            "{:<8} {:<14} {:>14} {:>16} {:>22} {:>22}",
            "bench",
            "variant",
            "round trips/s",
            "CPU µs/trip",
            "rate vs ours_eventfd",
            "CPU vs ours_eventfd"
        );
        for (k, v) in variants.iter().enumerate() {
            let (rate, _, _) = stats(&rates[k]).unwrap_or_default();
            let (cpu, _, _) = stats(&cpus[k]).unwrap_or_default();
            println!(
                "{:<8} {:<14} {:>14.0} {:>16.2} {:>22} {:>22}",
                bench.name(),
                v.name(),
                rate,
                cpu,
                ratio_text(&rates[k], &rates[1]),
                ratio_text(&cpus[k], &cpus[1]),
            );
        }
        println!();
    }
}
