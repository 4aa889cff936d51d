//! Tasks: one heap allocation each, holding the future, its output and the
//! join waker, with a reference-counted, thread-safe waker.
//!
//! Threading rules. A task's future is `!Send` in general and is only ever
//! touched on the runtime's thread: polled by the run loop, dropped there
//! (or at shutdown). Other threads touch the reference count, the atomic
//! state (through wakers) and the join waker (behind its mutex). The
//! output is written on the runtime's thread before `COMPLETE` is set and
//! only read or dropped after it is seen set: by the runtime's thread, or
//! by a `JoinHandle` on any thread, which is `Send` only when the output
//! is. The one exception is a task spawned from another thread
//! ([`spawn_remote`]): until it reaches its runtime its stage holds only a
//! `Send` closure, which the spawning thread drops if the runtime is gone.
//! The allocation itself may be freed on any thread by the last reference,
//! so freeing it never drops the stage: by then the stage was dropped (the
//! one exception, a `JoinHandle` that was `mem::forget`-ed over a finished
//! task, leaks the output instead).

use std::cell::UnsafeCell;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use std::cell::{Cell as StdCell, RefCell};
use std::collections::VecDeque;

use slab::Slab;

use crate::task::error::JoinError;
use crate::task::remote::{Outbox as GenericOutbox, Remote};

/// The queue other threads push this runtime's woken tasks to.
pub(crate) type Shared = Remote<TaskRef>;

/// The cross-ring wake-ups a runtime's thread owes other runtimes.
pub(crate) type Outbox = GenericOutbox<TaskRef>;

/// A runtime's queue of tasks ready to run, in wake order. Runtime thread.
pub(crate) type RunQueue = RefCell<VecDeque<TaskRef>>;

/// The task is in a run queue (or about to be pushed to one).
pub(crate) const SCHEDULED: usize = 1;
/// The future is gone: the output (or error) is stored or already taken.
pub(crate) const COMPLETE: usize = 2;
/// `abort` was called: the next poll drops the future instead.
pub(crate) const CANCELLED: usize = 4;
/// A `JoinHandle` exists and wants the output.
pub(crate) const JOIN_INTEREST: usize = 8;

pub(crate) struct Header {
    refs: AtomicUsize,
    pub(crate) state: AtomicUsize,
    vtable: &'static Vtable,
    pub(crate) shared: Arc<Shared>,
    /// Key in the runtime's slab of live tasks; runtime thread only.
    /// `usize::MAX` for a task spawned from another thread that has not
    /// yet reached its runtime.
    pub(crate) owned_key: AtomicUsize,
    /// The waker of the task's `JoinHandle`, which may be on any thread.
    join_waker: Mutex<Option<Waker>>,
}

struct Vtable {
    /// Polls (or cancels) the task. Runtime thread only.
    poll: unsafe fn(NonNull<Header>, &OwnedTasks),
    /// Moves the output into `*mut Poll<Result<T, JoinError>>`. Runtime
    /// thread only.
    read_output: unsafe fn(NonNull<Header>, *mut ()),
    /// Drops whatever the stage holds (future or output). Runtime thread
    /// only.
    drop_stage: unsafe fn(NonNull<Header>),
    /// Frees the allocation. Any thread.
    dealloc: unsafe fn(NonNull<Header>),
}

enum Stage<F: Future> {
    Running(F),
    Finished(Result<F::Output, JoinError>),
    Consumed,
}

#[repr(C)]
struct Cell<F: Future> {
    header: Header,
    stage: UnsafeCell<ManuallyDrop<Stage<F>>>,
}

/// An owned reference to a task (one count of `refs`).
pub(crate) struct TaskRef(NonNull<Header>);

// SAFETY: a TaskRef only gives other threads access to the atomic reference
// count and state; the non-Send stage is touched only on the runtime thread
// (see the module docs), and freeing the allocation never drops the stage.
unsafe impl Send for TaskRef {}

