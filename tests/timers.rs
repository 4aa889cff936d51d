//! Integration tests of `runtime::time`: `sleep`, `sleep_until`, `timeout`,
//! `Elapsed` and `interval`.
//!
//! Every test runs inside `with_deadline`, so a timer that never fires fails
//! the test instead of hanging CI. Time assertions are lower bounds only ("a
//! sleep lasted at least its duration"), or exact relations between
//! instants the runtime computes; nothing passes because it was fast.
//!
//! Some tests use `#[runtime::test]`: the attribute is put on an inner
//! `async fn` (which the test harness does not collect, being an inner item)
//! and the generated sync function, which builds a fresh runtime and blocks
//! on the body, is what the outer `#[test]` runs under the deadline.

// `#[runtime::test]` on inner `async fn`s, run under `with_deadline` by the
// outer `#[test]`; the harness rightly does not collect the inner ones.
#![allow(unnameable_test_items)]

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use integration_tests::{on_runtime, with_deadline};
use runtime::time::{interval, interval_at, sleep, sleep_until, timeout, Elapsed};
use runtime::{spawn, yield_now};

/// Generous limit for every test: only a hang gets near it.
const LIMIT: Duration = Duration::from_secs(30);

/// Polls `fut` exactly once, from inside the current task.
async fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>) -> Poll<F::Output> {
    let mut fut = Some(fut);
    poll_fn(|cx| Poll::Ready(fut.take().unwrap().poll(cx))).await
}

/// Sets its flag when dropped.
struct SetOnDrop(Rc<Cell<bool>>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// A small deterministic generator (xorshift64*), so that every run uses the
/// same "random" deadlines.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fisher-Yates shuffle.
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------
// ordering
// ---------------------------------------------------------------------------

/// 2,000 tasks sleep until distinct pseudo-random deadlines spread over
/// 200 ms (a shuffled permutation of 0, 100 µs, ..., 199.9 ms, after a common
/// base) and record their id when their sleep completes. Every sleep
/// completes, none before its deadline, and the timers fire in deadline
/// order: the ids recorded by sleeps that were really pending (their first
/// poll returned `Pending`, so only the timer could complete them) are
/// sorted by deadline. A sleep whose deadline had already passed at its
/// first poll completes at once, wherever its task happened to be in the
/// run queue, so it says nothing about timer order and is left out of that
/// check (with the 20 ms margin before the first deadline, there are
/// normally none).
#[test]
fn two_thousand_timers_fire_in_deadline_order() {
    timers_fire_in_deadline_order(Duration::ZERO);
}

/// The same with `Builder::timer_slack(1 ms)` (ten deadlines per
/// millisecond then share a wake-up): still none early, all fired, in
/// deadline order.
#[test]
fn two_thousand_timers_fire_in_deadline_order_with_a_timer_slack() {
    timers_fire_in_deadline_order(Duration::from_millis(1));
}

/// The timers of [`timers_fire_in_deadline_order`]: how many, and the step
/// between two deadlines.
const ORDER_N: usize = 2_000;
const ORDER_STEP: Duration = Duration::from_micros(100);

fn timers_fire_in_deadline_order(slack: Duration) {
    let mut offsets: Vec<u32> = (0..ORDER_N as u32).collect();
    Rng(0x9E37_79B9_7F4A_7C15).shuffle(&mut offsets);

    let shuffled = offsets.clone();
    let (fired, deadlines) = with_deadline(LIMIT, move || {
        let rt = runtime::Runtime::builder()
            .timer_slack(slack)
            .build()
            .expect("cannot start the runtime");
        rt.block_on(timers_in_order_body(shuffled))
    });
    check_deadline_order(&offsets, fired, deadlines);
}

/// The runtime side of [`timers_fire_in_deadline_order`]: (id, first poll
/// was pending) in completion order, and each id's deadline.
async fn timers_in_order_body(shuffled: Vec<u32>) -> (Vec<(usize, bool)>, Vec<Instant>) {
    {
        let fired: Rc<RefCell<Vec<(usize, bool)>>> = Rc::new(RefCell::new(Vec::new()));
        let base = Instant::now() + Duration::from_millis(20);
        let deadlines: Vec<Instant> = shuffled.iter().map(|&o| base + ORDER_STEP * o).collect();
        let handles: Vec<_> = (0..ORDER_N)
            .map(|id| {
                let fired = fired.clone();
                let deadline = deadlines[id];
                spawn(async move {
                    let mut sleep = pin!(sleep_until(deadline));
                    assert_eq!(sleep.deadline(), deadline);
                    let mut first = None;
                    poll_fn(|cx| {
                        let r = sleep.as_mut().poll(cx);
                        first.get_or_insert(r.is_pending());
                        r
                    })
                    .await;
                    let now = Instant::now();
                    assert!(
                        now >= deadline,
                        "timer {id} fired {:?} early",
                        deadline - now
                    );
                    fired.borrow_mut().push((id, first.unwrap()));
                })
            })
            .collect();
        for h in handles {
            h.await.expect("timer task failed");
        }
        let fired = Rc::try_unwrap(fired).unwrap().into_inner();
        (fired, deadlines)
    }
}

/// The checks of [`timers_fire_in_deadline_order`].
fn check_deadline_order(offsets: &[u32], fired: Vec<(usize, bool)>, deadlines: Vec<Instant>) {
    assert_eq!(fired.len(), ORDER_N, "not every timer fired");
    let mut seen = vec![false; ORDER_N];
    for &(id, _) in &fired {
        assert!(!seen[id], "timer {id} fired twice");
        seen[id] = true;
    }
    let registered: Vec<usize> = fired.iter().filter(|f| f.1).map(|f| f.0).collect();
    for pair in registered.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            deadlines[a] < deadlines[b],
            "timer {a} (deadline base + {:?}) fired after timer {b} (deadline base + {:?})",
            ORDER_STEP * offsets[a],
            ORDER_STEP * offsets[b],
        );
    }
}

