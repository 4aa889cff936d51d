//! Thread-per-core: `Pool`, `PoolBuilder`, `PoolHandle`, `worker_index`,
//! `JoinHandle`s awaited across threads, cross-ring wake-ups (MSG_RING and
//! eventfd), `TcpListener::bind_reuseport` and `#[runtime::main(threads)]`.
//!
//! No timing assertions: every wait is bounded by `with_deadline`.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use integration_tests::{park_on, with_deadline};
use runtime::{CrossWake, JoinHandle, Pool, PoolHandle, Runtime};

const LIMIT: Duration = Duration::from_secs(60);

fn pool(threads: usize) -> Pool {
    Pool::builder().threads(threads).build().expect("pool")
}

fn pool_with(threads: usize, how: CrossWake) -> Pool {
    Pool::builder()
        .threads(threads)
        .runtime(Runtime::builder().cross_wake(how))
        .build()
        .expect("pool")
}

#[test]
fn join_handles_of_send_outputs_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<JoinHandle<u32>>();
    send_sync::<PoolHandle>();
    send_sync::<Pool>();
}

#[test]
fn run_returns_outputs_in_worker_order_and_worker_index_is_set() {
    with_deadline(LIMIT, || {
        assert_eq!(runtime::worker_index(), None);
        let pool = pool(3);
        let out = pool.run(|i| async move {
            // A future that is not Send, built on the worker.
            let rc = Rc::new(i);
            runtime::yield_now().await;
            (
                *rc,
                runtime::worker_index(),
                thread::current().name().map(String::from),
            )
        });
        assert_eq!(out.len(), 3);
        for (i, (v, index, name)) in out.into_iter().enumerate() {
            assert_eq!(v, i);
            assert_eq!(index, Some(i));
            assert_eq!(name.as_deref(), Some(&*format!("runtime-worker-{i}")));
        }
        // A runtime that is not a pool worker has no index.
        assert_eq!(runtime::block_on(async { runtime::worker_index() }), None);
        // Neither has a blocking thread of a worker.
        let blocking = pool.run(|_| async {
            runtime::spawn_blocking(runtime::worker_index)
                .await
                .unwrap()
        });
        assert_eq!(blocking, [None, None, None]);
    });
}

#[test]
fn run_borrows_from_the_caller_and_resumes_a_worker_panic() {
    with_deadline(LIMIT, || {
        let pool = pool(2);
        let words = ["zero".to_string(), "one".to_string()];
        let lens = pool.run(|i| {
            let len = words[i].len();
            async move { len }
        });
        assert_eq!(lens, [4, 3]);
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(|i| async move {
                if i == 1 {
                    panic!("worker one fails");
                }
                i
            })
        }))
        .unwrap_err();
        assert_eq!(err.downcast_ref::<&str>(), Some(&"worker one fails"));
        // The pool carries on.
        assert_eq!(pool.run(|i| async move { i + 10 }), [10, 11]);
    });
}

#[test]
#[should_panic(expected = "cannot be called from inside a runtime")]
fn run_inside_a_runtime_panics_with_a_clear_message() {
    let pool = pool(1);
    runtime::block_on(async { pool.run(|_| async {}) });
}

#[test]
fn threads_zero_is_invalid_input() {
    let err = Pool::builder().threads(0).build().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("PoolBuilder::threads"), "{err}");
}

#[test]
fn a_worker_runtime_that_cannot_be_built_is_the_error() {
    let err = Pool::builder()
        .threads(2)
        .runtime(Runtime::builder().entries(0))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("Builder::entries"), "{err}");
}

#[test]
fn pinned_workers_run_on_one_cpu_each() {
    with_deadline(LIMIT, || {
        let pool = Pool::builder().threads(2).pin_cpus(true).build().unwrap();
        let cpus = pool.run(|_| async {
            // SAFETY: a zeroed cpu_set_t is a valid empty set.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            // SAFETY: `set` is live and of the size passed.
            let rc = unsafe {
                libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set)
            };
            assert_eq!(rc, 0);
            // SAFETY: `set` is initialised.
            unsafe { libc::CPU_COUNT(&set) }
        });
        assert_eq!(cpus, [1, 1]);
    });
}

