//! Integration tests of the executor: `spawn`, `spawn_blocking`,
//! `yield_now`, `JoinHandle` / `JoinError`, `Runtime::block_on` and runtime
//! shutdown.
//!
//! Every test runs inside `with_deadline`, so a hang (a lost wake-up, a ring
//! that never wakes) fails the test instead of blocking CI. No test passes
//! because something was fast: the only time assertions are lower bounds
//! ("a 20 ms sleep took at least 20 ms").
//!
//! Some tests use `#[runtime::test]`: the attribute is put on an inner
//! `async fn` (which the test harness does not collect, being an inner item)
//! and the generated sync function, which builds a fresh runtime and blocks
//! on the body, is what the outer `#[test]` runs under the deadline.

// `#[runtime::test]` on inner `async fn`s, run under `with_deadline` by the
// outer `#[test]`; the harness rightly does not collect the inner ones.
#![allow(unnameable_test_items)]

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use integration_tests::{on_runtime, with_deadline};
use runtime::time::sleep;
use runtime::{spawn, spawn_blocking, yield_now, JoinHandle, Runtime};

/// Generous limit for every test: only a hang gets near it.
const LIMIT: Duration = Duration::from_secs(30);

/// Sets its flag when dropped: shows that a future (or an output) was
/// dropped, and when.
struct SetOnDrop(Rc<Cell<bool>>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

/// Awaits `cond()` by yielding, at most `max` times; panics if it never held.
async fn yield_until(what: &str, max: usize, mut cond: impl FnMut() -> bool) {
    for _ in 0..max {
        if cond() {
            return;
        }
        yield_now().await;
    }
    assert!(cond(), "{what}: still false after {max} yields");
}

/// Polls `fut` exactly once, from inside the current task.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

// ---------------------------------------------------------------------------
// Many tasks
// ---------------------------------------------------------------------------

/// 200,000 tasks spawned on one runtime all run and each hands its own
/// output (its index) to its `JoinHandle`: the sum of the joined outputs is
/// exactly 0 + 1 + ... + 199,999, and each handle returns its own index.
#[test]
fn two_hundred_thousand_tasks_are_joined() {
    const N: u64 = 200_000;
    let sum = on_runtime(LIMIT, || async {
        let handles: Vec<JoinHandle<u64>> = (0..N).map(|i| spawn(async move { i })).collect();
        let mut sum = 0u64;
        for (i, h) in handles.into_iter().enumerate() {
            let v = h.await.expect("task failed");
            assert_eq!(v, i as u64, "handle {i} returned another task's output");
            sum += v;
        }
        sum
    });
    assert_eq!(sum, N * (N - 1) / 2);
}

/// Tasks spawned from inside other tasks run too (nested spawn), and a task
/// that awaits its children gets their outputs.
#[test]
fn tasks_spawned_by_tasks_run() {
    #[runtime::test]
    async fn body() {
        let outer = spawn(async {
            let children: Vec<_> = (0..100u32).map(|i| spawn(async move { i * 2 })).collect();
            let mut total = 0;
            for c in children {
                total += c.await.unwrap();
            }
            total
        });
        assert_eq!(outer.await.unwrap(), 2 * (99 * 100 / 2));
    }
    with_deadline(LIMIT, body);
}

// ---------------------------------------------------------------------------
// abort
// ---------------------------------------------------------------------------

/// Aborting a task that is asleep (pending on a 1 h timer): awaiting its
/// handle gives a `JoinError` with `is_cancelled()` (and not `is_panic()`),
/// the task's future was dropped (its drop guard ran) and never resumed, and
/// `is_finished()` turns true.
#[test]
fn abort_of_a_sleeping_task_cancels_and_drops_it() {
    #[runtime::test]
    async fn body() {
        let started = Rc::new(Cell::new(false));
        let dropped = Rc::new(Cell::new(false));
        let resumed = Rc::new(Cell::new(false));
        let mut handle = {
            let (started, dropped, resumed) = (started.clone(), dropped.clone(), resumed.clone());
            spawn(async move {
                let _guard = SetOnDrop(dropped);
                started.set(true);
                sleep(Duration::from_secs(3600)).await;
                resumed.set(true);
                "woke up"
            })
        };
        yield_until("task started", 1000, || started.get()).await;
        // Asleep now: not finished, future alive.
        assert!(!handle.is_finished());
        assert!(!dropped.get(), "the future was dropped before abort");

        handle.abort();
        let err = (&mut handle)
            .await
            .expect_err("an aborted sleeping task returned its output");
        assert!(
            err.is_cancelled(),
            "expected a cancelled JoinError, got {err:?}"
        );
        assert!(!err.is_panic());
        assert!(
            err.to_string().contains("cancel"),
            "Display of a cancelled JoinError: {err}"
        );
        assert!(dropped.get(), "the aborted task's future was not dropped");
        assert!(!resumed.get(), "the aborted task ran past its sleep");
        assert!(
            handle.is_finished(),
            "is_finished() false after abort completed"
        );
        // A cancelled error carries no panic payload.
        assert!(err.try_into_panic().is_err());
    }
    with_deadline(LIMIT, body);
}

/// Aborting a task before it was ever polled: it never runs a single
/// statement, its future (with what it captured) is dropped, and the handle
/// reports cancellation.
#[test]
fn abort_before_first_poll_never_runs_the_task() {
    on_runtime(LIMIT, || async {
        let ran = Rc::new(Cell::new(false));
        let dropped = Rc::new(Cell::new(false));
        let handle = {
            let ran = ran.clone();
            // Captured by the future from the start, so dropping the
            // never-polled future drops it.
            let guard = SetOnDrop(dropped.clone());
            spawn(async move {
                let _guard = guard;
                ran.set(true);
            })
        };
        handle.abort();
        let err = handle.await.expect_err("aborted task gave an output");
        assert!(err.is_cancelled());
        assert!(
            !ran.get(),
            "a task aborted before its first poll was polled"
        );
        assert!(dropped.get(), "the aborted task's future was not dropped");
    });
}

/// `abort` after the task completed changes nothing: the output is still
/// delivered (`Ok`), not turned into a cancellation.
#[test]
fn abort_after_completion_keeps_the_output() {
    on_runtime(LIMIT, || async {
        let mut handle = spawn(async { 7u32 });
        yield_until("task finished", 1000, || handle.is_finished()).await;
        handle.abort();
        handle.abort(); // twice: still harmless
        assert!(handle.is_finished());
        assert_eq!((&mut handle).await.expect("output lost by abort"), 7);
    });
}

/// One task aborts another that is busy yielding in a loop: the looping task
/// ends with a cancelled `JoinError` and is never polled again.
#[test]
fn abort_from_another_task_while_both_run() {
    on_runtime(LIMIT, || async {
        let counter = Rc::new(Cell::new(0u32));
        let looping = {
            let counter = counter.clone();
            spawn(async move {
                loop {
                    counter.set(counter.get() + 1);
                    yield_now().await;
                }
            })
        };
        let looping = Rc::new(looping);
        let aborter = {
            let looping = looping.clone();
            let counter = counter.clone();
            spawn(async move {
                yield_until("looper ran", 1000, || counter.get() >= 10).await;
                looping.abort();
            })
        };
        aborter.await.unwrap();
        let looping = Rc::try_unwrap(looping).expect("handle still shared");
        let err = looping.await.expect_err("an endless task finished");
        assert!(err.is_cancelled());
        let seen = counter.get();
        // After the cancellation, the loop never runs again.
        for _ in 0..10 {
            yield_now().await;
        }
        assert_eq!(counter.get(), seen, "an aborted task was polled again");
    });
}

// ---------------------------------------------------------------------------
// panics
// ---------------------------------------------------------------------------

/// A panic in a spawned task becomes a `JoinError` with `is_panic()`, whose
/// `into_panic()` payload downcasts to the message (both the `&'static str`
/// of `panic!("literal")` and the `String` of a formatted panic); the
/// runtime and other tasks carry on (a sibling spawned before it finishes
/// normally, and new tasks run afterwards).
#[test]
fn panic_in_a_task_becomes_a_join_error() {
    on_runtime(LIMIT, || async {
        let sibling = spawn(async {
            for _ in 0..10 {
                yield_now().await;
            }
            sleep(Duration::from_millis(5)).await;
            "sibling ok"
        });
        let literal = spawn(async {
            yield_now().await;
            panic!("literal boom");
        });
        let formatted = spawn(async {
            sleep(Duration::from_millis(1)).await;
            // A runtime value: the payload is a formatted `String`.
            let n = std::hint::black_box(42);
            panic!("formatted boom {n}");
        });

        let err = literal.await.expect_err("a panicking task gave an output");
        assert!(err.is_panic(), "expected a panic JoinError, got {err:?}");
        assert!(!err.is_cancelled());
        assert!(
            err.to_string().contains("literal boom"),
            "Display should name the panic message: {err}"
        );
        assert!(format!("{err:?}").contains("literal boom"), "{err:?}");
        let payload = err.into_panic();
        assert_eq!(
            payload.downcast_ref::<&'static str>().copied(),
            Some("literal boom")
        );

        let err = formatted
            .await
            .expect_err("a panicking task gave an output");
        assert!(err.is_panic());
        let payload = err.into_panic();
        assert_eq!(
            payload.downcast::<String>().map(|s| *s).ok().as_deref(),
            Some("formatted boom 42")
        );

        assert_eq!(sibling.await.unwrap(), "sibling ok");
        // The runtime still runs new work, timers included.
        let after = spawn(async {
            sleep(Duration::from_millis(1)).await;
            5
        });
        assert_eq!(after.await.unwrap(), 5);
    });
}

/// A panic in `block_on`'s own future propagates out of `block_on` with its
/// payload. Afterwards the thread is no longer "inside a runtime" (a spawn
/// panics again with the outside-a-runtime message) and the same runtime
/// runs further `block_on` calls, including tasks spawned before the panic.
#[test]
fn panic_in_block_on_future_propagates() {
    with_deadline(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let survivor_ran = Rc::new(Cell::new(false));
        let survivor: Rc<RefCell<Option<JoinHandle<u32>>>> = Rc::new(RefCell::new(None));
        let result = catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(async {
                let ran = survivor_ran.clone();
                *survivor.borrow_mut() = Some(spawn(async move {
                    sleep(Duration::from_millis(2)).await;
                    ran.set(true);
                    11
                }));
                yield_now().await;
                panic!("main future boom");
            })
        }));
        let payload = result.expect_err("block_on swallowed its future's panic");
        assert_eq!(panic_text(&*payload), "main future boom");

        // Not inside a runtime any more.
        let outside = catch_unwind(|| drop(spawn(async {})));
        assert!(
            outside.is_err(),
            "spawn outside a runtime did not panic after block_on unwound"
        );

        // The runtime still works, and the task spawned before the panic
        // finishes in the next block_on.
        let handle = survivor.borrow_mut().take().unwrap();
        let v = rt.block_on(async move { handle.await.unwrap() });
        assert_eq!(v, 11);
        assert!(survivor_ran.get());
    });
}