/// A sleep lasts at least its duration (0, 1, 5 and 20 ms, one after the
/// other on a `#[runtime::test]` runtime).
#[test]
fn sleep_lasts_at_least_its_duration() {
    #[runtime::test]
    async fn body() {
        for ms in [0u64, 1, 5, 20] {
            let d = Duration::from_millis(ms);
            let start = Instant::now();
            sleep(d).await;
            assert!(
                start.elapsed() >= d,
                "sleep({d:?}) lasted {:?}",
                start.elapsed()
            );
        }
    }
    with_deadline(LIMIT, body);
}

/// A sleep starts when `sleep()` is called, not when it is first polled:
/// created, then the thread is blocked for longer than its duration, its
/// first poll completes it.
#[test]
fn sleep_starts_when_created_not_when_polled() {
    on_runtime(LIMIT, || async {
        let before = Instant::now();
        let mut s = pin!(sleep(Duration::from_millis(20)));
        assert!(s.deadline() >= before + Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(30));
        assert!(s.is_elapsed());
        assert!(poll_once(s.as_mut()).await.is_ready());
    });
}

// ---------------------------------------------------------------------------
// timeout
// ---------------------------------------------------------------------------

/// A 10 s sleep inside a 20 ms timeout gives `Err(Elapsed)` after at least
/// 20 ms; `Elapsed` displays a message saying the deadline elapsed and
/// converts to an `io::Error` of kind `TimedOut`; the inner future is
/// dropped once the timeout elapsed (its drop guard ran) and never finished.
#[test]
fn timeout_elapses_and_drops_the_inner_future() {
    #[runtime::test]
    async fn body() {
        let dropped = Rc::new(Cell::new(false));
        let finished = Rc::new(Cell::new(false));
        let guard = SetOnDrop(dropped.clone());
        let fin = finished.clone();
        let start = Instant::now();
        let res = timeout(Duration::from_millis(20), async move {
            let _guard = guard;
            sleep(Duration::from_secs(10)).await;
            fin.set(true);
            1
        })
        .await;
        let elapsed = start.elapsed();
        let err: Elapsed = res.expect_err("a 10 s sleep finished inside a 20 ms timeout");
        assert!(
            elapsed >= Duration::from_millis(20),
            "timed out after {elapsed:?}"
        );
        assert!(dropped.get(), "the inner future was not dropped on elapse");
        assert!(!finished.get());

        let text = err.to_string();
        assert!(text.contains("elapsed"), "Display of Elapsed: {text:?}");
        assert!(!format!("{err:?}").is_empty());
        let io: std::io::Error = err.into();
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
        let _: &dyn std::error::Error = &err;
    }
    with_deadline(LIMIT, body);
}

