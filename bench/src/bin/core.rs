//! Executor micro-benchmarks: this runtime against tokio's current-thread
//! runtime and monoio (io_uring driver, timer enabled), each benchmark body
//! written once and run on all three through the small [`Exec`] trait.
//!
//! - `spawn_join`: spawn N tasks (default 1,000,000) from inside the
//!   runtime, then join them all; rate = tasks per second.
//! - `ping_pong`: two tasks handing a baton to each other N times in total
//!   (default 1,000,000) through [`Baton`], a tiny runtime-agnostic
//!   primitive (a `Cell` and one stored `Waker` per side), so that what is
//!   measured is each executor's wake -> schedule -> poll path and not a
//!   channel implementation; rate = wakes per second.
//! - `timers`: N tasks (default 100,000) each sleeping until its own
//!   deadline, spread pseudo-randomly over a 100 ms window that opens
//!   50 ms plus eight times the spawning time after the spawning ended
//!   (see [`timers`]), joined; rate = timers per second
//!   of this thread's CPU time (`getrusage(RUSAGE_THREAD)`, user + sys,
//!   spawning included; the wall time is mostly the sleep), so `secs=` is
//!   CPU seconds there; `wall=` is the wall time (spawning included) and
//!   `late_ms=` the wall time from the last deadline to all tasks joined.
//!   Each runtime runs with its default precision: tokio and monoio round
//!   every deadline up to their timer wheel's 1 ms granularity, ours fires
//!   each timer at its deadline (one wake-up of the thread per distinct
//!   deadline when it has nothing else to do), so this is not the same
//!   work for ours as for the peers.
//! - `timers_1ms`: the same, with ours at the peers' precision
//!   (`Builder::timer_slack(1 ms)`: a timer fires up to 1 ms late, timers
//!   due within the same millisecond share one wake-up); tokio and monoio
//!   run exactly as in `timers`.
//! - `nop_1`, `nop_64` (ours only): N (default 200,000) `IORING_OP_NOP`
//!   round trips through the ring, from 1 task and spread over 64 tasks.
//!
//! Peers: tokio `current_thread` with `enable_all()` (I/O and time drivers
//! on, as a real program runs it), monoio
//! `RuntimeBuilder::<IoUringDriver>::new().enable_timer()`, ours
//! `Runtime::new()`. tokio's `spawn` wants `Send` futures; the benchmark
//! futures are `!Send` (`Rc`), so they are wrapped in [`AssertSend`], which
//! is sound because a current-thread runtime polls and drops every task on
//! the thread that runs `block_on`.
//!
//! ```text
//! core [--rounds N]                       warm-up, then N (default 5) rounds
//! core --only <bench> --rt <ours|tokio|monoio> [--n N]
//!                                         one run, no warm-up (for valgrind)
//! ```
//!
//! Every run prints `RESULT bench=<name> rt=<peer> round=<i> ops=<n>
//! secs=<s> rate=<ops/s>` (timers add `wall=` and `late_ms=`); the full run
//! ends with a table of the per-round ratios ours/peer (median, min..max).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use monoio::time::TimeDriver;
use monoio::IoUringDriver;
use runtime::op::io_uring::opcode;
use runtime::op::Op;

/// Default operation counts.
const SPAWN_N: u64 = 1_000_000;
const PING_PONG_N: u64 = 1_000_000;
const TIMERS_N: u64 = 100_000;
const NOP_N: u64 = 200_000;
/// The timers' deadlines: `spawned + TIMER_DELAY + 8 * spawning time +
/// [0, TIMER_WINDOW)`.
const TIMER_DELAY: Duration = Duration::from_millis(50);
const TIMER_WINDOW: Duration = Duration::from_millis(100);

/// The benchmarks, in the order a full run goes through them.
const BENCHES: [&str; 6] = bench::CORE_BENCHES;
/// The peers, in the order a round interleaves them.
const PEERS: [&str; 3] = ["ours", "tokio", "monoio"];

