//! hyper 1.x's runtime traits on this runtime (cargo feature `hyper`):
//! [`Executor`] spawns the tasks hyper asks for (HTTP/2 streams, upgrades)
//! on the current runtime, and [`Timer`] gives hyper its sleeps (header
//! read timeouts, HTTP/2 keep-alive pings).
//!
//! With `net`'s `hyper` feature, `net::TcpStream` and `net::UnixStream`
//! implement `hyper::rt::Read` and `hyper::rt::Write`, so a connection is
//! served with hyper's own connection builders:
//!
//! ```ignore
//! let (stream, _) = listener.accept().await?;
//! runtime::spawn(async move {
//!     let _ = hyper::server::conn::http1::Builder::new()
//!         .timer(runtime::hyper::Timer)
//!         .serve_connection(stream, service)
//!         .await;
//! });
//! ```
//!
//! # Why the sleeps are `Send`
//!
//! hyper requires `Send + Sync` sleeps; this runtime's
//! [`Sleep`](crate::time::Sleep) is tied to its runtime's thread (it holds
//! an `Rc` of the runtime). [`Sleep`] here wraps one and remembers the
//! thread that made it: it is polled only there (polling it on another
//! thread panics with a message saying so) and its inner sleep is dropped
//! only there; dropped on another thread, the inner sleep is leaked rather
//! than touched (a timer entry that fires once, unseen, and the runtime's
//! reference count). hyper polls and drops its timers inside the
//! connection future, which on this runtime never leaves its thread.

use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

/// hyper's executor on this runtime: [`execute`](::hyper::rt::Executor::execute)
/// spawns the future on the runtime running on this thread (it need not be
/// `Send`), as [`crate::spawn`] does.
///
/// # Panics
///
/// `execute` panics if no runtime is running on this thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct Executor;

impl<F> ::hyper::rt::Executor<F> for Executor
where
    F: Future + 'static,
{
    fn execute(&self, future: F) {
        drop(crate::spawn(future));
    }
}

/// hyper's timer on this runtime: its sleeps are this runtime's timers
/// (see the [module docs](self) for how they are made `Send`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Timer;

impl ::hyper::rt::Timer for Timer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        Box::pin(Sleep::new(crate::time::sleep(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn ::hyper::rt::Sleep>> {
        Box::pin(Sleep::new(crate::time::sleep_until(deadline)))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn ::hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Sleep>() {
            Some(ours) => ours.reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A [`Timer`] sleep: a runtime sleep bound to the thread that made it.
pub struct Sleep {
    thread: ThreadId,
    inner: ManuallyDrop<crate::time::Sleep>,
}

impl Sleep {
    fn new(inner: crate::time::Sleep) -> Sleep {
        Sleep {
            thread: thread::current().id(),
            inner: ManuallyDrop::new(inner),
        }
    }

    /// The inner sleep, checked to be on its thread.
    fn inner_mut(&mut self) -> &mut crate::time::Sleep {
        assert!(
            thread::current().id() == self.thread,
            "runtime::hyper::Sleep used on another thread than the runtime's that made it; \
             hyper's connection futures must stay on the runtime's thread"
        );
        &mut self.inner
    }

    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        // `Sleep` is Unpin (the runtime's sleep is).
        self.get_mut().inner_mut().reset(deadline);
    }
}

// SAFETY: the only non-thread-safe part is the inner runtime sleep (an
// `Rc` of its runtime once polled). It is reached only through
// `inner_mut`, which checks that the current thread is the one that made
// it, and `Drop` drops it only on that thread (leaks it elsewhere). A
// `&Sleep` gives no access to it at all (`Sync`).
unsafe impl Send for Sleep {}
// SAFETY: see above.
unsafe impl Sync for Sleep {}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(self.get_mut().inner_mut()).poll(cx)
    }
}

impl ::hyper::rt::Sleep for Sleep {}

impl Drop for Sleep {
    fn drop(&mut self) {
        if thread::current().id() == self.thread {
            // SAFETY: dropped once, here, on its own thread.
            unsafe { ManuallyDrop::drop(&mut self.inner) };
        }
        // Elsewhere the inner sleep is leaked (see the module docs).
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("thread", &self.thread)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::hyper::rt::Timer as _;

    #[test]
    fn sleeps_fire_reset_and_stay_on_their_thread() {
        crate::block_on(async {
            let start = Instant::now();
            Timer.sleep(Duration::from_millis(10)).await;
            assert!(start.elapsed() >= Duration::from_millis(10));
            let mut s = Timer.sleep(Duration::from_secs(60));
            Timer.reset(&mut s, Instant::now() + Duration::from_millis(5));
            crate::time::timeout(Duration::from_secs(10), s)
                .await
                .expect("the reset sleep fires");
            // Made here, dropped on another thread without touching the
            // runtime sleep. (Not polled: a polled one would leak its
            // runtime reference there, which LeakSanitizer reports.)
            let far = Timer.sleep(Duration::from_secs(60));
            std::thread::spawn(move || drop(far)).join().unwrap();
            // Polled on another thread: a clear panic, not a data race.
            let mut other = Timer.sleep(Duration::from_secs(60));
            let (panicked, other) = std::thread::spawn(move || {
                let waker = std::task::Waker::noop();
                let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let _ = other.as_mut().poll(&mut Context::from_waker(waker));
                }));
                (res.is_err(), other)
            })
            .join()
            .unwrap();
            assert!(panicked, "polling on another thread must panic");
            drop(other);
        });
    }

    #[test]
    fn executor_spawns_local_futures() {
        crate::block_on(async {
            let cell = std::rc::Rc::new(std::cell::Cell::new(0));
            let set = cell.clone();
            ::hyper::rt::Executor::execute(&Executor, async move { set.set(7) });
            crate::yield_now().await;
            crate::yield_now().await;
            assert_eq!(cell.get(), 7);
        });
    }
}
