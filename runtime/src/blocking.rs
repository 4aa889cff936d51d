//! The blocking thread pool behind `spawn_blocking`: a small, bounded set of
//! threads that start on demand and exit after idling. A finished job wakes
//! its task through an ordinary `Waker`, which reaches a parked ring through
//! the runtime's eventfd.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct Pool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    state: Mutex<PoolState>,
    cond: Condvar,
    max_threads: usize,
    keep_alive: Duration,
}

struct PoolState {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
    shutdown: bool,
}

impl Pool {
    pub(crate) fn new(max_threads: usize, keep_alive: Duration) -> Pool {
        Pool {
            inner: Arc::new(PoolInner {
                state: Mutex::new(PoolState {
                    queue: VecDeque::new(),
                    threads: 0,
                    idle: 0,
                    shutdown: false,
                }),
                cond: Condvar::new(),
                max_threads,
                keep_alive,
            }),
        }
    }

    /// Queues a job; starts a thread if none is idle and the bound allows.
    /// If no thread exists and none can be started, the job is dropped,
    /// which its receiver sees.
    pub(crate) fn execute(&self, job: Job) {
        let mut state = self.inner.lock();
        if state.shutdown {
            return;
        }
        state.queue.push_back(job);
        if state.idle > 0 {
            drop(state);
            self.inner.cond.notify_one();
            return;
        }
        if state.threads < self.inner.max_threads {
            state.threads += 1;
            let inner = self.inner.clone();
            let spawned = thread::Builder::new()
                .name("runtime-blocking".into())
                .spawn(move || worker(inner));
            if spawned.is_err() {
                state.threads -= 1;
                if state.threads == 0 {
                    // Nobody will ever run the queue: drop it so that every
                    // waiting task learns its job was not run.
                    let jobs = std::mem::take(&mut state.queue);
                    drop(state);
                    drop(jobs);
                }
            }
        }
    }

    /// Tells the threads to exit once their current job is done; queued jobs
    /// are dropped.
    pub(crate) fn shutdown(&self) {
        let jobs = {
            let mut state = self.inner.lock();
            state.shutdown = true;
            std::mem::take(&mut state.queue)
        };
        self.inner.cond.notify_all();
        drop(jobs);
    }
}

impl PoolInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn worker(inner: Arc<PoolInner>) {
    let mut state = inner.lock();
    loop {
        if let Some(job) = state.queue.pop_front() {
            drop(state);
            // Jobs catch their own panics (see `channel`).
            job();
            state = inner.lock();
            continue;
        }
        if state.shutdown {
            break;
        }
        state.idle += 1;
        let (next, timeout) = inner
            .cond
            .wait_timeout(state, inner.keep_alive)
            .unwrap_or_else(|e| e.into_inner());
        state = next;
        state.idle -= 1;
        if timeout.timed_out() && state.queue.is_empty() {
            break;
        }
    }
    state.threads -= 1;
}

/// A one-shot channel from a blocking job to the task awaiting it.
pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
        sender_gone: false,
    }));
    (
        Sender {
            inner: inner.clone(),
        },
        Receiver { inner },
    )
}

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
    sender_gone: bool,
}

pub(crate) struct Sender<T> {
    inner: Arc<Mutex<Slot<T>>>,
}

impl<T> Sender<T> {
    pub(crate) fn send(self, value: T) {
        let waker = {
            let mut slot = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            slot.value = Some(value);
            slot.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut slot = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            slot.sender_gone = true;
            slot.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

pub(crate) struct Receiver<T> {
    inner: Arc<Mutex<Slot<T>>>,
}

/// The job was dropped without running (the pool could not start a thread,
/// or the runtime shut down).
pub(crate) struct NotRun;

impl<T> Future for Receiver<T> {
    type Output = Result<T, NotRun>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = slot.value.take() {
            return Poll::Ready(Ok(v));
        }
        if slot.sender_gone {
            return Poll::Ready(Err(NotRun));
        }
        match &slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}