impl TaskRef {
    /// Allocates a task (the one allocation of `spawn`) holding `refs`
    /// references, in the given state.
    pub(crate) fn allocate<F: Future + 'static>(
        future: F,
        shared: Arc<Shared>,
        refs: usize,
        state: usize,
    ) -> NonNull<Header> {
        let cell = Box::new(Cell {
            header: Header {
                refs: AtomicUsize::new(refs),
                state: AtomicUsize::new(state),
                vtable: vtable::<F>(),
                shared,
                owned_key: AtomicUsize::new(usize::MAX),
                join_waker: Mutex::new(None),
            },
            stage: UnsafeCell::new(ManuallyDrop::new(Stage::Running(future))),
        });
        NonNull::from(Box::leak(cell)).cast()
    }

    /// Takes over one reference count held by the caller.
    ///
    /// # Safety
    ///
    /// `ptr` is a live task and the caller owns one of its references.
    pub(crate) unsafe fn from_raw(ptr: NonNull<Header>) -> TaskRef {
        TaskRef(ptr)
    }

    /// One more reference to the same task.
    pub(crate) fn clone_ref(&self) -> TaskRef {
        // SAFETY: we hold a reference.
        unsafe { clone_ref(self.0) }
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: we hold a reference, so the allocation is live.
        unsafe { self.0.as_ref() }
    }

    /// Polls the task once. Must be called on the runtime thread that owns
    /// the task, with that runtime's set of live tasks.
    pub(crate) fn run(&self, owned: &OwnedTasks) {
        // SAFETY: the run loop calls this on the runtime thread.
        unsafe { (self.header().vtable.poll)(self.0, owned) }
    }

    /// Drops the task's future or output. Runtime thread only (shutdown),
    /// or the thread of [`spawn_remote`] for a task that never reached its
    /// runtime.
    pub(crate) fn drop_stage(&self) {
        // SAFETY: called by the runtime on its thread, or by spawn_remote on
        // a stage that holds only Send state nobody else can reach.
        unsafe { (self.header().vtable.drop_stage)(self.0) }
    }

    /// Marks the task complete without output (it was cancelled at
    /// shutdown) and wakes its JoinHandle, after its stage was dropped.
    pub(crate) fn finish_cancelled(&self) {
        // SAFETY: the stage was just dropped (Consumed) by this thread.
        unsafe { finish_cancelled_erased(self.0) }
    }
}

impl Drop for TaskRef {
    fn drop(&mut self) {
        // SAFETY: we own one reference.
        unsafe { drop_ref(self.0) }
    }
}

/// Adds a reference.
///
/// # Safety
///
/// `ptr` is a live task whose reference the caller holds.
pub(crate) unsafe fn clone_ref(ptr: NonNull<Header>) -> TaskRef {
    // SAFETY: the caller holds a reference, so the task is live.
    let header = unsafe { ptr.as_ref() };
    let old = header.refs.fetch_add(1, Ordering::Relaxed);
    if old > isize::MAX as usize {
        std::process::abort();
    }
    TaskRef(ptr)
}

/// Drops one reference; frees the task on the last one.
///
/// # Safety
///
/// The caller owns one reference to the live task `ptr`.
pub(crate) unsafe fn drop_ref(ptr: NonNull<Header>) {
    // SAFETY: the caller owns a reference, so the task is live.
    let header = unsafe { ptr.as_ref() };
    if header.refs.fetch_sub(1, Ordering::Release) == 1 {
        std::sync::atomic::fence(Ordering::Acquire);
        // SAFETY: that was the last reference.
        unsafe { (header.vtable.dealloc)(ptr) }
    }
}

/// Reads the output of a complete task into `dst`.
///
/// # Safety
///
/// The task is complete (its `COMPLETE` bit seen set with `Acquire`); on
/// the runtime's thread, or on any thread if the output type is `Send`;
/// `dst` points at a `Poll<Result<T, JoinError>>` where `T` is the task's
/// output type.
pub(crate) unsafe fn read_output(ptr: NonNull<Header>, dst: *mut ()) {
    // SAFETY: forwarded from the caller.
    unsafe { (ptr.as_ref().vtable.read_output)(ptr, dst) }
}

/// Drops a task's stage.
///
/// # Safety
///
/// `ptr` is live and nobody else touches its stage: the runtime's thread,
/// or any thread for a complete task whose output type is `Send`.
pub(crate) unsafe fn drop_stage(ptr: NonNull<Header>) {
    // SAFETY: forwarded from the caller.
    unsafe { (ptr.as_ref().vtable.drop_stage)(ptr) }
}

impl Header {
    /// Stores the waker of the task's JoinHandle (any thread) and returns
    /// whether the task completed meanwhile: if it did, the waker may never
    /// be woken, and the caller reads the output instead.
    pub(crate) fn set_join_waker(&self, waker: &Waker) -> bool {
        let mut slot = self.join_waker.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
        // Under the lock: a completion that set COMPLETE after this load
        // takes the lock after us and finds the waker.
        self.state.load(Ordering::Acquire) & COMPLETE != 0
    }