// ---------------------------------------------------------------------------
// detaching
// ---------------------------------------------------------------------------

/// Dropping a `JoinHandle` detaches the task: it keeps running to completion
/// (after a sleep, so it is really pending when the handle goes), and its
/// output is dropped once it finishes since nobody will read it.
#[test]
fn dropping_a_join_handle_detaches_the_task() {
    on_runtime(LIMIT, || async {
        let done = Rc::new(Cell::new(false));
        let output_dropped = Rc::new(Cell::new(false));
        let handle = {
            let (done, output_dropped) = (done.clone(), output_dropped.clone());
            spawn(async move {
                sleep(Duration::from_millis(10)).await;
                done.set(true);
                SetOnDrop(output_dropped)
            })
        };
        yield_now().await; // the task is now asleep
        assert!(!handle.is_finished());
        drop(handle);
        assert!(!done.get());

        let start = Instant::now();
        while !done.get() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "detached task never finished"
            );
            sleep(Duration::from_millis(2)).await;
        }
        assert!(
            output_dropped.get(),
            "the output of a finished detached task was not dropped"
        );
    });
}

/// Dropping the `JoinHandle` of a task that already finished drops the
/// unread output right away.
#[test]
fn dropping_the_handle_of_a_finished_task_drops_its_output() {
    on_runtime(LIMIT, || async {
        let output_dropped = Rc::new(Cell::new(false));
        let handle = {
            let output_dropped = output_dropped.clone();
            spawn(async move { SetOnDrop(output_dropped) })
        };
        yield_until("task finished", 1000, || handle.is_finished()).await;
        assert!(
            !output_dropped.get(),
            "output dropped while the handle could still read it"
        );
        drop(handle);
        assert!(output_dropped.get(), "unread output leaked");
    });
}