/// A future that finishes in time passes its output through as `Ok`:
/// immediately ready, after a short sleep, and after a few yields. A ready
/// inner future wins even with a zero timeout.
#[test]
fn timeout_passes_the_output_through() {
    on_runtime(LIMIT, || async {
        assert_eq!(timeout(Duration::from_secs(10), async { 5 }).await, Ok(5));
        let v = timeout(Duration::from_secs(10), async {
            sleep(Duration::from_millis(5)).await;
            "slept"
        })
        .await;
        assert_eq!(v, Ok("slept"));
        let v = timeout(Duration::from_secs(10), async {
            for _ in 0..3 {
                yield_now().await;
            }
            vec![1, 2]
        })
        .await;
        assert_eq!(v, Ok(vec![1, 2]));
        assert_eq!(timeout(Duration::ZERO, async { 7 }).await, Ok(7));
        // And a pending inner future with a zero timeout elapses.
        assert!(timeout(Duration::ZERO, std::future::pending::<()>())
            .await
            .is_err());
    });
}

/// A timeout around a spawned task's handle: the handle (and so the task)
/// is not affected by the timeout elapsing — the task is detached and
/// still finishes.
#[test]
fn timeout_around_join_handle_detaches_the_task() {
    on_runtime(LIMIT, || async {
        let done = Rc::new(Cell::new(false));
        let d = done.clone();
        let handle = spawn(async move {
            sleep(Duration::from_millis(40)).await;
            d.set(true);
        });
        assert!(timeout(Duration::from_millis(5), handle).await.is_err());
        assert!(!done.get());
        let start = Instant::now();
        while !done.get() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "detached task never finished"
            );
            sleep(Duration::from_millis(2)).await;
        }
    });
}

// ---------------------------------------------------------------------------
// extreme deadlines
// ---------------------------------------------------------------------------

/// `sleep_until` an instant in the past (or now) completes at its first
/// poll, without waiting; so does `sleep(Duration::ZERO)`.
#[test]
fn sleep_until_the_past_completes_immediately() {
    #[runtime::test]
    async fn body() {
        let now = Instant::now();
        let past = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        for deadline in [past, now] {
            let mut s = pin!(sleep_until(deadline));
            assert!(s.is_elapsed());
            assert!(
                poll_once(s.as_mut()).await.is_ready(),
                "sleep_until(past) was pending"
            );
        }
        let mut s = pin!(sleep(Duration::ZERO));
        assert!(poll_once(s.as_mut()).await.is_ready());
        // Awaited normally too.
        sleep_until(past).await;
    }
    with_deadline(LIMIT, body);
}

/// `sleep(Duration::MAX)` does not panic (the deadline saturates far in the
/// future), is pending, and can be cancelled by a timeout; `timeout` with
/// `Duration::MAX` does not panic either and passes outputs through.
#[test]
fn sleep_duration_max_does_not_panic_and_can_be_cancelled() {
    on_runtime(LIMIT, || async {
        let s = sleep(Duration::MAX);
        assert!(s.deadline() > Instant::now() + Duration::from_secs(365 * 86_400));
        assert!(!s.is_elapsed());
        let start = Instant::now();
        let res = timeout(Duration::from_millis(20), s).await;
        assert!(res.is_err(), "sleep(Duration::MAX) completed");
        assert!(start.elapsed() >= Duration::from_millis(20));

        assert_eq!(timeout(Duration::MAX, async { 3 }).await, Ok(3));
        let r = timeout(Duration::MAX, sleep(Duration::from_millis(2))).await;
        assert_eq!(r, Ok(()));

        // And a task asleep forever is abortable.
        let h = spawn(sleep(Duration::MAX));
        yield_now().await;
        h.abort();
        assert!(h.await.unwrap_err().is_cancelled());
    });
}

// ---------------------------------------------------------------------------
// interval
// ---------------------------------------------------------------------------