/// What one benchmark run measured.
struct Sample {
    /// Operations performed.
    ops: u64,
    /// Seconds the rate is computed over (CPU seconds for `timers`).
    secs: f64,
    /// For `timers`: wall seconds and ms from the last deadline to done.
    timers: Option<(f64, f64)>,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs.max(1e-9)
    }
}

// ---------------------------------------------------------------------------
// The three executors behind one interface.

/// An executor that the benchmark bodies run on.
trait Exec {
    /// The peer's name in the output.
    const NAME: &'static str;
    /// Runs `fut` to completion on this thread.
    fn block_on<F: Future>(&mut self, fut: F) -> F::Output;
    /// Spawns `fut` on the current runtime; the returned future joins it.
    fn spawn<F>(fut: F) -> impl Future<Output = Result<F::Output, String>> + 'static
    where
        F: Future + 'static,
        F::Output: 'static;
    /// A future that completes at `deadline`.
    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + 'static;
}

/// tokio's current-thread runtime.
struct Tokio(tokio::runtime::Runtime);

impl Exec for Tokio {
    const NAME: &'static str = "tokio";
    fn block_on<F: Future>(&mut self, fut: F) -> F::Output {
        self.0.block_on(fut)
    }
    fn spawn<F>(fut: F) -> impl Future<Output = Result<F::Output, String>> + 'static
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let handle = tokio::spawn(AssertSend(fut));
        async move {
            handle
                .await
                .map(|out| out.0)
                .map_err(|e| format!("task failed: {e}"))
        }
    }
    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + 'static {
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline))
    }
}

/// monoio on its io_uring driver with the timer enabled.
struct Monoio(monoio::Runtime<TimeDriver<IoUringDriver>>);

impl Exec for Monoio {
    const NAME: &'static str = "monoio";
    fn block_on<F: Future>(&mut self, fut: F) -> F::Output {
        self.0.block_on(fut)
    }
    fn spawn<F>(fut: F) -> impl Future<Output = Result<F::Output, String>> + 'static
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let handle = monoio::spawn(fut);
        async move { Ok(handle.await) }
    }
    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + 'static {
        monoio::time::sleep_until(monoio::time::Instant::from_std(deadline))
    }
}

/// Makes a `!Send` future (or value) acceptable to `tokio::spawn`.
struct AssertSend<T>(T);

// SAFETY: only used with tokio's current-thread runtime, which polls every
// task, and drops it, on the one thread that calls `block_on`; the value
// therefore never leaves the thread that created it.
unsafe impl<T> Send for AssertSend<T> {}

impl<F: Future> Future for AssertSend<F> {
    type Output = AssertSend<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of the only field: it is never moved
        // out of the pinned wrapper.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        inner.poll(cx).map(AssertSend)
    }
}

/// A started peer: runs the named benchmark with `n` operations.
type Runner = Box<dyn FnMut(&str, u64) -> Result<Sample, String>>;

/// Builds the named peer.
fn build(rt: &str) -> Result<Runner, String> {
    fn runner<E: Exec + 'static>(mut e: E) -> Runner {
        Box::new(move |bench, n| run_generic(&mut e, bench, n))
    }
    match rt {
        "ours" => {
            let rt = runtime::Runtime::new().map_err(|e| format!("cannot start ours: {e}"))?;
            // The same runtime with the peers' timer precision.
            let coarse = runtime::Runtime::builder()
                .timer_slack(Duration::from_millis(1))
                .build()
                .map_err(|e| format!("cannot start ours: {e}"))?;
            Ok(Box::new(move |bench, n| match bench {
                "nop_1" => Ok(nop(&rt, 1, n)),
                "nop_64" => Ok(nop(&rt, 64, n)),
                "timers_1ms" => timers(&mut Ours(&coarse), n),
                _ => run_generic(&mut Ours(&rt), bench, n),
            }))
        }
        "tokio" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|r| runner(Tokio(r)))
            .map_err(|e| format!("cannot start tokio: {e}")),
        "monoio" => monoio::RuntimeBuilder::<IoUringDriver>::new()
            .enable_timer()
            .build()
            .map(|r| runner(Monoio(r)))
            .map_err(|e| format!("cannot start monoio: {e}")),
        other => Err(format!("unknown runtime {other} (ours, tokio, monoio)")),
    }
}

