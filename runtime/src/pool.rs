//! Thread-per-core: a [`Pool`] of N workers, each a full [`Runtime`] (its
//! own ring, executor and timers) on its own thread, optionally pinned to a
//! CPU. No work stealing and nothing mutable shared between workers: work
//! crosses workers only through [`PoolHandle::spawn_on`] and wakers, which
//! push to the target worker's remote queue and wake its ring (MSG_RING or
//! eventfd, see [`CrossWake`](crate::CrossWake)).
//!
//! A server binds one `SO_REUSEPORT` listener per worker (crate `net`:
//! `TcpListener::bind_reuseport`) and lets the kernel spread connections.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::io;
use std::mem;
use std::panic::resume_unwind;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use crate::scheduler::{current, current_ptr};
use crate::task::raw::{self, Shared, TaskRef, JOIN_INTEREST};
use crate::{Builder, JoinError, JoinHandle};

thread_local! {
    /// The index of the pool worker running on this thread.
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the [`Pool`] worker this thread is, or `None` outside a
/// pool's workers (the main thread, a plain [`Runtime`](crate::Runtime),
/// a [`spawn_blocking`](crate::spawn_blocking) thread).
///
/// ```
/// assert_eq!(runtime::worker_index(), None);
/// let pool = runtime::Pool::builder().threads(2).build()?;
/// assert_eq!(pool.run(|_| async { runtime::worker_index() }), [Some(0), Some(1)]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn worker_index() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// Settings of a [`Pool`], checked when [`build`](PoolBuilder::build) is
/// called.
///
/// ```
/// let pool = runtime::Pool::builder()
///     .threads(2)
///     .pin_cpus(false)
///     .runtime(runtime::Runtime::builder().entries(128))
///     .build()?;
/// assert_eq!(pool.handle().workers(), 2);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a PoolBuilder does nothing until .build() is called"]
pub struct PoolBuilder {
    threads: Option<usize>,
    pin_cpus: bool,
    runtime: Builder,
}

impl PoolBuilder {
    /// A builder with the default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of workers, at least 1. Default: the number of CPUs this
    /// process may run on (`std::thread::available_parallelism`).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = Some(n);
        self
    }

    /// Pins worker `i` to the `i`-th CPU this process may run on (modulo
    /// their number), with `sched_setaffinity`. Default false: the
    /// scheduler places the threads.
    pub fn pin_cpus(mut self, pin: bool) -> Self {
        self.pin_cpus = pin;
        self
    }

    /// The settings of every worker's runtime (ring size, SQPOLL, event
    /// interval, [`cross_wake`](Builder::cross_wake), ...). Default:
    /// [`Builder::new`].
    pub fn runtime(mut self, builder: Builder) -> Self {
        self.runtime = builder;
        self
    }

    /// Starts the workers: each builds its runtime on its own thread and
    /// runs it until the pool is dropped.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for `threads(0)`; the error of
    /// [`Builder::build`] if a worker's runtime cannot be built (e.g. an
    /// out-of-range setting, or io_uring refused by the kernel); the error
    /// of `sched_setaffinity` or of starting a thread. On error every
    /// worker already started is stopped and its thread joined: nothing is
    /// left behind.
    pub fn build(&self) -> io::Result<Pool> {
        let n = match self.threads {
            Some(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "PoolBuilder::threads must be at least 1, got 0",
                ))
            }
            Some(n) => n,
            None => thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let cpus = if self.pin_cpus {
            allowed_cpus()?
        } else {
            Vec::new()
        };
        let mut started = Started::default();
        let (ready_tx, ready_rx) = mpsc::channel();
        for i in 0..n {
            let stop = Arc::new(Stop::default());
            let cpu = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
            let builder = self.runtime.clone();
            let ready = ready_tx.clone();
            let worker_stop = stop.clone();
            let spawned = thread::Builder::new()
                .name(format!("runtime-worker-{i}"))
                .spawn(move || worker_main(i, cpu, &builder, &ready, &worker_stop));
            match spawned {
                Ok(thread) => started.push(thread, stop),
                Err(e) => return Err(e), // `started` stops and joins the others
            }
        }
        drop(ready_tx);
        let mut shared: Vec<Option<Arc<Shared>>> = vec![None; n];
        let mut first_error: Option<(usize, io::Error)> = None;
        for (i, result) in ready_rx.iter().take(n) {
            match result {
                Ok(s) => shared[i] = Some(s),
                Err(e) => {
                    if first_error.as_ref().is_none_or(|(j, _)| i < *j) {
                        first_error = Some((i, e));
                    }
                }
            }
        }
        if let Some((_, e)) = first_error {
            return Err(e);
        }
        let Some(workers) = shared.into_iter().collect::<Option<Vec<_>>>() else {
            return Err(io::Error::other("a pool worker exited before starting"));
        };
        Ok(Pool {
            handle: PoolHandle {
                inner: Arc::new(Inner { workers }),
            },
            _started: mem::take(&mut started),
        })
    }
}