    /// Wakes the JoinHandle's waker, if any (after `COMPLETE` was set).
    fn wake_join(&self) {
        let waker = self
            .join_waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Puts the task in a run queue unless it is already queued or complete.
///
/// # Safety
///
/// `ptr` is a live task whose reference the caller holds. Any thread.
pub(crate) unsafe fn schedule(ptr: NonNull<Header>) {
    // SAFETY: the caller holds a reference.
    let header = unsafe { ptr.as_ref() };
    let prev = header.state.fetch_or(SCHEDULED, Ordering::AcqRel);
    if prev & (SCHEDULED | COMPLETE) != 0 {
        return;
    }
    // SAFETY: the caller holds a reference; the queue gets a new one.
    let task = unsafe { clone_ref(ptr) };
    push(task);
}

/// The run queue and remote queue of the runtime running on this thread,
/// set by [`enter`].
#[derive(Clone, Copy)]
struct Local {
    queue: *const RunQueue,
    shared: *const Shared,
    /// The runtime's cross-ring wake-ups to other runtimes (null: none,
    /// wakes of other runtimes' tasks use their eventfd).
    outbox: *const Outbox,
}

thread_local! {
    /// The queues of the runtime running on this thread (null if none).
    static LOCAL: StdCell<Local> = const {
        StdCell::new(Local { queue: ptr::null(), shared: ptr::null(), outbox: ptr::null() })
    };
}

/// Makes `queue` and `shared` the queues that wakes on this thread push to
/// (for tasks of that runtime), and `outbox` (if any) where wakes of other
/// runtimes' tasks go, until the guard is dropped.
///
/// # Safety
///
/// All three stay alive, at the same address, until the guard is dropped.
pub(crate) unsafe fn enter(
    queue: &RunQueue,
    shared: &Shared,
    outbox: Option<&Outbox>,
) -> LocalGuard {
    let outbox = outbox.map_or(ptr::null(), |o| o as *const Outbox);
    let previous = LOCAL.with(|l| {
        l.replace(Local {
            queue,
            shared,
            outbox,
        })
    });
    LocalGuard { previous }
}

/// The outbox of the runtime running on this thread, if it sends MSG_RING.
fn current_outbox<'a>(local: Local) -> Option<&'a Outbox> {
    // SAFETY: a non-null outbox is alive while its guard is current (the
    // `enter` contract), which outlasts any use on this thread: the
    // reference is used only within the caller's call.
    unsafe { local.outbox.as_ref() }
}

/// Restores the queues that were current before [`enter`].
pub(crate) struct LocalGuard {
    previous: Local,
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        LOCAL.with(|l| l.set(self.previous));
    }
}

/// Queues a woken task: locally when woken on its runtime's thread while
/// that runtime runs, through its remote queue (and the eventfd) otherwise.
fn push(task: TaskRef) {
    let shared: *const Shared = Arc::as_ptr(&task.header().shared);
    let local = LOCAL.with(StdCell::get);
    if ptr::eq(local.shared, shared) {
        // SAFETY: a non-null current queue is alive while its guard is (the
        // `enter` contract), and the guard outlives every wake on this
        // thread while it is current; runtime thread.
        unsafe { (*local.queue).borrow_mut().push_back(task) };
    } else {
        // A runtime that is gone drops the wake (and its reference).
        let _ = task
            .header()
            .shared
            .clone()
            .push(task, current_outbox(local));
    }
}

/// Allocates a task running `future` for the runtime owning `shared`, from
/// any thread, and queues it there; the runtime adopts it (adds it to its
/// live tasks) when it takes it from its remote queue. If that runtime is
/// gone, the task is cancelled at once. Returns the task for its
/// `JoinHandle` (one reference).
///
/// `F` need not be `Send`, but at this point it must be safe to create and
/// drop on this thread: the caller makes sure it holds only `Send` state
/// until its first poll (see `pool::BuildThen`).
pub(crate) fn spawn_remote<F>(future: F, shared: &Arc<Shared>) -> NonNull<Header>
where
    F: Future + 'static,
{
    // Two references: the queue and the handle.
    let raw = TaskRef::allocate(future, shared.clone(), 2, SCHEDULED | JOIN_INTEREST);
    // SAFETY: takes over the queue's reference.
    let task = unsafe { TaskRef::from_raw(raw) };
    let local = LOCAL.with(StdCell::get);
    if let Err(task) = shared.clone().push(task, current_outbox(local)) {
        // The runtime is gone. Nobody else has touched the task: drop the
        // future (the caller's promise: only Send state so far) and finish
        // it as cancelled.
        task.drop_stage();
        task.finish_cancelled();
    }
    raw
}

/// The tasks of a runtime that are not complete, so that shutdown can drop
/// their futures. Runtime thread.
pub(crate) struct OwnedTasks {
    tasks: RefCell<Slab<TaskRef>>,
}

impl OwnedTasks {
    pub(crate) fn new() -> OwnedTasks {
        OwnedTasks {
            tasks: RefCell::new(Slab::new()),
        }
    }