/// This runtime (borrowed, so that `nop` can share it).
struct Ours<'a>(&'a runtime::Runtime);

impl Exec for Ours<'_> {
    const NAME: &'static str = "ours";
    fn block_on<F: Future>(&mut self, fut: F) -> F::Output {
        self.0.block_on(fut)
    }
    fn spawn<F>(fut: F) -> impl Future<Output = Result<F::Output, String>> + 'static
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let handle = runtime::spawn(fut);
        async move { handle.await.map_err(|e| format!("task failed: {e}")) }
    }
    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + 'static {
        runtime::time::sleep_until(deadline)
    }
}

/// Runs one of the three shared benchmarks on `e`.
fn run_generic<E: Exec>(e: &mut E, bench: &str, n: u64) -> Result<Sample, String> {
    match bench {
        "spawn_join" => spawn_join(e, n),
        "ping_pong" => ping_pong(e, n),
        "timers" | "timers_1ms" => timers(e, n),
        "nop_1" | "nop_64" => Err(format!("{bench} exists for ours only")),
        other => Err(format!("unknown benchmark {other}")),
    }
}

// ---------------------------------------------------------------------------
// The benchmark bodies.

/// Spawns `n` trivial tasks, then joins them all.
fn spawn_join<E: Exec>(e: &mut E, n: u64) -> Result<Sample, String> {
    e.block_on(async move {
        let start = Instant::now();
        let handles: Vec<_> = (0..n).map(|i| E::spawn(async move { i })).collect();
        let mut sum = 0u64;
        for h in handles {
            sum = sum.wrapping_add(h.await?);
        }
        let secs = start.elapsed().as_secs_f64();
        if sum != n.wrapping_mul(n.wrapping_sub(1)) / 2 {
            return Err(format!("spawn_join: wrong sum {sum}"));
        }
        Ok(Sample {
            ops: n,
            secs,
            timers: None,
        })
    })
}

/// A baton passed between two sides: whose turn it is, how many passes
/// were made, and the stored waker of each side.
struct Baton {
    turn: Cell<usize>,
    passes: Cell<u64>,
    wakers: [Cell<Option<Waker>>; 2],
}

impl Baton {
    /// Completes when it is `side`'s turn.
    fn wait(&self, side: usize) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.turn.get() == side {
                Poll::Ready(())
            } else {
                self.wakers[side].set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
    }

    /// Hands the baton from `side` to the other side and wakes it.
    fn pass(&self, side: usize) {
        let other = 1 - side;
        self.turn.set(other);
        self.passes.set(self.passes.get() + 1);
        if let Some(w) = self.wakers[other].take() {
            w.wake();
        }
    }
}

/// Two tasks passing the baton `n` times in total (each pass one wake).
fn ping_pong<E: Exec>(e: &mut E, n: u64) -> Result<Sample, String> {
    let per_side = n.div_ceil(2);
    e.block_on(async move {
        let baton = Rc::new(Baton {
            turn: Cell::new(0),
            passes: Cell::new(0),
            wakers: [Cell::new(None), Cell::new(None)],
        });
        let start = Instant::now();
        let sides: Vec<_> = (0..2)
            .map(|side| {
                let baton = baton.clone();
                E::spawn(async move {
                    for _ in 0..per_side {
                        baton.wait(side).await;
                        baton.pass(side);
                    }
                })
            })
            .collect();
        for s in sides {
            s.await?;
        }
        let secs = start.elapsed().as_secs_f64();
        let passes = baton.passes.get();
        if passes != per_side * 2 {
            return Err(format!(
                "ping_pong: {passes} passes, expected {}",
                per_side * 2
            ));
        }
        Ok(Sample {
            ops: passes,
            secs,
            timers: None,
        })
    })
}