/// Panics when dropped, after setting its flag.
struct PanicOnDrop(Rc<Cell<bool>>);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        self.0.set(true);
        panic!("PanicOnDrop dropped");
    }
}

/// The output of a detached task whose `Drop` panics is dropped by the
/// runtime, which swallows the panic (the task is over; nobody can be told)
/// and carries on: the panic does not come out of `block_on`, and the task
/// is let go of (no leak under LeakSanitizer).
#[test]
fn a_panic_dropping_a_detached_output_is_swallowed() {
    on_runtime(LIMIT, || async {
        let dropped = Rc::new(Cell::new(false));
        let handle = {
            let dropped = dropped.clone();
            spawn(async move {
                yield_now().await;
                PanicOnDrop(dropped)
            })
        };
        drop(handle);
        yield_until("output dropped", 1000, || dropped.get()).await;
        // The runtime still runs tasks.
        assert_eq!(spawn(async { 5 }).await.unwrap(), 5);
        assert_eq!(runtime::metrics().tasks_alive, 0);
    });
}

/// Sets its flag when dropped (a `Send` [`SetOnDrop`]).
struct FlagOnDrop(Arc<AtomicBool>);

impl Drop for FlagOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A waker that counts its wakes; `Arc::strong_count` of it tells how many
/// clones are still held (by a task's join waker slot, say).
struct CountingWake(AtomicUsize);

impl std::task::Wake for CountingWake {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A `JoinHandle` polled by two wakers in turn (as `select!` or a moved
/// future does) wakes only the last one when the task finishes, and keeps
/// no clone of the first.
#[test]
fn join_handle_wakes_the_waker_of_its_last_poll() {
    on_runtime(LIMIT, || async {
        let go = Rc::new(Cell::new(false));
        let mut handle = {
            let go = go.clone();
            spawn(async move {
                yield_until("go", 10_000, || go.get()).await;
                7
            })
        };
        let first = Arc::new(CountingWake(AtomicUsize::new(0)));
        let second = Arc::new(CountingWake(AtomicUsize::new(0)));
        for w in [&first, &second] {
            let waker = Waker::from(w.clone());
            let polled = Pin::new(&mut handle).poll(&mut Context::from_waker(&waker));
            assert!(polled.is_pending());
        }
        assert_eq!(
            Arc::strong_count(&first),
            1,
            "the replaced waker is still held"
        );
        assert_eq!(Arc::strong_count(&second), 2);
        go.set(true);
        yield_until("task finished", 10_000, || handle.is_finished()).await;
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        let waker = Waker::from(second.clone());
        let out = Pin::new(&mut handle).poll(&mut Context::from_waker(&waker));
        assert!(matches!(out, Poll::Ready(Ok(7))));
        drop(waker);
        drop(handle);
        assert_eq!(Arc::strong_count(&second), 1, "the join waker leaked");
    });
}

/// The waker a dropped `JoinHandle` left in its task is released when the
/// task finishes, and the one of a handle kept past a runtime's shutdown
/// (which cancels the task and wakes it) when that handle is dropped:
/// two tasks awaiting each other's handles hold no cycle past shutdown.
#[test]
fn join_wakers_are_released_when_the_task_or_the_runtime_ends() {
    with_deadline(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let dropped = Arc::new(CountingWake(AtomicUsize::new(0)));
        let kept = Arc::new(CountingWake(AtomicUsize::new(0)));
        let (finishing, mut pending) = rt.block_on(async {
            let mut finishing = spawn(async { yield_now().await });
            let mut pending = spawn(std::future::pending::<()>());
            let waker = Waker::from(dropped.clone());
            assert!(Pin::new(&mut finishing)
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
            let waker = Waker::from(kept.clone());
            assert!(Pin::new(&mut pending)
                .poll(&mut Context::from_waker(&waker))
                .is_pending());
            (finishing, pending)
        });
        assert_eq!(Arc::strong_count(&dropped), 2);
        drop(finishing);
        // The detached task finishes in the next block_on.
        rt.block_on(async {
            for _ in 0..10 {
                yield_now().await;
            }
        });
        assert_eq!(
            Arc::strong_count(&dropped),
            1,
            "a detached task kept its join waker"
        );
        assert_eq!(dropped.0.load(Ordering::SeqCst), 0);

        // Two tasks, each awaiting the other's handle.
        let (a_dropped, b_dropped) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        rt.block_on(async {
            let (tx, rx) = std::sync::mpsc::channel::<JoinHandle<()>>();
            let a = {
                let a_dropped = a_dropped.clone();
                spawn(async move {
                    let _flag = FlagOnDrop(a_dropped);
                    yield_now().await;
                    let b = rx.recv().unwrap();
                    let _ = b.await;
                })
            };
            let b = {
                let b_dropped = b_dropped.clone();
                spawn(async move {
                    let _flag = FlagOnDrop(b_dropped);
                    let _ = a.await;
                })
            };
            tx.send(b).unwrap();
            for _ in 0..10 {
                yield_now().await;
            }
        });
        assert!(!a_dropped.load(Ordering::SeqCst) && !b_dropped.load(Ordering::SeqCst));

        drop(rt);
        assert!(a_dropped.load(Ordering::SeqCst) && b_dropped.load(Ordering::SeqCst));
        assert_eq!(
            kept.0.load(Ordering::SeqCst),
            1,
            "shutdown did not wake the handle"
        );
        let waker = Waker::from(kept.clone());
        match Pin::new(&mut pending).poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(Err(e)) => assert!(e.is_cancelled()),
            other => panic!(
                "expected a cancelled JoinError, got {:?}",
                other.map(|r| r.is_ok())
            ),
        }
        drop(waker);
        drop(pending);
        assert_eq!(Arc::strong_count(&kept), 1, "the join waker leaked");
    });
}

// ---------------------------------------------------------------------------
// wakes from other threads
// ---------------------------------------------------------------------------

/// State shared between a future and the thread that completes it.
#[derive(Default)]
struct Remote {
    fired: bool,
    waker: Option<Waker>,
}

/// Pending until another thread sets `fired` (and wakes the stored waker).
/// Signals through `first_poll` when it first stored its waker.
struct WaitForRemote {
    remote: Arc<Mutex<Remote>>,
    first_poll: Option<mpsc::Sender<()>>,
    polls: usize,
}

impl Future for WaitForRemote {
    type Output = usize;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        self.polls += 1;
        let polls = self.polls;
        {
            let mut r = self.remote.lock().unwrap();
            if r.fired {
                return Poll::Ready(polls);
            }
            r.waker = Some(cx.waker().clone());
        }
        if let Some(tx) = self.first_poll.take() {
            tx.send(()).unwrap();
        }
        Poll::Pending
    }
}