    /// Adds a task (one of its references) and records its key in it.
    pub(crate) fn insert(&self, task: TaskRef) {
        let header: *const Header = task.header();
        let key = self.tasks.borrow_mut().insert(task);
        // SAFETY: the set now holds a reference, so the task is live.
        unsafe { (*header).owned_key.store(key, Ordering::Relaxed) };
    }

    /// Removes a completed task, returning the set's reference.
    fn forget(&self, key: usize, ptr: NonNull<Header>) -> Option<TaskRef> {
        let mut tasks = self.tasks.borrow_mut();
        match tasks.get(key) {
            Some(t) if ptr::eq(t.header(), ptr.as_ptr()) => Some(tasks.remove(key)),
            _ => None,
        }
    }

    /// Takes every task out (shutdown).
    pub(crate) fn drain(&self) -> Vec<TaskRef> {
        self.tasks.borrow_mut().drain().collect()
    }

    /// The number of tasks.
    pub(crate) fn len(&self) -> usize {
        self.tasks.borrow().len()
    }
}

fn vtable<F: Future + 'static>() -> &'static Vtable {
    &Vtable {
        poll: poll::<F>,
        read_output: read_output_typed::<F>,
        drop_stage: drop_stage_typed::<F>,
        dealloc: dealloc::<F>,
    }
}

/// Replaces the stage, dropping the old one in place (a pinned future is
/// never moved). A panic while dropping is swallowed: the task is over.
///
/// # Safety
///
/// Runtime thread only; nobody else borrows the stage.
unsafe fn set_stage<F: Future>(cell: &Cell<F>, new: Stage<F>) {
    let stage: *mut Stage<F> = cell.stage.get().cast();
    // SAFETY: the stage is initialised and not borrowed (caller's promise);
    // after drop_in_place (even one that unwound) it is treated as dropped
    // and overwritten without being read.
    unsafe {
        let _ = catch_unwind(AssertUnwindSafe(|| ptr::drop_in_place(stage)));
        ptr::write(stage, new);
    }
}

unsafe fn poll<F: Future + 'static>(ptr: NonNull<Header>, owned: &OwnedTasks) {
    // SAFETY: the run loop holds a reference; runtime thread.
    let cell = unsafe { ptr.cast::<Cell<F>>().as_ref() };
    let prev = cell.header.state.fetch_and(!SCHEDULED, Ordering::AcqRel);
    if prev & COMPLETE != 0 {
        return;
    }
    let outcome = if prev & CANCELLED != 0 {
        // SAFETY: runtime thread, stage not borrowed.
        unsafe { set_stage(cell, Stage::Consumed) };
        Err(JoinError::cancelled())
    } else {
        // SAFETY: runtime thread; the stage is only borrowed here.
        let stage = unsafe { &mut *cell.stage.get() };
        let Stage::Running(future) = &mut **stage else {
            return;
        };
        // A borrowed waker: no reference count is taken for it (ManuallyDrop
        // keeps it from dropping one); clones made by the future take their
        // own.
        // SAFETY: the vtable's functions uphold the RawWaker contract.
        let waker = ManuallyDrop::new(unsafe { Waker::from_raw(raw_waker(ptr)) });
        let mut cx = Context::from_waker(&waker);
        // SAFETY: the future lives in the task allocation and is never moved
        // until it is dropped in place.
        let future = unsafe { Pin::new_unchecked(future) };
        match catch_unwind(AssertUnwindSafe(|| future.poll(&mut cx))) {
            Ok(Poll::Pending) => return,
            Ok(Poll::Ready(output)) => {
                // SAFETY: the borrow of the stage ended with the poll.
                unsafe { set_stage(cell, Stage::Consumed) };
                Ok(output)
            }
            Err(payload) => {
                // SAFETY: as above.
                unsafe { set_stage(cell, Stage::Consumed) };
                Err(JoinError::panic(payload))
            }
        }
    };
    // SAFETY: runtime thread.
    unsafe { complete(cell, ptr, owned, outcome) };
}