/// What one worker reports when its runtime is up (or failed to start).
type Ready = (usize, io::Result<Arc<Shared>>);

fn worker_main(
    index: usize,
    cpu: Option<usize>,
    builder: &Builder,
    ready: &mpsc::Sender<Ready>,
    stop: &Stop,
) {
    if let Some(cpu) = cpu {
        if let Err(e) = pin_to(cpu) {
            let _ = ready.send((index, Err(e)));
            return;
        }
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send((index, Err(e)));
            return;
        }
    };
    WORKER.with(|w| w.set(Some(index)));
    let _ = ready.send((index, Ok(rt.shared())));
    rt.block_on(StopFuture { stop });
    // Dropping the runtime cancels its tasks (their JoinHandles see
    // Cancelled) and waits for the kernel to let go of their memory.
    drop(rt);
    WORKER.with(|w| w.set(None));
}

/// The CPUs this thread may run on.
fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE; `set` is initialised.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect();
    if cpus.is_empty() {
        return Err(io::Error::other("sched_getaffinity reported no CPU"));
    }
    Ok(cpus)
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: `cpu` came from sched_getaffinity, so it is below
    // CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("PoolBuilder::pin_cpus: sched_setaffinity to CPU {cpu} failed: {e}"),
        ));
    }
    Ok(())
}

/// Tells a worker's `block_on` to return.
#[derive(Default)]
struct Stop {
    stopped: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Stop {
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

struct StopFuture<'a> {
    stop: &'a Stop,
}

impl Future for StopFuture<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.stop.stopped.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        *self.stop.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        if self.stop.stopped.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// The threads of the workers started so far; dropping it stops them and
/// joins their threads.
#[derive(Default)]
struct Started {
    threads: Vec<thread::JoinHandle<()>>,
    stops: Vec<Arc<Stop>>,
}

impl Started {
    fn push(&mut self, thread: thread::JoinHandle<()>, stop: Arc<Stop>) {
        self.threads.push(thread);
        self.stops.push(stop);
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        for stop in &self.stops {
            stop.stop();
        }
        let me = thread::current().id();
        for thread in self.threads.drain(..) {
            // A pool dropped by one of its own workers cannot wait for
            // itself: that thread finishes on its own once its task returns.
            if thread.thread().id() != me {
                let _ = thread.join();
            }
        }
    }
}

/// N workers, each a full runtime (its own io_uring, executor and timers)
/// on its own thread. No work stealing: a task runs on the worker it was
/// spawned on; tasks reach a worker through [`PoolHandle::spawn_on`] or
/// [`Pool::run`], and `runtime::spawn` inside a worker spawns on that
/// worker.
///
/// The workers run from [`PoolBuilder::build`] until the pool is dropped.
/// Dropping it stops every worker: their tasks are dropped (their
/// [`JoinHandle`]s resolve to a cancelled [`JoinError`]), their operations
/// cancelled, their rings closed and their threads joined. A task that
/// panics is a [`JoinError`] for its handle; the worker carries on.
///
/// ```
/// use runtime::Pool;
///
/// let pool = Pool::builder().threads(2).build()?;
/// // The closure runs on every worker; the outputs come in worker order.
/// let squares = pool.run(|i| async move { i * i });
/// assert_eq!(squares, [0, 1]);
///
/// // A future that is not Send, built on worker 1 by a Send closure.
/// let handle = pool.handle().spawn_on(1, || async {
///     let local = std::rc::Rc::new(5);
///     runtime::yield_now().await;
///     *local + runtime::worker_index().unwrap()
/// });
/// // A JoinHandle of a Send output can be awaited on any thread.
/// let six = std::thread::spawn(move || runtime::block_on(handle))
///     .join()
///     .unwrap();
/// assert_eq!(six.unwrap(), 6);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Pool {
    handle: PoolHandle,
    /// Stops the workers and joins their threads when the pool is dropped.
    _started: Started,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.handle.workers())
            .finish()
    }
}