/// Starts a thread that waits until the future was first polled, then
/// waits 50 ms more (by then the ring, with nothing else to do, is parked in
/// `io_uring_enter`; if it is not, the test still holds), then sets the flag
/// and wakes the stored waker. Returns the future and the thread.
fn remote_completion() -> (WaitForRemote, thread::JoinHandle<()>) {
    let remote = Arc::new(Mutex::new(Remote::default()));
    let (tx, rx) = mpsc::channel();
    let thread_remote = remote.clone();
    let thread = thread::spawn(move || {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("the future was never polled");
        thread::sleep(Duration::from_millis(50));
        let waker = {
            let mut r = thread_remote.lock().unwrap();
            r.fired = true;
            r.waker.take().expect("no waker stored")
        };
        waker.wake();
    });
    (
        WaitForRemote {
            remote,
            first_poll: Some(tx),
            polls: 0,
        },
        thread,
    )
}

/// `block_on`'s own future, pending with nothing else on the runtime, is
/// woken by a `wake()` from another thread while the ring is parked: the
/// wake must reach the ring (eventfd) or the test hangs until its deadline.
/// Exactly two polls: the first, and the one after the remote wake.
#[test]
fn cross_thread_wake_of_block_on_future_reaches_parked_ring() {
    with_deadline(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let (fut, thread) = remote_completion();
        let polls = rt.block_on(fut);
        assert_eq!(polls, 2, "the future was polled without being woken");
        thread.join().unwrap();
    });
}

/// The same for a spawned task: its waker, called on another thread while
/// the ring is parked (block_on's future waits on the task's handle, so
/// nothing else can make progress), queues the task remotely and wakes the
/// ring.
#[test]
fn cross_thread_wake_of_spawned_task_reaches_parked_ring() {
    let polls = on_runtime(LIMIT, || async {
        let (fut, thread) = remote_completion();
        let polls = spawn(fut).await.expect("task failed");
        thread.join().unwrap();
        polls
    });
    assert_eq!(polls, 2);
}

/// A `spawn_blocking` job finishing on its pool thread wakes the parked
/// ring: the runtime has nothing else to do while the job sleeps 50 ms.
#[test]
fn spawn_blocking_completion_wakes_parked_ring() {
    #[runtime::test]
    async fn body() {
        let start = Instant::now();
        let v = spawn_blocking(|| {
            thread::sleep(Duration::from_millis(50));
            thread::current().id()
        })
        .await
        .expect("blocking job failed");
        assert_ne!(
            v,
            thread::current().id(),
            "the job ran on the runtime thread"
        );
        assert!(start.elapsed() >= Duration::from_millis(50));
    }
    with_deadline(LIMIT, body);
}