/// Where timer `i`'s deadline falls in the window: pseudo-random, the same
/// for every runtime.
fn timer_offset(i: u64) -> Duration {
    let h = (i ^ 0x5851_F42D_4C95_7F2D).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let window = TIMER_WINDOW.as_nanos() as u64;
    Duration::from_nanos((h >> 11) % window)
}

/// `n` tasks each sleeping until its own deadline, joined.
///
/// The deadlines are `window + timer_offset(i)`, and `window` is set once
/// the last task is spawned (no task runs before the spawning task yields):
/// `TIMER_DELAY` plus eight times what the spawning took, so that each task
/// registers its timer while the deadline is still ahead even where
/// everything is slow (a loaded machine, valgrind). A sentinel task spawned
/// last (the three run queues are FIFO) notes when all first polls are done;
/// a warning on stderr says if that was past the first deadline.
fn timers<E: Exec>(e: &mut E, n: u64) -> Result<Sample, String> {
    let last = (0..n).map(timer_offset).max().unwrap_or_default();
    let first = (0..n).map(timer_offset).min().unwrap_or_default();
    let cpu0 = bench::cpu_secs(libc::RUSAGE_THREAD);
    let start = Instant::now();
    let (window, polled) = e.block_on(async move {
        let window = Rc::new(Cell::new(None::<Instant>));
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let window = window.clone();
                E::spawn(async move {
                    let window = window
                        .get()
                        .ok_or("timers: a task ran before the spawning was done")?;
                    E::sleep_until(window + timer_offset(i)).await;
                    Ok::<(), String>(())
                })
            })
            .collect();
        let spawned = Instant::now();
        let at = spawned + TIMER_DELAY + (spawned - start) * 8;
        window.set(Some(at));
        let sentinel = E::spawn(async { Instant::now() });
        for h in handles {
            h.await??;
        }
        Ok::<_, String>((at, sentinel.await?))
    })?;
    let done = Instant::now();
    let cpu = bench::cpu_secs(libc::RUSAGE_THREAD) - cpu0;
    if polled > window + first {
        eprintln!(
            "core: timers ({}): the first polls ended {:.1} ms after the first deadline: some timers were already due",
            E::NAME,
            (polled - (window + first)).as_secs_f64() * 1e3
        );
    }
    let late_ms = (done.saturating_duration_since(window).as_secs_f64() - last.as_secs_f64()) * 1e3;
    Ok(Sample {
        ops: n,
        secs: cpu,
        timers: Some(((done - start).as_secs_f64(), late_ms)),
    })
}

/// `n` no-op ring round trips spread over `tasks` tasks (ours only).
fn nop(rt: &runtime::Runtime, tasks: u64, n: u64) -> Sample {
    let per_task = n.div_ceil(tasks);
    rt.block_on(async move {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                runtime::spawn(async move {
                    let mut failed = 0u64;
                    for _ in 0..per_task {
                        // SAFETY: a NOP names no memory and no descriptor.
                        let (c, ()) =
                            unsafe { Op::submit((), |_| opcode::Nop::new().build()) }.await;
                        failed += c.result().is_err() as u64;
                    }
                    failed
                })
            })
            .collect();
        let mut failed = 0;
        for h in handles {
            failed += h.await.unwrap_or(1);
        }
        if failed > 0 {
            eprintln!("core: nop: {failed} NOPs or tasks failed");
        }
        Sample {
            ops: per_task * tasks,
            secs: start.elapsed().as_secs_f64(),
            timers: None,
        }
    })
}

// ---------------------------------------------------------------------------
// Driver.

/// Prints one `RESULT` line.
fn print_result(bench: &str, rt: &str, round: usize, s: &Sample) {
    let mut line = format!(
        "RESULT bench={bench} rt={rt} round={round} ops={} secs={:.6} rate={:.0}",
        s.ops,
        s.secs,
        s.rate()
    );
    if let Some((wall, late_ms)) = s.timers {
        line += &format!(" wall={wall:.6} late_ms={late_ms:.3}");
    }
    println!("{line}");
}