impl Pool {
    /// A builder to choose the settings.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    /// Runs `f(i)` on every worker `i` (the future built there, so it need
    /// not be `Send`), blocks the calling thread until every one has
    /// finished, and returns their outputs in worker order.
    ///
    /// # Panics
    ///
    /// If a worker's future panics: the panic is resumed here, after every
    /// worker has finished. If called from inside a runtime (it blocks the
    /// thread; inside async code, use [`PoolHandle::spawn_on`] and await
    /// the handles instead).
    pub fn run<F, Fut>(&self, f: F) -> Vec<Fut::Output>
    where
        F: Fn(usize) -> Fut + Send + Sync,
        Fut: Future + 'static,
        Fut::Output: Send,
    {
        if !current_ptr().is_null() {
            panic!(
                "Pool::run blocks its thread and cannot be called from inside a runtime; \
                 inside async code, use PoolHandle::spawn_on and .await the JoinHandles"
            );
        }
        let f = &f;
        let handles: Vec<JoinHandle<Fut::Output>> = (0..self.handle.workers())
            .map(|i| {
                let job: Box<dyn FnOnce() -> Fut + Send + '_> = Box::new(move || f(i));
                // SAFETY: only the lifetime changes. The job borrows `f`,
                // which lives until this function returns, and this function
                // returns only after every handle has resolved: a task
                // resolves after its job was called or dropped (its stage is
                // dropped before COMPLETE is set, whether it ran, panicked or
                // was cancelled), and nothing between here and the waiting
                // below can unwind. The future the job returns is 'static.
                let job: Box<dyn FnOnce() -> Fut + Send + 'static> = unsafe { mem::transmute(job) };
                self.handle.spawn_on(i, job)
            })
            .collect();
        let results: Vec<Result<Fut::Output, JoinError>> =
            handles.into_iter().map(wait_on_thread).collect();
        let mut outputs = Vec::with_capacity(results.len());
        let mut first_panic = None;
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok(out) => outputs.push(out),
                Err(e) if e.is_panic() => {
                    if first_panic.is_none() {
                        first_panic = Some(e.into_panic());
                    }
                }
                Err(_) => {
                    if first_panic.is_none() {
                        first_panic = Some(Box::new(format!(
                            "Pool::run: worker {i} dropped the job before it finished"
                        )));
                    }
                }
            }
        }
        if let Some(payload) = first_panic {
            resume_unwind(payload);
        }
        outputs
    }

    /// A handle to spawn tasks on the workers from anywhere.
    pub fn handle(&self) -> PoolHandle {
        self.handle.clone()
    }
}

/// Runs `future` to completion on this thread, parking it while pending.
fn wait_on_thread<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
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

/// A handle to a [`Pool`]'s workers: cheap to clone, `Send` and `Sync`,
/// usable from any thread, inside or outside the pool.
#[derive(Clone)]
pub struct PoolHandle {
    inner: Arc<Inner>,
}

struct Inner {
    /// Each worker's remote queue, in worker order.
    workers: Vec<Arc<Shared>>,
}

impl fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolHandle")
            .field("workers", &self.workers())
            .finish()
    }
}