/// Wakers are `Send + Sync`: a clone of a task's waker woken (by reference,
/// several times) from several threads at once makes the task run again,
/// and an outstanding waker dropped on another thread after the task ended
/// is harmless.
#[test]
fn waker_clones_woken_from_many_threads() {
    on_runtime(LIMIT, || async {
        let go = Arc::new(AtomicBool::new(false));
        let waker_slot: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
        let task = {
            let go = go.clone();
            let waker_slot = waker_slot.clone();
            spawn(poll_fn(move |cx| {
                if go.load(Ordering::SeqCst) {
                    return Poll::Ready(());
                }
                *waker_slot.lock().unwrap() = Some(cx.waker().clone());
                Poll::Pending
            }))
        };
        yield_until("task stored its waker", 1000, || {
            waker_slot.lock().unwrap().is_some()
        })
        .await;
        let waker = waker_slot.lock().unwrap().clone().unwrap();
        go.store(true, Ordering::SeqCst);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let w = waker.clone();
                thread::spawn(move || {
                    for _ in 0..100 {
                        w.wake_by_ref();
                    }
                    w.wake();
                })
            })
            .collect();
        task.await.unwrap();
        for t in threads {
            t.join().unwrap();
        }
        // Dropped on another thread after the task completed.
        thread::spawn(move || drop(waker)).join().unwrap();
        drop(waker_slot);
    });
}

// ---------------------------------------------------------------------------
// fairness: a task that never stops yielding
// ---------------------------------------------------------------------------

/// Spawns a task that yields forever, counting its polls, until `stop` is
/// set.
fn spawn_yielder(stop: Rc<Cell<bool>>, polls: Rc<Cell<u64>>) -> JoinHandle<()> {
    spawn(async move {
        while !stop.get() {
            polls.set(polls.get() + 1);
            yield_now().await;
        }
    })
}

/// A task yielding in a loop forever does not starve timers: a 20 ms sleep
/// in `block_on`'s own future still fires (after at least 20 ms), a
/// `spawn_blocking` completion (a wake from another thread) still gets
/// through, and the yielder really was running all along (it is stopped
/// with a flag).
#[test]
fn yield_forever_does_not_starve_block_on_sleep() {
    with_deadline(LIMIT, || {
        let rt = Runtime::new().unwrap();
        rt.block_on(async {
            let stop = Rc::new(Cell::new(false));
            let polls = Rc::new(Cell::new(0u64));
            let yielder = spawn_yielder(stop.clone(), polls.clone());

            let start = Instant::now();
            sleep(Duration::from_millis(20)).await;
            assert!(start.elapsed() >= Duration::from_millis(20));
            assert!(polls.get() > 0, "the yielder never ran");

            let v = spawn_blocking(|| 99).await.unwrap();
            assert_eq!(v, 99);

            assert!(!yielder.is_finished(), "the yielder stopped by itself");
            stop.set(true);
            yielder.await.unwrap();
        });
    });
}

/// A task yielding forever does not starve another spawned task's sleep:
/// the sleeper finishes while the yielder is still going; the yielder is
/// then stopped with `abort`.
#[test]
fn yield_forever_does_not_starve_spawned_sleep() {
    #[runtime::test]
    async fn body() {
        let stop = Rc::new(Cell::new(false));
        let polls = Rc::new(Cell::new(0u64));
        let yielder = spawn_yielder(stop.clone(), polls.clone());
        let sleeper = spawn(async {
            let start = Instant::now();
            sleep(Duration::from_millis(20)).await;
            start.elapsed()
        });
        let slept = sleeper.await.unwrap();
        assert!(slept >= Duration::from_millis(20));
        assert!(polls.get() > 0, "the yielder never ran");
        assert!(!yielder.is_finished());
        yielder.abort();
        let err = yielder.await.expect_err("the endless yielder finished");
        assert!(err.is_cancelled());
        assert!(!stop.get());
    }
    with_deadline(LIMIT, body);
}

/// Two yielders share the thread with a sleeping task, with the smallest
/// possible budget (`event_interval(1)`): the sleep still fires.
#[test]
fn yielders_with_budget_one_do_not_starve_timers() {
    with_deadline(LIMIT, || {
        let rt = Runtime::builder().event_interval(1).build().unwrap();
        rt.block_on(async {
            let stop = Rc::new(Cell::new(false));
            let a = spawn_yielder(stop.clone(), Rc::new(Cell::new(0)));
            let b = spawn_yielder(stop.clone(), Rc::new(Cell::new(0)));
            let start = Instant::now();
            spawn(sleep(Duration::from_millis(20))).await.unwrap();
            assert!(start.elapsed() >= Duration::from_millis(20));
            stop.set(true);
            a.await.unwrap();
            b.await.unwrap();
        });
    });
}

/// A task that wakes itself on every poll (`wake_by_ref` then `Pending`,
/// never going through `yield_now`) is always ready, so only the per-tick
/// budget lets timers fire: a 20 ms sleep in `block_on`'s future and one in
/// a spawned task still complete next to it, and the spinner really ran.
#[test]
fn self_waking_task_does_not_starve_timers() {
    on_runtime(LIMIT, || async {
        let stop = Rc::new(Cell::new(false));
        let polls = Rc::new(Cell::new(0u64));
        let spinner = {
            let (stop, polls) = (stop.clone(), polls.clone());
            spawn(poll_fn(move |cx| {
                if stop.get() {
                    return Poll::Ready(());
                }
                polls.set(polls.get() + 1);
                cx.waker().wake_by_ref();
                Poll::Pending
            }))
        };
        let start = Instant::now();
        let sleeper = spawn(sleep(Duration::from_millis(20)));
        sleep(Duration::from_millis(20)).await;
        sleeper.await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert!(polls.get() > 0, "the spinner never ran");
        assert!(!spinner.is_finished());
        stop.set(true);
        spinner.await.unwrap();
    });
}