/// Stores the outcome, marks the task complete, forgets it in the owned set
/// and tells the JoinHandle (or drops the output if there is none).
unsafe fn complete<F: Future>(
    cell: &Cell<F>,
    ptr: NonNull<Header>,
    owned: &OwnedTasks,
    outcome: Result<F::Output, JoinError>,
) {
    // SAFETY: runtime thread; the stage is Consumed, nothing borrows it.
    unsafe {
        ptr::write(
            cell.stage.get().cast::<Stage<F>>(),
            Stage::Finished(outcome),
        )
    };
    let prev = cell.header.state.fetch_or(COMPLETE, Ordering::AcqRel);
    let owned = owned.forget(cell.header.owned_key.load(Ordering::Relaxed), ptr);
    if prev & JOIN_INTEREST != 0 {
        cell.header.wake_join();
    } else {
        // SAFETY: runtime thread; nobody will read the output.
        unsafe { set_stage(cell, Stage::Consumed) };
    }
    drop(owned);
}

unsafe fn finish_cancelled_erased(ptr: NonNull<Header>) {
    // SAFETY: the task is live (the caller holds a reference).
    let header = unsafe { ptr.as_ref() };
    header
        .state
        .fetch_or(COMPLETE | CANCELLED, Ordering::AcqRel);
    // A JoinHandle on another thread (or runtime) may be waiting.
    header.wake_join();
}

unsafe fn read_output_typed<F: Future>(ptr: NonNull<Header>, dst: *mut ()) {
    // SAFETY: task live (caller's promise).
    let cell = unsafe { ptr.cast::<Cell<F>>().as_ref() };
    // SAFETY: the task is complete, so the runtime no longer touches the
    // stage, and only the JoinHandle (this caller) reads it.
    let stage = unsafe { &mut **cell.stage.get() };
    let out = match std::mem::replace(stage, Stage::Consumed) {
        Stage::Finished(result) => Poll::Ready(result),
        // Cancelled at shutdown: the stage was dropped without an outcome.
        Stage::Consumed => Poll::Ready(Err(JoinError::cancelled())),
        Stage::Running(_) => unreachable!("read_output on a running task"),
    };
    // SAFETY: the caller promises dst is a Poll<Result<F::Output, JoinError>>.
    unsafe { *dst.cast::<Poll<Result<F::Output, JoinError>>>() = out };
}

unsafe fn drop_stage_typed<F: Future>(ptr: NonNull<Header>) {
    // SAFETY: task live (caller's promise).
    let cell = unsafe { ptr.cast::<Cell<F>>().as_ref() };
    // SAFETY: nobody else touches the stage (caller's promise).
    unsafe { set_stage(cell, Stage::Consumed) };
}

unsafe fn dealloc<F: Future>(ptr: NonNull<Header>) {
    // SAFETY: the last reference is gone; the allocation came from
    // Box<Cell<F>>. The stage is ManuallyDrop and is not dropped here (see
    // the module docs); the header and join waker are Send and dropped.
    drop(unsafe { Box::from_raw(ptr.cast::<Cell<F>>().as_ptr()) });
}

// ----- the waker -----

static WAKER_VTABLE: RawWakerVTable =
    RawWakerVTable::new(waker_clone, waker_wake, waker_wake_by_ref, waker_drop);

fn raw_waker(ptr: NonNull<Header>) -> RawWaker {
    RawWaker::new(ptr.as_ptr() as *const (), &WAKER_VTABLE)
}

unsafe fn waker_clone(data: *const ()) -> RawWaker {
    let ptr = NonNull::new(data as *mut Header).expect("null task waker");
    // SAFETY: the waker being cloned holds (or borrows one held for the
    // duration of a poll) a reference.
    std::mem::forget(unsafe { clone_ref(ptr) });
    raw_waker(ptr)
}

unsafe fn waker_wake(data: *const ()) {
    // SAFETY: an owned waker holds one reference, given up here.
    unsafe {
        waker_wake_by_ref(data);
        waker_drop(data);
    }
}

unsafe fn waker_wake_by_ref(data: *const ()) {
    let ptr = NonNull::new(data as *mut Header).expect("null task waker");
    // SAFETY: the waker holds a reference.
    unsafe { schedule(ptr) }
}

unsafe fn waker_drop(data: *const ()) {
    let ptr = NonNull::new(data as *mut Header).expect("null task waker");
    // SAFETY: an owned waker holds one reference.
    unsafe { drop_ref(ptr) }
}
