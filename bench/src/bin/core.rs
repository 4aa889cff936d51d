//! Core runtime micro-benchmarks: spawn + join, yield round trips and no-op
//! ring round trips, with tokio's current-thread runtime as the peer where
//! an equivalent exists. Each figure is the median of several rounds in one
//! process run.
//!
//! `taskset -c 1 cargo run --release -p bench --bin core`

use bench::{median_rate, report};
use runtime::op::io_uring::opcode;
use runtime::op::Op;

const ROUNDS: usize = 7;

fn main() {
    let ours = runtime::Runtime::new().expect("cannot start the runtime");
    let tokio = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("cannot start tokio");

    // Spawn N trivial tasks, then join them all.
    const SPAWN: u64 = 100_000;
    let a = median_rate(ROUNDS, SPAWN, || {
        ours.block_on(async {
            let hs: Vec<_> = (0..SPAWN)
                .map(|i| runtime::spawn(async move { i }))
                .collect();
            let mut sum = 0;
            for h in hs {
                sum += h.await.unwrap();
            }
            assert_eq!(sum, SPAWN * (SPAWN - 1) / 2);
        })
    });
    let b = median_rate(ROUNDS, SPAWN, || {
        tokio.block_on(async {
            let hs: Vec<_> = (0..SPAWN).map(|i| tokio::spawn(async move { i })).collect();
            let mut sum = 0;
            for h in hs {
                sum += h.await.unwrap();
            }
            assert_eq!(sum, SPAWN * (SPAWN - 1) / 2);
        })
    });
    report("spawn+join", a, Some(("tokio", b)));

    // One spawned task yielding in a loop (scheduler round trip).
    const YIELDS: u64 = 1_000_000;
    let a = median_rate(ROUNDS, YIELDS, || {
        ours.block_on(async {
            runtime::spawn(async {
                for _ in 0..YIELDS {
                    runtime::yield_now().await;
                }
            })
            .await
            .unwrap()
        })
    });
    let b = median_rate(ROUNDS, YIELDS, || {
        tokio.block_on(async {
            tokio::spawn(async {
                for _ in 0..YIELDS {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .unwrap()
        })
    });
    report("yield round trip", a, Some(("tokio", b)));

    // Sequential no-op operations: each one is a full trip through the ring
    // (push, io_uring_enter, reap, wake, poll).
    const NOPS: u64 = 200_000;
    let a = median_rate(ROUNDS, NOPS, || {
        ours.block_on(async {
            for _ in 0..NOPS {
                // SAFETY: a NOP points at no memory.
                let (c, ()) = unsafe { Op::submit((), |_| opcode::Nop::new().build()) }.await;
                c.result().unwrap();
            }
        })
    });
    report("nop round trip (1 task)", a, None);

    // 64 tasks issuing no-ops concurrently: SQEs are batched per tick.
    const TASKS: u64 = 64;
    let a = median_rate(ROUNDS, NOPS, || {
        ours.block_on(async {
            let hs: Vec<_> = (0..TASKS)
                .map(|_| {
                    runtime::spawn(async {
                        for _ in 0..NOPS / TASKS {
                            // SAFETY: a NOP points at no memory.
                            let (c, ()) =
                                unsafe { Op::submit((), |_| opcode::Nop::new().build()) }.await;
                            c.result().unwrap();
                        }
                    })
                })
                .collect();
            for h in hs {
                h.await.unwrap();
            }
        })
    });
    report("nop round trip (64 tasks)", a, None);
}