/// `yield_now` looks at the ring before the yielding task continues: a
/// timer that became due while a spawned task was busy has fired, and its
/// task has run, by the time `yield_now` returns in that spawned task.
#[test]
fn yield_now_fires_due_timers_before_continuing() {
    on_runtime(LIMIT, || async {
        let worker = spawn(async {
            let fired = Rc::new(Cell::new(false));
            let sleeper = {
                let fired = fired.clone();
                spawn(async move {
                    sleep(Duration::from_millis(1)).await;
                    fired.set(true);
                })
            };
            // Every other ready task runs first: the sleeper registers its
            // timer. (On a slow machine the timer may even fire now; the
            // check below then holds trivially.)
            yield_now().await;
            // Busy (blocking the thread) until the timer is surely due.
            thread::sleep(Duration::from_millis(10));
            yield_now().await;
            assert!(
                fired.get(),
                "yield_now returned before the due timer fired and its task ran"
            );
            sleeper.await.unwrap();
        });
        worker.await.unwrap();
    });
}

/// A task's waker that outlives its runtime is harmless: woken (and
/// dropped) from another thread after the runtime was dropped, it neither
/// crashes nor resurrects the task; an `abort` on the stale handle is a
/// no-op too.
#[test]
#[allow(clippy::async_yields_async)] // the block returns the JoinHandle on purpose
fn waker_outliving_its_runtime_is_harmless() {
    with_deadline(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let slot: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
        let polls = Rc::new(Cell::new(0u32));
        let handle = {
            let (slot, polls) = (slot.clone(), polls.clone());
            rt.block_on(async move {
                let handle = spawn(poll_fn(move |cx| {
                    polls.set(polls.get() + 1);
                    *slot.lock().unwrap() = Some(cx.waker().clone());
                    Poll::<()>::Pending
                }));
                yield_now().await;
                handle
            })
        };
        assert_eq!(polls.get(), 1);
        drop(rt);
        let waker = slot.lock().unwrap().take().expect("no waker stored");
        let other = waker.clone();
        thread::spawn(move || {
            waker.wake_by_ref();
            waker.wake();
        })
        .join()
        .unwrap();
        other.wake_by_ref(); // on this thread, no runtime running
        drop(other);
        handle.abort();
        assert!(handle.is_finished());
        assert_eq!(
            polls.get(),
            1,
            "a task was polled after its runtime was dropped"
        );
    });
}

/// "Inside a runtime" is per thread: a `spawn_blocking` closure runs on a
/// pool thread, where `runtime::block_on` (a fresh default runtime) is
/// allowed and works, timers and spawns included.
#[test]
fn block_on_in_a_blocking_thread_is_allowed() {
    let v = on_runtime(LIMIT, || async {
        spawn_blocking(|| {
            runtime::block_on(async {
                sleep(Duration::from_millis(1)).await;
                spawn(async { 20 }).await.unwrap() + 1
            })
        })
        .await
        .unwrap()
    });
    assert_eq!(v, 21);
}

/// The free function `runtime::block_on` runs a future, with spawned tasks,
/// on a fresh default runtime, and leaves the thread outside any runtime.
#[test]
fn free_block_on_runs_a_fresh_runtime() {
    with_deadline(LIMIT, || {
        let v = runtime::block_on(async {
            let h = spawn(async {
                yield_now().await;
                6
            });
            h.await.unwrap() * 7
        });
        assert_eq!(v, 42);
        assert!(catch_unwind(|| drop(spawn(async {}))).is_err());
        // Twice in a row on the same thread.
        assert_eq!(runtime::block_on(async { 1 }), 1);
    });
}

// ---------------------------------------------------------------------------
// misuse: outside a runtime, nested block_on
// ---------------------------------------------------------------------------

/// Asserts that `f` panics with a message containing every one of `needles`.
fn assert_panics_with<R>(what: &str, needles: &[&str], f: impl FnOnce() -> R) {
    let payload = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("{what}: did not panic"),
        Err(p) => p,
    };
    let text = panic_text(&*payload);
    for needle in needles {
        assert!(
            text.contains(needle),
            "{what}: panic message {text:?} does not contain {needle:?}"
        );
    }
}

/// `spawn` and `spawn_blocking` outside a runtime panic with a message that
/// names the function and says what to do (run inside `#[runtime::main]`,
/// `#[runtime::test]` or `Runtime::block_on`). A runtime that exists but is
/// not running on this thread does not count.
#[test]
fn spawn_outside_a_runtime_panics_with_advice() {
    with_deadline(LIMIT, || {
        let advice = ["inside a runtime", "block_on"];
        assert_panics_with("spawn", &advice, || drop(spawn(async { 1 })));
        assert_panics_with("spawn_blocking", &advice, || drop(spawn_blocking(|| 1)));
        assert_panics_with("spawn message names it", &["runtime::spawn"], || {
            drop(spawn(async {}))
        });

        let rt = Runtime::new().unwrap();
        assert_panics_with("spawn next to an idle runtime", &advice, || {
            drop(spawn(async {}))
        });
        // And inside block_on it works.
        assert_eq!(rt.block_on(async { spawn(async { 3 }).await.unwrap() }), 3);
        // After block_on returned, outside again.
        assert_panics_with("spawn after block_on", &advice, || drop(spawn(async {})));
    });
}