/// `interval(period)`: the first tick completes at its first poll and
/// returns (about) the creation instant; each later tick returns an instant
/// a positive whole number of periods after the previous one, is delivered
/// no earlier than that instant, and is exactly one period after the
/// previous one whenever the previous tick was collected in time (the only
/// case in which the documented skipping cannot apply).
#[test]
fn interval_ticks_are_a_period_apart() {
    #[runtime::test]
    async fn body() {
        let period = Duration::from_millis(20);
        let before = Instant::now();
        let mut iv = interval(period);
        assert_eq!(iv.period(), period);
        let first = poll_fn(|cx| Poll::Ready(iv.poll_tick(cx))).await;
        let Poll::Ready(t0) = first else {
            panic!("the first tick of an interval was not immediate");
        };
        let seen0 = Instant::now();
        assert!(
            t0 >= before && t0 <= seen0,
            "first tick not at creation time"
        );

        let (mut prev, mut prev_seen) = (t0, seen0);
        for n in 1..=5 {
            let t = iv.tick().await;
            let seen = Instant::now();
            assert!(t > prev, "tick {n} did not move forward");
            let gap = t - prev;
            assert!(
                gap >= period,
                "tick {n} only {gap:?} after the previous one"
            );
            assert_eq!(
                gap.as_nanos() % period.as_nanos(),
                0,
                "tick {n}: gap {gap:?} is not a whole number of periods"
            );
            assert!(seen >= t, "tick {n} delivered before its instant");
            assert!(seen - prev >= period);
            if prev_seen < prev + period {
                // The previous tick was taken before the next was due: no
                // tick can have been missed.
                assert_eq!(gap, period, "tick {n} skipped although nothing was missed");
            }
            prev = t;
            prev_seen = seen;
        }
        assert!(Instant::now() - t0 >= period * 5);
    }
    with_deadline(LIMIT, body);
}

/// When the task is busy for several periods, missed ticks are skipped, not
/// delivered in a burst: after blocking for 3.5 periods, at most one tick
/// scheduled before the end of the busy spell is delivered, the next one is
/// after it, and every tick stays on the period grid of the start.
#[test]
fn interval_skips_missed_ticks() {
    on_runtime(LIMIT, || async {
        let period = Duration::from_millis(10);
        let start = Instant::now();
        let mut iv = interval_at(start, period);
        assert_eq!(iv.tick().await, start);
        std::thread::sleep(period * 7 / 2); // the runtime is blocked
        let busy_end = Instant::now();

        let mut late = 0;
        let mut last = start;
        loop {
            let t = iv.tick().await;
            assert!(t > last);
            assert_eq!(
                (t - start).as_nanos() % period.as_nanos(),
                0,
                "tick off the period grid"
            );
            last = t;
            if t < busy_end {
                late += 1;
                assert!(late <= 1, "missed ticks were delivered in a burst");
            } else {
                break;
            }
        }
        assert!(last >= busy_end);
        assert!(Instant::now() >= last);
    });
}

/// `interval_at` a future instant: the first tick waits for it; `reset`
/// makes the next tick one period from now.
#[test]
fn interval_at_and_reset() {
    on_runtime(LIMIT, || async {
        let period = Duration::from_millis(10);
        let start = Instant::now() + Duration::from_millis(15);
        let mut iv = interval_at(start, period);
        assert_eq!(iv.tick().await, start);
        assert!(Instant::now() >= start);

        let before_reset = Instant::now();
        iv.reset();
        let t = iv.tick().await;
        assert!(
            t >= before_reset + period,
            "reset did not push the next tick a period out"
        );
        assert!(Instant::now() >= t);
    });
}

/// A zero period is refused with a clear panic.
#[test]
fn interval_with_zero_period_panics() {
    with_deadline(LIMIT, || {
        let err = catch_unwind(|| interval(Duration::ZERO)).expect_err("zero period accepted");
        let text = err
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| err.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(text.contains("non-zero"), "panic message: {text:?}");
    });
}

// ---------------------------------------------------------------------------
// many timers
// ---------------------------------------------------------------------------

/// 100,000 concurrent sleeps of 1 to 50 ms, each in its own task, all
/// complete, each after at least its own duration.
#[test]
fn hundred_thousand_concurrent_sleeps_complete() {
    const N: u64 = 100_000;
    let completed = on_runtime(LIMIT, || async {
        let completed = Rc::new(Cell::new(0u64));
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let completed = completed.clone();
                let d = Duration::from_millis(1 + (i * 7919) % 50);
                spawn(async move {
                    let start = Instant::now();
                    sleep(d).await;
                    let took = start.elapsed();
                    assert!(took >= d, "sleep {i} of {d:?} took {took:?}");
                    completed.set(completed.get() + 1);
                    i
                })
            })
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await.expect("sleeping task failed");
        }
        assert_eq!(sum, N * (N - 1) / 2);
        completed.get()
    });
    assert_eq!(completed, N);
}