#[test]
fn spawn_on_from_foreign_threads_joined_on_plain_threads() {
    with_deadline(LIMIT, || {
        let pool = pool(4);
        let handle = pool.handle();
        assert_eq!(handle.workers(), 4);
        let spawners: Vec<_> = (0..4)
            .map(|t| {
                let handle = handle.clone();
                thread::spawn(move || {
                    let handles: Vec<JoinHandle<(usize, usize)>> = (0..500)
                        .map(|n| {
                            handle.spawn_on(n % 4, move || {
                                // Built on the worker: not Send.
                                let rc = Rc::new(n);
                                async move {
                                    runtime::yield_now().await;
                                    (*rc, runtime::worker_index().unwrap())
                                }
                            })
                        })
                        .collect();
                    // Half joined right here with a thread-park executor,
                    // half handed to another plain thread.
                    let (mine, theirs): (Vec<_>, Vec<_>) = handles
                        .into_iter()
                        .enumerate()
                        .partition(|(n, _)| n % 2 == 0);
                    let other = thread::spawn(move || {
                        theirs
                            .into_iter()
                            .map(|(n, h)| (n, park_on(h).unwrap()))
                            .collect::<Vec<_>>()
                    });
                    let mut all: Vec<_> = mine
                        .into_iter()
                        .map(|(n, h)| (n, park_on(h).unwrap()))
                        .collect();
                    all.extend(other.join().unwrap());
                    for (n, (v, worker)) in all {
                        assert_eq!(v, n);
                        assert_eq!(worker, n % 4, "thread {t}");
                    }
                })
            })
            .collect();
        for s in spawners {
            s.join().unwrap();
        }
        // Joined on tokio and on another runtime of ours, too.
        let h = handle.spawn_on(2, || async { 7 });
        let tokio = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(tokio.block_on(h).unwrap(), 7);
        let h = handle.spawn_on(3, || async { 8 });
        assert_eq!(runtime::block_on(h).unwrap(), 8);
    });
}

#[test]
fn spawn_on_inside_workers_same_and_other_worker() {
    with_deadline(LIMIT, || {
        let pool = pool(2);
        let handle = pool.handle();
        let out = pool.run(|i| {
            let handle = handle.clone();
            async move {
                let mine = handle.spawn_on(i, || async { runtime::worker_index() });
                let other = handle.spawn_on(1 - i, || async { runtime::worker_index() });
                (mine.await.unwrap(), other.await.unwrap())
            }
        });
        assert_eq!(out, [(Some(0), Some(1)), (Some(1), Some(0))]);
        // Those wake-ups between workers went as MSG_RING, if the kernel
        // has it.
        let sent = pool.run(|_| async {
            (
                runtime::features().msg_ring,
                runtime::metrics().msg_ring_wakes_sent,
            )
        });
        for (has, n) in sent {
            assert_eq!(has, n > 0, "{n}");
        }
    });
}