/// `block_on` inside a runtime (the free function, the same runtime's
/// method, another runtime's method) panics with a clear message, which
/// async code can catch; the outer runtime carries on.
#[test]
fn block_on_inside_a_runtime_panics() {
    with_deadline(LIMIT, || {
        let rt = Rc::new(Runtime::new().unwrap());
        let other = Runtime::new().unwrap();
        let inner_rt = rt.clone();
        let out = rt.block_on(async move {
            let needles = ["cannot block_on inside a runtime"];
            assert_panics_with("runtime::block_on", &needles, || {
                runtime::block_on(async { 1 })
            });
            assert_panics_with("same Runtime::block_on", &needles, || {
                inner_rt.block_on(async { 1 })
            });
            assert_panics_with("other Runtime::block_on", &needles, || {
                other.block_on(async { 1 })
            });
            // Still running fine.
            spawn(async {
                sleep(Duration::from_millis(1)).await;
                8
            })
            .await
            .unwrap()
        });
        assert_eq!(out, 8);
    });
}

// ---------------------------------------------------------------------------
// spawn_blocking
// ---------------------------------------------------------------------------

/// `spawn_blocking` returns the closure's result, computed on another
/// thread, and a closure that panics gives a `JoinError` with `is_panic()`
/// and the payload; the runtime carries on.
#[test]
fn spawn_blocking_result_and_panic() {
    #[runtime::test]
    async fn body() {
        let v = spawn_blocking(|| (1..=10u64).product::<u64>())
            .await
            .unwrap();
        assert_eq!(v, 3_628_800);

        let err = spawn_blocking(|| -> u8 { panic!("blocking boom") })
            .await
            .expect_err("a panicking closure gave an output");
        assert!(err.is_panic(), "expected is_panic, got {err:?}");
        assert!(!err.is_cancelled());
        assert_eq!(panic_text(&*err.into_panic()), "blocking boom");

        // The pool survives a panicking job.
        assert_eq!(spawn_blocking(|| "still here").await.unwrap(), "still here");
    }
    with_deadline(LIMIT, body);
}

/// 64 blocking jobs on a pool bounded to 2 threads all complete, with their
/// own results, and never more than 2 run at once.
#[test]
fn spawn_blocking_pool_is_bounded() {
    with_deadline(LIMIT, || {
        let rt = Runtime::builder().max_blocking_threads(2).build().unwrap();
        let active = Arc::new(AtomicUsize::new(0));
        let max_active = Arc::new(AtomicUsize::new(0));
        let (a, m) = (active.clone(), max_active.clone());
        let results = rt.block_on(async move {
            let handles: Vec<_> = (0..64usize)
                .map(|i| {
                    let (a, m) = (a.clone(), m.clone());
                    spawn_blocking(move || {
                        let now = a.fetch_add(1, Ordering::SeqCst) + 1;
                        m.fetch_max(now, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(2));
                        a.fetch_sub(1, Ordering::SeqCst);
                        i * 3
                    })
                })
                .collect();
            let mut results = Vec::new();
            for h in handles {
                results.push(h.await.expect("blocking job failed"));
            }
            results
        });
        assert_eq!(results, (0..64).map(|i| i * 3).collect::<Vec<_>>());
        let max = max_active.load(Ordering::SeqCst);
        assert!(max >= 1);
        assert!(
            max <= 2,
            "{max} blocking jobs ran at once with max_blocking_threads(2)"
        );
        assert_eq!(active.load(Ordering::SeqCst), 0);
    });
}

/// Aborting a `spawn_blocking` handle gives a cancelled `JoinError` but the
/// closure, once started, still runs to its end.
#[test]
fn aborted_spawn_blocking_closure_still_runs() {
    on_runtime(LIMIT, || async {
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let finished = Arc::new(AtomicBool::new(false));
        let f = finished.clone();
        let handle = spawn_blocking(move || {
            started_tx.send(()).unwrap();
            release_rx.recv_timeout(Duration::from_secs(20)).unwrap();
            f.store(true, Ordering::SeqCst);
        });
        // Wait (off the runtime thread) until the closure has started.
        let started = spawn_blocking(move || started_rx.recv_timeout(Duration::from_secs(20)));
        started.await.unwrap().expect("closure never started");
        handle.abort();
        let err = handle.await.expect_err("aborted handle gave an output");
        assert!(err.is_cancelled());
        release_tx.send(()).unwrap();
        let start = Instant::now();
        while !finished.load(Ordering::SeqCst) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "closure never finished"
            );
            sleep(Duration::from_millis(1)).await;
        }
    });
}

// ---------------------------------------------------------------------------
// is_finished, yield_now
// ---------------------------------------------------------------------------

/// `yield_now` lets another ready task run before the caller continues, and
/// `is_finished` is false before a task ran and true after it returned
/// (before the handle is awaited), then the handle still gives the output.
#[test]
fn yield_now_runs_others_and_is_finished_tracks_completion() {
    #[runtime::test]
    async fn body() {
        let ran = Rc::new(Cell::new(false));
        let handle = {
            let ran = ran.clone();
            spawn(async move {
                ran.set(true);
                "out"
            })
        };
        // A spawned task starts at the next tick, not inside spawn.
        assert!(!ran.get(), "spawn ran the task synchronously");
        assert!(!handle.is_finished());
        yield_now().await;
        assert!(ran.get(), "yield_now did not let the ready task run");
        assert!(
            handle.is_finished(),
            "is_finished false after the task returned"
        );
        assert_eq!(handle.await.unwrap(), "out");
    }
    with_deadline(LIMIT, body);
}

/// Two tasks that yield to each other alternate: each `yield_now` lets the
/// other make one step (a strict interleaving with the FIFO run queue).
#[test]
fn yield_now_interleaves_two_tasks() {
    on_runtime(LIMIT, || async {
        let log = Rc::new(RefCell::new(Vec::new()));
        let mk = |name: char| {
            let log = log.clone();
            spawn(async move {
                for _ in 0..3 {
                    log.borrow_mut().push(name);
                    yield_now().await;
                }
            })
        };
        let a = mk('a');
        let b = mk('b');
        a.await.unwrap();
        b.await.unwrap();
        assert_eq!(*log.borrow(), vec!['a', 'b', 'a', 'b', 'a', 'b']);
    });
}