/// Counts the polls of a future.
struct CountPolls<F> {
    inner: Pin<Box<F>>,
    polls: Rc<Cell<u32>>,
}

impl<F: Future> Future for CountPolls<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.set(self.polls.get() + 1);
        self.inner.as_mut().poll(cx)
    }
}

/// A dropped `Sleep` is unregistered. The task first registers 10,000
/// sleeps of 50 ms with its own waker and drops them, then runs 10,000
/// timeouts of 50 ms whose inner future wins after one yield (so each
/// timeout's sleep was registered, then dropped). Then a 150 ms probe sleep
/// in the same task is polled exactly twice: once to register and once when
/// its own timer fires. A dropped timer left behind would fire at 50 ms and
/// wake the task for a third poll. The probe still lasts at least 150 ms,
/// and afterwards a short sleep works as usual.
#[test]
fn dropped_sleeps_are_unregistered() {
    on_runtime(LIMIT, || async {
        for _ in 0..10_000 {
            let mut s = Box::pin(sleep(Duration::from_millis(50)));
            let _ = poll_once(s.as_mut()).await;
            drop(s);
        }
        for i in 0..10_000u32 {
            let r = timeout(Duration::from_millis(50), async move {
                yield_now().await;
                i
            })
            .await;
            assert_eq!(r, Ok(i));
        }

        let polls = Rc::new(Cell::new(0));
        let start = Instant::now();
        CountPolls {
            inner: Box::pin(sleep(Duration::from_millis(150))),
            polls: polls.clone(),
        }
        .await;
        assert!(start.elapsed() >= Duration::from_millis(150));
        assert_eq!(
            polls.get(),
            2,
            "the task was woken by timers of sleeps that had been dropped"
        );

        let start = Instant::now();
        sleep(Duration::from_millis(5)).await;
        assert!(start.elapsed() >= Duration::from_millis(5));
    });
}

/// `Sleep::reset` moves the deadline of a registered sleep: the old
/// deadline no longer wakes the task (exactly two polls for the waiting
/// part), and the sleep completes at the new deadline.
#[test]
fn reset_moves_a_registered_sleep() {
    on_runtime(LIMIT, || async {
        let mut s = Box::pin(sleep(Duration::from_millis(10)));
        // Registers the 10 ms timer (unless 10 ms already passed on a very
        // slow machine, in which case the test below still holds).
        let _ = poll_once(s.as_mut()).await;
        let new_deadline = Instant::now() + Duration::from_millis(60);
        s.as_mut().get_mut().reset(new_deadline);
        assert_eq!(s.deadline(), new_deadline);
        let polls = Rc::new(Cell::new(0));
        CountPolls {
            inner: s,
            polls: polls.clone(),
        }
        .await;
        assert!(Instant::now() >= new_deadline);
        assert_eq!(polls.get(), 2, "the old deadline still woke the task");
    });
}

/// Polling a `Sleep` that is not yet due outside any runtime panics with a
/// message that says it must be inside a runtime.
#[test]
fn sleep_polled_outside_a_runtime_panics() {
    with_deadline(LIMIT, || {
        let mut s = Box::pin(sleep(Duration::from_secs(5)));
        let mut cx = Context::from_waker(Waker::noop());
        let err = catch_unwind(AssertUnwindSafe(|| s.as_mut().poll(&mut cx)))
            .expect_err("a Sleep polled outside a runtime did not panic");
        let text = err
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| err.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(text.contains("inside a runtime"), "panic message: {text:?}");
    });
}

/// Timers from many tasks interleave with other work: a task that sleeps in
/// a loop ten times sees each sleep last at least its duration, while
/// another task keeps yielding.
#[test]
fn repeated_sleeps_next_to_a_busy_task() {
    on_runtime(LIMIT, || async {
        let stop = Rc::new(Cell::new(false));
        let busy = {
            let stop = stop.clone();
            spawn(async move {
                while !stop.get() {
                    yield_now().await;
                }
            })
        };
        for _ in 0..10 {
            let start = Instant::now();
            sleep(Duration::from_millis(3)).await;
            assert!(start.elapsed() >= Duration::from_millis(3));
        }
        stop.set(true);
        busy.await.unwrap();
    });
}
