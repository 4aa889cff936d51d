//! A tour of the core runtime: tasks, timers, timeouts, blocking work and a
//! raw io_uring operation.
//!
//! Run it with `cargo run -p examples --example hello`.

use std::time::{Duration, Instant};

use runtime::op::io_uring::opcode;
use runtime::op::Op;
use runtime::time::{interval, sleep, timeout};

#[runtime::main]
async fn main() -> std::io::Result<()> {
    let start = Instant::now();

    // Ten tasks that sleep for different times finish in deadline order.
    let handles: Vec<_> = (0..10u64)
        .map(|i| {
            runtime::spawn(async move {
                sleep(Duration::from_millis(50 - i * 5)).await;
                i
            })
        })
        .collect();
    let mut done = Vec::new();
    for h in handles {
        done.push(h.await.expect("task failed"));
    }
    println!("joined {} tasks in {:?}", done.len(), start.elapsed());

    // A timeout that fires, and one that does not.
    let slow = timeout(Duration::from_millis(10), sleep(Duration::from_secs(10))).await;
    println!("slow sleep under a 10 ms timeout: {slow:?}");
    let fast = timeout(Duration::from_secs(10), async { 7 }).await;
    println!("fast future under a 10 s timeout: {fast:?}");

    // Blocking work runs on the blocking pool; the ring keeps running.
    let sum = runtime::spawn_blocking(|| (1..=1_000_000u64).sum::<u64>())
        .await
        .expect("blocking job failed");
    println!("sum computed on the blocking pool: {sum}");

    // An interval.
    let mut ticker = interval(Duration::from_millis(5));
    for _ in 0..3 {
        ticker.tick().await;
    }
    println!("three ticks of a 5 ms interval");

    // A raw no-op operation through the public submission API.
    // SAFETY: a NOP points at no memory.
    let (completion, ()) = unsafe { Op::submit((), |_| opcode::Nop::new().build()) }.await;
    println!(
        "a NOP round trip through the ring: {:?}",
        completion.result()?
    );

    println!("done in {:?}", start.elapsed());
    Ok(())
}