// ---------------------------------------------------------------------------
// shutdown
// ---------------------------------------------------------------------------

/// Tasks still running when `block_on` returns are not dropped then: they
/// stay on the runtime (they do not run between `block_on` calls, and run
/// again in the next one). When the runtime is dropped their futures are
/// dropped (drop guard), and their handles then report `is_finished()` and a
/// cancelled `JoinError`.
#[test]
fn tasks_left_running_are_dropped_with_the_runtime_not_before() {
    with_deadline(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let dropped = Rc::new(Cell::new(false));
        let ticks = Rc::new(Cell::new(0u32));
        let (sleeper, ticker) = {
            let (dropped, ticks) = (dropped.clone(), ticks.clone());
            rt.block_on(async move {
                let sleeper = spawn(async move {
                    let _guard = SetOnDrop(dropped);
                    sleep(Duration::from_secs(3600)).await;
                });
                let ticker = spawn(async move {
                    loop {
                        sleep(Duration::from_millis(1)).await;
                        ticks.set(ticks.get() + 1);
                    }
                });
                yield_now().await; // both tasks polled once
                (sleeper, ticker)
            })
        };
        assert!(
            !dropped.get(),
            "a pending task was dropped when block_on returned"
        );
        assert!(!sleeper.is_finished() && !ticker.is_finished());

        // Nothing runs between block_on calls.
        let before = ticks.get();
        thread::sleep(Duration::from_millis(20));
        assert_eq!(ticks.get(), before, "a task ran outside block_on");

        // The next block_on runs them again.
        let t = ticks.clone();
        rt.block_on(async move {
            let start = Instant::now();
            while t.get() <= before {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "ticker never resumed"
                );
                sleep(Duration::from_millis(2)).await;
            }
        });
        assert!(!dropped.get());

        drop(rt);
        assert!(
            dropped.get(),
            "dropping the runtime did not drop the pending task"
        );
        assert!(
            sleeper.is_finished(),
            "handle of a task dropped at shutdown not finished"
        );
        assert!(ticker.is_finished());

        // Awaiting the handles (on another runtime) gives cancellations.
        let rt2 = Runtime::new().unwrap();
        let (a, b) = rt2.block_on(async move { (sleeper.await, ticker.await) });
        assert!(a.expect_err("dropped task gave an output").is_cancelled());
        assert!(b.expect_err("dropped task gave an output").is_cancelled());
    });
}

/// A task whose future, while being dropped at shutdown, spawns another
/// task does not break shutdown: the task spawned during shutdown is never
/// polled, and its future (with what it captured) is dropped too.
#[test]
fn spawning_from_a_drop_during_shutdown_is_handled() {
    struct SpawnOnDrop {
        late_dropped: Rc<Cell<bool>>,
        late_ran: Rc<Cell<bool>>,
    }
    impl Drop for SpawnOnDrop {
        fn drop(&mut self) {
            let guard = SetOnDrop(self.late_dropped.clone());
            let ran = self.late_ran.clone();
            drop(spawn(async move {
                let _guard = guard;
                ran.set(true);
            }));
        }
    }
    with_deadline(LIMIT, || {
        let rt = Runtime::new().unwrap();
        let late_dropped = Rc::new(Cell::new(false));
        let late_ran = Rc::new(Cell::new(false));
        let s = SpawnOnDrop {
            late_dropped: late_dropped.clone(),
            late_ran: late_ran.clone(),
        };
        rt.block_on(async move {
            drop(spawn(async move {
                let _s = s;
                std::future::pending::<()>().await;
            }));
            yield_now().await;
        });
        assert!(!late_dropped.get());
        drop(rt);
        assert!(
            late_dropped.get(),
            "a task spawned during shutdown was leaked"
        );
        assert!(!late_ran.get(), "a task spawned during shutdown was polled");
    });
}

/// Each task is polled with a waker that `will_wake` itself and that, once
/// stored and woken from the same thread, puts the task back in the queue
/// exactly once even if woken several times before it runs.
#[test]
fn multiple_wakes_before_a_poll_run_the_task_once() {
    on_runtime(LIMIT, || async {
        let polls = Rc::new(Cell::new(0u32));
        let waker: Rc<RefCell<Option<Waker>>> = Rc::new(RefCell::new(None));
        let task = {
            let (polls, waker) = (polls.clone(), waker.clone());
            spawn(poll_fn(move |cx| {
                polls.set(polls.get() + 1);
                *waker.borrow_mut() = Some(cx.waker().clone());
                if polls.get() >= 2 {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }))
        };
        yield_until("task polled", 1000, || polls.get() == 1).await;
        let w = waker.borrow_mut().take().unwrap();
        for _ in 0..10 {
            w.wake_by_ref();
        }
        drop(w);
        task.await.unwrap();
        // Settle, then check no extra polls came from the repeated wakes.
        for _ in 0..5 {
            yield_now().await;
        }
        assert_eq!(polls.get(), 2);
    });
}

/// Polling a `JoinHandle` by hand: pending while the task runs, then ready.
#[test]
fn join_handle_poll_is_pending_until_done() {
    on_runtime(LIMIT, || async {
        let gate = Rc::new(Cell::new(false));
        let mut handle = {
            let gate = gate.clone();
            spawn(async move {
                while !gate.get() {
                    yield_now().await;
                }
                1u8
            })
        };
        assert!(poll_once(&mut handle).await.is_pending());
        yield_now().await;
        assert!(poll_once(&mut handle).await.is_pending());
        gate.set(true);
        assert_eq!(handle.await.unwrap(), 1);
    });
}
