//! Time: sleeps, timeouts and intervals.
//!
//! Timers live in a min-heap of deadlines owned by the runtime. The
//! ring is never given one kernel timeout per timer: when the runtime has
//! nothing to run it waits in `io_uring_enter` (or `epoll_pwait2`) with the
//! earliest deadline as the wait's timeout, and each turn wakes every timer
//! whose deadline has passed. A hundred thousand sleeps therefore cost a
//! hundred thousand heap entries and no extra system calls.
//!
//! Precision. A timer never fires before its deadline. By default it fires
//! at it, give or take the kernel's wake-up latency: an idle runtime wakes
//! for every distinct deadline, which for many timers spread thinly in
//! time costs a wake-up each. With
//! [`Builder::timer_slack`](crate::Builder::timer_slack) the idle waits
//! end on multiples of the slack instead, so a timer fires up to that much
//! late and timers within one slack of each other share a wake-up (the
//! trade-off tokio's and monoio's timer wheels make at a fixed 1 ms).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::scheduler::{expect_current, Core};

pub(crate) mod timers;

use timers::TimerKey;

/// Waits until `duration` has elapsed.
///
/// The sleep starts when this is called, not when it is first polled. A
/// `Sleep` must be polled inside a runtime.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(far_add(Instant::now(), duration))
}

/// Waits until `deadline`. A deadline in the past completes at the first
/// poll.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        registered: None,
    }
}

/// `now + d`, saturating at about thirty years from now.
fn far_add(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

/// The future of [`sleep`] and [`sleep_until`].
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Sleep {
    deadline: Instant,
    registered: Option<(Rc<Core>, TimerKey)>,
}

impl Sleep {
    /// The instant this sleep completes at.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Moves the deadline; the sleep can be awaited again afterwards.
    pub fn reset(&mut self, deadline: Instant) {
        self.unregister();
        self.deadline = deadline;
    }

    fn unregister(&mut self) {
        if let Some((core, key)) = self.registered.take() {
            core.timers.borrow_mut().remove(&key);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            self.unregister();
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        match &mut self.registered {
            Some((core, key)) => {
                let mut timers = core.timers.borrow_mut();
                match timers.get_mut(key) {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    Some(w) => *w = cx.waker().clone(),
                    // Fired, but polled again before its deadline by the
                    // clock: cannot happen with a monotonic clock; re-arm.
                    None => *key = timers.insert(deadline, cx.waker()),
                }
            }
            None => {
                let core = expect_current("polling a runtime::time::Sleep");
                let key = core.timers.borrow_mut().insert(deadline, cx.waker());
                self.registered = Some((core, key));
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.unregister();
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// Runs `future` with a time limit: `Ok(output)` if it finishes within
/// `duration`, `Err(Elapsed)` otherwise, in which case the future is dropped
/// when the `Timeout` is.
///
/// What dropping the future costs depends on it: an owned-buffer I/O
/// operation is cancelled, and one that completed in the race (a receive
/// that got bytes) loses its result with its buffer; a poll-style read
/// (`AsyncRead` from `net`'s `tokio-io` feature) takes no byte unless it
/// returns it, so giving it up loses nothing.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep(duration),
    }
}

/// Like [`timeout`], with an instant as the limit.
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep_until(deadline),
    }
}

pin_project_lite::pin_project! {
    /// The future of [`timeout`].
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Timeout<F> {
        #[pin]
        future: F,
        sleep: Sleep,
    }
}

impl<F> Timeout<F> {
    /// The inner future.
    pub fn get_ref(&self) -> &F {
        &self.future
    }

    /// Gives the inner future back.
    pub fn into_inner(self) -> F {
        self.future
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The inner future goes first: if it is ready it wins, even when the
        // deadline has also passed.
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The error of a [`timeout`] whose deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(e: Elapsed) -> Self {
        std::io::Error::new(std::io::ErrorKind::TimedOut, e)
    }
}

/// A ticker that fires every `period`; the first tick completes at once.
///
/// If ticks are missed (the task was busy for longer than a period), the
/// overdue tick completes at once and the missed ones are skipped, not
/// delivered in a burst: the tick after it comes at the next multiple of
/// `period` (counted from the overdue tick's instant) after now.
///
/// # Panics
///
/// If `period` is zero.
pub fn interval(period: Duration) -> Interval {
    interval_at(Instant::now(), period)
}

/// Like [`interval`], with the first tick at `start`.
///
/// # Panics
///
/// If `period` is zero.
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(
        !period.is_zero(),
        "runtime::time::interval: period must be non-zero"
    );
    Interval {
        period,
        sleep: sleep_until(start),
    }
}

/// The ticker of [`interval`].
#[derive(Debug)]
pub struct Interval {
    period: Duration,
    sleep: Sleep,
}

impl Interval {
    /// Waits for the next tick and returns the instant it was scheduled for.
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if Pin::new(&mut self.sleep).poll(cx).is_pending() {
            return Poll::Pending;
        }
        let scheduled = self.sleep.deadline();
        let now = Instant::now();
        let mut next = far_add(scheduled, self.period);
        if next <= now {
            // Skip missed ticks: the next multiple of the period after now.
            let behind = now.duration_since(scheduled).as_nanos();
            let period = self.period.as_nanos();
            let ahead = period - behind % period;
            next = far_add(now, Duration::from_nanos(ahead as u64));
        }
        self.sleep.reset(next);
        Poll::Ready(scheduled)
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Restarts the ticker: the next tick is one period from now.
    pub fn reset(&mut self) {
        self.sleep.reset(far_add(Instant::now(), self.period));
    }
}