impl PoolHandle {
    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.inner.workers.len()
    }

    /// Spawns a task on worker `worker`: `f` is sent there and called
    /// there, and the future it returns (which need not be `Send`) runs
    /// there. Returns at once; the handle can be awaited on any thread or
    /// runtime.
    ///
    /// From a thread that runs no runtime, the worker is woken with its
    /// eventfd; from another runtime's thread, with the
    /// [`CrossWake`](crate::CrossWake) of that runtime; on worker
    /// `worker` itself, this is `runtime::spawn(f())`.
    ///
    /// If `worker` is out of range (not below [`workers`](Self::workers)),
    /// or the pool has been dropped, `f` is dropped without being called
    /// and the handle resolves to a [`JoinError`] for which
    /// [`is_cancelled`](JoinError::is_cancelled) is true; nothing panics.
    /// A panic in `f` or in the future is a [`JoinError`] too, and the
    /// worker carries on.
    ///
    /// ```
    /// let pool = runtime::Pool::builder().threads(2).build()?;
    /// let handle = pool.handle();
    /// let answer = handle.spawn_on(0, || async { 42 });
    /// let nowhere = handle.spawn_on(7, || async { 0 });
    /// runtime::block_on(async {
    ///     assert_eq!(answer.await.unwrap(), 42);
    ///     assert!(nowhere.await.unwrap_err().is_cancelled());
    /// });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn spawn_on<F, Fut>(&self, worker: usize, f: F) -> JoinHandle<Fut::Output>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        let Some(target) = self.inner.workers.get(worker) else {
            return cancelled(f, &self.inner.workers[0]);
        };
        if let Some(core) = current() {
            if Arc::ptr_eq(&core.shared, target) {
                // Built inside the task, so that a panic in `f` is the
                // task's JoinError, as on another worker.
                return core.spawn(BuildThen::Build(Some(f)));
            }
        }
        JoinHandle::new(raw::spawn_remote(BuildThen::Build(Some(f)), target))
    }
}

/// A handle to a task that never runs: `f` is dropped and the handle
/// resolves to a cancelled `JoinError`.
fn cancelled<F, Fut>(f: F, shared: &Arc<Shared>) -> JoinHandle<Fut::Output>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future + 'static,
    Fut::Output: Send + 'static,
{
    let raw = TaskRef::allocate(
        BuildThen::Build(Some(f)),
        shared.clone(),
        2,
        raw::SCHEDULED | JOIN_INTEREST,
    );
    // SAFETY: takes over one of the two references; the other is the
    // handle's.
    let task = unsafe { TaskRef::from_raw(raw) };
    // Never queued: nobody else touches the stage, which holds only the
    // Send closure.
    task.drop_stage();
    task.finish_cancelled();
    JoinHandle::new(raw)
}

/// The future of a task spawned with `spawn_on`: first the `Send` closure
/// that was sent to the worker, then, from its first poll on that worker,
/// the future the closure built there.
enum BuildThen<F, Fut> {
    Build(Option<F>),
    Run(Fut),
}

impl<F, Fut> Future for BuildThen<F, Fut>
where
    F: FnOnce() -> Fut,
    Fut: Future,
{
    type Output = Fut::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Fut::Output> {
        // SAFETY: the `Run` future is never moved: it is written in place
        // once, while nothing is pinned (`Build` holds no pinned data), and
        // from then on only pinned in place below.
        let this = unsafe { self.get_unchecked_mut() };
        if let BuildThen::Build(f) = this {
            let f = f
                .take()
                .expect("BuildThen polled after its closure panicked");
            *this = BuildThen::Run(f());
        }
        match this {
            // SAFETY: see above; `this` is pinned and stays where it is.
            BuildThen::Run(future) => unsafe { Pin::new_unchecked(future) }.poll(cx),
            BuildThen::Build(_) => unreachable!("the closure was just called"),
        }
    }
}

/// What `#[runtime::main(threads = N)]` makes of the outputs of the N
/// bodies. Not part of the API: the attribute's expansion calls it.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`#[runtime::main(threads = N)]` needs the function to return `()` or a `Result`",
    label = "this return type cannot combine the outputs of N workers"
)]
pub trait PoolMainOutput: Sized {
    /// One output out of every worker's, in worker order.
    fn combine(outputs: Vec<Self>) -> Self;
}

impl PoolMainOutput for () {
    fn combine(_: Vec<()>) {}
}

impl<T, E> PoolMainOutput for Result<T, E> {
    /// The first `Err` in worker order, else worker 0's `Ok`.
    fn combine(outputs: Vec<Self>) -> Self {
        let mut first_ok = None;
        for output in outputs {
            match output {
                Err(e) => return Err(e),
                Ok(v) if first_ok.is_none() => first_ok = Some(Ok(v)),
                Ok(_) => {}
            }
        }
        first_ok.expect("a pool has at least one worker")
    }
}