fn default_n(bench: &str) -> u64 {
    match bench {
        "spawn_join" => SPAWN_N,
        "ping_pong" => PING_PONG_N,
        "timers" | "timers_1ms" => TIMERS_N,
        _ => NOP_N,
    }
}

/// The command line.
enum Mode {
    Full { rounds: usize },
    Only { bench: String, rt: String, n: u64 },
}

const USAGE: &str = "usage: core [--rounds N]\n       core --only <spawn_join|ping_pong|timers|timers_1ms|nop_1|nop_64> --rt <ours|tokio|monoio> [--n N]";

fn parse_args() -> Result<Mode, String> {
    let (mut rounds, mut only, mut rt, mut n) = (5usize, None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--rounds" => {
                rounds = value()?
                    .parse()
                    .ok()
                    .filter(|&r| r > 0)
                    .ok_or("--rounds needs a positive number")?
            }
            "--only" => only = Some(value()?),
            "--rt" => rt = Some(value()?),
            "--n" => {
                n = Some(
                    value()?
                        .parse::<u64>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or("--n needs a positive number")?,
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    match (only, rt) {
        (Some(bench), Some(rt)) => {
            if !BENCHES.contains(&bench.as_str()) {
                return Err(format!("unknown benchmark {bench}"));
            }
            let n = n.unwrap_or_else(|| default_n(&bench));
            Ok(Mode::Only { bench, rt, n })
        }
        (None, None) if n.is_none() => Ok(Mode::Full { rounds }),
        _ => Err("--only, --rt and --n go together".into()),
    }
}

fn run() -> Result<(), String> {
    match parse_args()? {
        Mode::Only { bench, rt, n } => {
            let mut runner = build(&rt)?;
            let s = runner(&bench, n)?;
            print_result(&bench, &rt, 0, &s);
        }
        Mode::Full { rounds } => full(rounds)?,
    }
    Ok(())
}

/// Warm-up, then `rounds` interleaved rounds, then the summary.
fn full(rounds: usize) -> Result<(), String> {
    let mut runners = Vec::new();
    for rt in PEERS {
        runners.push((rt, build(rt)?));
    }
    let applies = |bench: &str, rt: &str| !bench.starts_with("nop") || rt == "ours";
    eprintln!("core: warm-up");
    for bench in BENCHES {
        for (rt, runner) in runners.iter_mut() {
            if applies(bench, rt) {
                runner(bench, default_n(bench))?;
            }
        }
    }
    // rates[bench][peer] = per-round rates.
    let mut rates = vec![vec![Vec::new(); PEERS.len()]; BENCHES.len()];
    for round in 0..rounds {
        for (b, bench) in BENCHES.iter().enumerate() {
            for (p, (rt, runner)) in runners.iter_mut().enumerate() {
                if applies(bench, rt) {
                    let s = runner(bench, default_n(bench))?;
                    print_result(bench, rt, round, &s);
                    rates[b][p].push(s.rate());
                }
            }
        }
    }
    println!();
    println!("median of {rounds} rounds (timers: per CPU second); ratio = ours/peer per round, median [min..max]");
    println!(
        "{:<11} {:>12} {:>12} {:>12}   {:<22} {:<22}",
        "bench", "ours/s", "tokio/s", "monoio/s", "ours/tokio", "ours/monoio"
    );
    for (b, bench) in BENCHES.iter().enumerate() {
        let med = |p: usize| match bench::stats(&rates[b][p]) {
            Some((m, _, _)) => format!("{m:.0}"),
            None => "-".to_string(),
        };
        let ratio = |p: usize| bench::ratio_text(&rates[b][0], &rates[b][p]);
        println!(
            "{:<11} {:>12} {:>12} {:>12}   {:<22} {:<22}",
            bench,
            med(0),
            med(1),
            med(2),
            ratio(1),
            ratio(2)
        );
    }
    Ok(())
}

fn main() {
    if let Err(msg) = run() {
        eprintln!("core: {msg}\n{USAGE}");
        std::process::exit(1);
    }
}