#[test]
fn spawn_on_out_of_range_or_after_the_pool_is_gone_is_cancelled() {
    with_deadline(LIMIT, || {
        let pool = pool(2);
        let handle = pool.handle();
        let called = Arc::new(AtomicUsize::new(0));
        let c = called.clone();
        let h = handle.spawn_on(2, move || {
            c.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        assert!(park_on(h).unwrap_err().is_cancelled());
        drop(pool);
        let c = called.clone();
        let h = handle.spawn_on(0, move || {
            c.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        assert!(h.is_finished());
        assert!(park_on(h).unwrap_err().is_cancelled());
        assert_eq!(called.load(Ordering::SeqCst), 0);
        assert_eq!(handle.workers(), 2);
    });
}

#[test]
fn a_panicking_task_is_a_join_error_and_the_worker_carries_on() {
    with_deadline(LIMIT, || {
        let pool = pool(2);
        let handle = pool.handle();
        let in_closure = handle.spawn_on(1, || -> std::future::Ready<()> {
            panic!("closure panics");
        });
        let err = park_on(in_closure).unwrap_err();
        assert!(err.is_panic());
        assert_eq!(
            err.into_panic().downcast_ref::<&str>(),
            Some(&"closure panics")
        );
        let in_future = handle.spawn_on(1, || async {
            runtime::yield_now().await;
            panic!("future panics");
        });
        let err: runtime::JoinError = park_on(in_future).unwrap_err();
        assert!(err.is_panic());
        let after = handle.spawn_on(1, || async { runtime::worker_index() });
        assert_eq!(park_on(after).unwrap(), Some(1));
    });
}

#[test]
fn abort_from_another_thread_cancels_a_remote_task() {
    with_deadline(LIMIT, || {
        let pool = pool(2);
        let h = pool.handle().spawn_on(0, std::future::pending::<()>);
        // `&JoinHandle` is Sync: abort it from another thread.
        thread::scope(|s| {
            s.spawn(|| h.abort());
        });
        assert!(park_on(h).unwrap_err().is_cancelled());
    });
}

/// The wake-ups each worker sent: (MSG_RING, eventfd).
fn wakes() -> (u64, u64) {
    let m = runtime::metrics();
    (m.msg_ring_wakes_sent, m.eventfd_wakes_sent)
}

/// Worker 0 and worker 1 ping-pong `n` messages over tokio's channels;
/// returns every worker's wake-up counters.
fn tokio_ping_pong(pool: &Pool, n: u32) -> Vec<(u64, u64)> {
    let (to_1, mut at_1) = tokio::sync::mpsc::channel::<u32>(1);
    let (to_0, mut at_0) = tokio::sync::mpsc::channel::<u32>(1);
    let handle = pool.handle();
    let pong = handle.spawn_on(1, move || async move {
        while let Some(v) = at_1.recv().await {
            if to_0.send(v + 1).await.is_err() {
                break;
            }
        }
        wakes()
    });
    let ping = handle.spawn_on(0, move || async move {
        let mut v = 0;
        for _ in 0..n {
            to_1.send(v).await.unwrap();
            let back = at_0.recv().await.unwrap();
            assert_eq!(back, v + 1);
            v = back;
        }
        drop(to_1);
        wakes()
    });
    vec![park_on(ping).unwrap(), park_on(pong).unwrap()]
}

#[test]
fn tokio_channels_between_workers_with_msg_ring() {
    with_deadline(LIMIT, || {
        let pool = pool_with(2, CrossWake::MsgRing);
        let msg_ring = pool.run(|_| async { runtime::features().msg_ring })[0];
        let counters = tokio_ping_pong(&pool, 20_000);
        let msg: u64 = counters.iter().map(|c| c.0).sum();
        if msg_ring {
            // Every wake between the two workers went as a MSG_RING.
            assert!(msg >= 20_000, "{counters:?}");
            let received: u64 = pool
                .run(|_| async { runtime::metrics().msg_ring_wakes_received })
                .iter()
                .sum();
            assert!(received > 0);
        } else {
            assert_eq!(msg, 0);
        }
    });
}

#[test]
fn tokio_channels_between_workers_with_eventfd() {
    with_deadline(LIMIT, || {
        let pool = pool_with(2, CrossWake::EventFd);
        let counters = tokio_ping_pong(&pool, 20_000);
        let msg: u64 = counters.iter().map(|c| c.0).sum();
        let eventfd: u64 = counters.iter().map(|c| c.1).sum();
        assert_eq!(msg, 0, "{counters:?}");
        assert!(eventfd >= 20_000, "{counters:?}");
        let received: u64 = pool
            .run(|_| async { runtime::metrics().msg_ring_wakes_received })
            .iter()
            .sum();
        assert_eq!(received, 0);
    });
}

#[test]
fn a_msg_ring_runtime_wakes_an_eventfd_runtime_with_its_eventfd() {
    with_deadline(LIMIT, || {
        // Worker of a MSG_RING pool waking a worker of an eventfd pool: the
        // target refuses MSG_RING, so the eventfd is used.
        let msg = pool_with(1, CrossWake::MsgRing);
        let evt = pool_with(1, CrossWake::EventFd);
        let evt_handle = evt.handle();
        let counters = msg.run(|_| {
            let evt_handle = evt_handle.clone();
            async move {
                for i in 0..100 {
                    let h = evt_handle.spawn_on(0, move || async move { i });
                    assert_eq!(h.await.unwrap(), i);
                }
                wakes()
            }
        });
        assert_eq!(counters[0].0, 0);
        assert!(counters[0].1 >= 100);
    });
}

#[test]
fn without_msg_ring_in_the_kernel_wakes_use_the_eventfd() {
    with_deadline(LIMIT, || {
        // The fallback of a kernel without IORING_OP_MSG_RING (masked).
        let pool = Pool::builder()
            .threads(2)
            .runtime(Runtime::builder().mask_features(|f| f.msg_ring = false))
            .build()
            .unwrap();
        let counters = tokio_ping_pong(&pool, 2_000);
        assert_eq!(counters.iter().map(|c| c.0).sum::<u64>(), 0, "{counters:?}");
        assert!(counters.iter().map(|c| c.1).sum::<u64>() >= 2_000);
    });
}

#[test]
fn std_channels_between_workers() {
    with_deadline(LIMIT, || {
        let pool = pool(2);
        let (to_1, at_1) = mpsc::channel::<u32>();
        let (to_0, at_0) = mpsc::channel::<u32>();
        let handle = pool.handle();
        let pong = handle.spawn_on(1, move || async move {
            loop {
                match at_1.try_recv() {
                    Ok(v) => to_0.send(v + 1).unwrap(),
                    Err(mpsc::TryRecvError::Empty) => runtime::yield_now().await,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
        });
        let ping = handle.spawn_on(0, move || async move {
            let mut v = 0;
            for _ in 0..20_000 {
                to_1.send(v).unwrap();
                v = loop {
                    match at_0.try_recv() {
                        Ok(back) => break back,
                        Err(_) => runtime::yield_now().await,
                    }
                };
            }
            v
        });
        assert_eq!(park_on(ping).unwrap(), 20_000);
        park_on(pong).unwrap();
    });
}

#[test]
fn dropping_the_pool_cancels_tasks_awaited_from_elsewhere() {
    with_deadline(LIMIT, || {
        let pool = pool(2);
        let handle = pool.handle();
        // Tasks pending forever, on sleeps and on each other.
        let sleepers: Vec<_> = (0..200)
            .map(|i| {
                handle.spawn_on(i % 2, || async {
                    runtime::time::sleep(Duration::from_secs(3600)).await;
                })
            })
            .collect();
        let waiter = {
            let h = handle.clone();
            handle.spawn_on(0, move || async move {
                h.spawn_on(1, std::future::pending::<()>).await
            })
        };
        // A plain thread is already waiting on one of them.
        let (tx, rx) = mpsc::channel();
        let first = thread::spawn({
            let h = handle.spawn_on(1, std::future::pending::<u8>);
            move || {
                tx.send(()).unwrap();
                park_on(h)
            }
        });
        rx.recv().unwrap();
        drop(pool);
        assert!(first.join().unwrap().unwrap_err().is_cancelled());
        for h in sleepers {
            assert!(park_on(h).unwrap_err().is_cancelled());
        }
        // The waiter was cancelled itself (or saw its target cancelled).
        match park_on(waiter) {
            Err(e) => assert!(e.is_cancelled()),
            Ok(inner) => assert!(inner.unwrap_err().is_cancelled()),
        }
    });
}

/// Four workers serve one port; hundreds of connections from plain
/// threads are all answered, by more than one worker.
#[test]
fn four_workers_share_a_port_with_bind_reuseport() {
    with_deadline(LIMIT, || {
        let pool = pool(4);
        let handle = pool.handle();
        // The first listener picks the port; the workers join it; then it
        // goes, before any client connects.
        let first = net::TcpListener::bind_reuseport("127.0.0.1:0").unwrap();
        let addr = first.local_addr().unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        let servers: Vec<_> = (0..4)
            .map(|w| {
                let ready = ready_tx.clone();
                handle.spawn_on(w, move || async move {
                    let listener = net::TcpListener::bind_reuseport(addr).unwrap();
                    ready.send(()).unwrap();
                    loop {
                        let (stream, _) = listener.accept().await.unwrap();
                        runtime::spawn(async move {
                            let (res, buf) = stream.read_exact(Vec::with_capacity(16)).await;
                            res.unwrap();
                            let mut reply = vec![runtime::worker_index().unwrap() as u8];
                            reply.extend_from_slice(&buf);
                            let (res, _) = stream.write_all(reply).await;
                            res.unwrap();
                        });
                    }
                })
            })
            .collect();
        for _ in 0..4 {
            ready_rx.recv().unwrap();
        }
        drop(first);
        // A plain bind on the shared port is refused.
        let err = net::TcpListener::bind(addr).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);

        let clients: Vec<_> = (0..8)
            .map(|t| {
                thread::spawn(move || {
                    let mut workers = HashSet::new();
                    for n in 0..50 {
                        let mut s = std::net::TcpStream::connect(addr).unwrap();
                        let msg = format!("client {t:02} n{n:04}.");
                        assert_eq!(msg.len(), 16);
                        s.write_all(msg.as_bytes()).unwrap();
                        let mut reply = [0u8; 17];
                        s.read_exact(&mut reply).unwrap();
                        assert!(reply[0] < 4);
                        assert_eq!(&reply[1..], msg.as_bytes());
                        workers.insert(reply[0]);
                    }
                    workers
                })
            })
            .collect();
        let mut used = HashSet::new();
        for c in clients {
            used.extend(c.join().unwrap());
        }
        assert!(used.len() > 1, "only worker(s) {used:?} answered");
        drop(pool);
        for s in servers {
            assert!(park_on(s).unwrap_err().is_cancelled());
        }
    });
}

#[test]
fn bind_reuseport_error_when_the_port_is_held_without_it() {
    let plain = net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = net::TcpListener::bind_reuseport(plain.local_addr().unwrap()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}

static BODIES: AtomicUsize = AtomicUsize::new(0);

/// The attribute on a function not named `main`, so that a test can call it.
#[runtime::main(threads = 3, entries = 64)]
async fn three_bodies() -> Result<usize, String> {
    BODIES.fetch_add(1, Ordering::SeqCst);
    let me = runtime::worker_index().expect("a pool worker");
    runtime::yield_now().await;
    if me == 2 {
        return Err(format!("worker {me} fails"));
    }
    Ok(me)
}

#[runtime::main(threads = 2)]
async fn two_ok() -> std::io::Result<usize> {
    Ok(runtime::worker_index().unwrap() + 100)
}

#[test]
fn main_with_threads_runs_the_body_on_every_worker() {
    assert_eq!(three_bodies(), Err("worker 2 fails".to_string()));
    assert_eq!(BODIES.load(Ordering::SeqCst), 3);
    // No Err: worker 0's Ok.
    assert_eq!(two_ok().unwrap(), 100);
}

static TEST_BODIES: AtomicUsize = AtomicUsize::new(0);

/// `#[runtime::test(threads = 2)]` runs the body once on each of two
/// workers, at the same time: each body waits (bounded) until both have
/// arrived, which a single body never sees.
#[runtime::test(threads = 2)]
async fn test_attribute_with_threads() {
    assert!(runtime::worker_index().unwrap() < 2);
    TEST_BODIES.fetch_add(1, Ordering::SeqCst);
    let start = std::time::Instant::now();
    while TEST_BODIES.load(Ordering::SeqCst) < 2 && start.elapsed() < LIMIT {
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        TEST_BODIES.load(Ordering::SeqCst),
        2,
        "the body ran once only"
    );
}

/// A panic in `spawn_on`'s closure is the task's JoinError also when the
/// caller is on the target worker itself (the closure runs in the task).
#[test]
fn spawn_on_own_worker_with_a_panicking_closure_is_a_join_error() {
    with_deadline(LIMIT, || {
        let pool = pool(2);
        let handle = pool.handle();
        let out = pool.run(move |i| {
            let handle = handle.clone();
            async move {
                let own = handle.spawn_on(i, || -> std::future::Ready<()> {
                    panic!("closure panics on its own worker");
                });
                let err = own.await.unwrap_err();
                err.is_panic()
            }
        });
        assert_eq!(out, [true, true]);
    });
}

/// A wake-up a worker owes another (queued for its next MSG_RING) must not
/// hold back wakes of that worker from plain threads: worker 0 queues one
/// to worker 1 and then blocks its thread; meanwhile a plain thread's
/// `spawn_on(1, ..)` must still run.
#[test]
fn a_queued_msg_ring_wake_does_not_hold_back_other_threads_wakes() {
    with_deadline(LIMIT, || {
        let pool = pool_with(2, CrossWake::MsgRing);
        let handle = pool.handle();
        let (blocked_tx, blocked_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (ran_tx, ran_rx) = mpsc::channel::<&str>();
        let on_0 = handle.clone();
        let first = handle.spawn_on(0, move || async move {
            // Queued in worker 0's outbox, sent at its next turn...
            let queued = on_0.spawn_on(1, || async {});
            // ...which does not come while this task blocks the thread.
            blocked_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            queued.await.unwrap();
        });
        blocked_rx.recv().unwrap();
        let ran = ran_tx.clone();
        let plain = handle.spawn_on(1, move || async move {
            ran.send("plain thread's task ran").unwrap();
        });
        let got = ran_rx.recv_timeout(Duration::from_secs(20));
        release_tx.send(()).unwrap();
        assert_eq!(got, Ok("plain thread's task ran"));
        park_on(plain).unwrap();
        park_on(first).unwrap();
    });
}

/// Counts its drops: each output of the race test below must be dropped
/// exactly once, wherever it ends up.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A waker that does nothing (the test below polls in a loop); its
/// `Arc::strong_count` shows whether a task still holds a clone.
struct Nop;

impl std::task::Wake for Nop {
    fn wake(self: Arc<Self>) {}
}

/// Thousands of tasks finish on the workers while their `JoinHandle`s, on
/// other threads, are polled with two wakers in turn, dropped at once or
/// after a poll, aborted, or awaited by a task of the other worker: every
/// output is dropped exactly once and no join waker is kept (under
/// AddressSanitizer this also checks for uses after free).
#[test]
fn join_handles_race_completion_across_threads() {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};
    with_deadline(LIMIT, || {
        let pool = pool(2);
        let handle = pool.handle();
        let made = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (a, b) = (Arc::new(Nop), Arc::new(Nop));
        let wakers = [Waker::from(a.clone()), Waker::from(b.clone())];
        // A second plain thread that polls or drops the handles it gets.
        let (tx, rx) = mpsc::channel::<JoinHandle<Counted>>();
        let other = thread::spawn(move || {
            for (n, h) in rx.into_iter().enumerate() {
                if n % 2 == 0 {
                    drop(h);
                } else {
                    drop(park_on(h));
                }
            }
        });
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        for i in 0..4000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let yields = rng % 3;
            let (m, d) = (made.clone(), dropped.clone());
            let mut h = handle.spawn_on(i % 2, move || async move {
                for _ in 0..yields {
                    runtime::yield_now().await;
                }
                m.fetch_add(1, Ordering::SeqCst);
                Counted(d)
            });
            match (rng >> 8) % 6 {
                0 => drop(h),
                1 => {
                    let _ = Pin::new(&mut h).poll(&mut Context::from_waker(&wakers[0]));
                    drop(h);
                }
                2 => {
                    h.abort();
                    drop(park_on(h));
                }
                3 => tx.send(h).unwrap(),
                4 => drop(handle.spawn_on(1 - i % 2, move || async move {
                    drop(h.await);
                })),
                _ => {
                    let mut n = 0;
                    loop {
                        let cx = &mut Context::from_waker(&wakers[n % 2]);
                        if let Poll::Ready(out) = Pin::new(&mut h).poll(cx) {
                            drop(out.unwrap());
                            break;
                        }
                        n += 1;
                        thread::yield_now();
                    }
                }
            }
        }
        drop(tx);
        other.join().unwrap();
        drop(pool);
        assert_eq!(made.load(Ordering::SeqCst), dropped.load(Ordering::SeqCst));
        drop(wakers);
        assert_eq!(Arc::strong_count(&a), 1, "a join waker was kept");
        assert_eq!(Arc::strong_count(&b), 1, "a join waker was kept");
    });
}
