//! Tasks: one heap allocation each, holding the future, its output and the
//! join waker, with a reference-counted, thread-safe waker.
//!
//! Threading rules. A task's future and output are `!Send` in general and
//! are only ever touched on the runtime's thread: polled by the run loop,
//! read or dropped by the `JoinHandle` (which is `!Send`), dropped at
//! shutdown. Other threads only ever touch the reference count and the
//! atomic state (through wakers). The allocation itself may be freed on any
//! thread by the last reference, so freeing it never drops the stage: by
//! then the runtime thread has dropped the future and the output (the one
//! exception, a `JoinHandle` that was `mem::forget`-ed over a finished task,
//! leaks the output instead).

use std::cell::UnsafeCell;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use std::cell::{Cell as StdCell, RefCell};
use std::collections::VecDeque;

use slab::Slab;

use crate::task::error::JoinError;
use crate::task::remote::Remote;

/// The queue other threads push this runtime's woken tasks to.
pub(crate) type Shared = Remote<TaskRef>;

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
    pub(crate) owned_key: AtomicUsize,
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
    /// Stores the join waker. Runtime thread only.
    set_join_waker: unsafe fn(NonNull<Header>, &Waker),
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
    join_waker: UnsafeCell<Option<Waker>>,
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
            },
            stage: UnsafeCell::new(ManuallyDrop::new(Stage::Running(future))),
            join_waker: UnsafeCell::new(None),
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

    /// Drops the task's future or output. Runtime thread only (shutdown).
    pub(crate) fn drop_stage(&self) {
        // SAFETY: called by the runtime on its thread.
        unsafe { (self.header().vtable.drop_stage)(self.0) }
    }

    /// Marks the task complete without output (it was cancelled at
    /// shutdown) and wakes its JoinHandle, after its stage was dropped.
    pub(crate) fn finish_cancelled(&self) {
        // SAFETY: runtime thread; the stage was just dropped (Consumed).
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
/// Runtime thread only; `dst` points at a `Poll<Result<T, JoinError>>` where
/// `T` is the task's output type.
pub(crate) unsafe fn read_output(ptr: NonNull<Header>, dst: *mut ()) {
    // SAFETY: forwarded from the caller.
    unsafe { (ptr.as_ref().vtable.read_output)(ptr, dst) }
}

/// Drops a task's stage.
///
/// # Safety
///
/// Runtime thread only; `ptr` is live.
pub(crate) unsafe fn drop_stage(ptr: NonNull<Header>) {
    // SAFETY: forwarded from the caller.
    unsafe { (ptr.as_ref().vtable.drop_stage)(ptr) }
}

/// Stores the waker of the task's JoinHandle.
///
/// # Safety
///
/// Runtime thread only; `ptr` is live.
pub(crate) unsafe fn set_join_waker(ptr: NonNull<Header>, waker: &Waker) {
    // SAFETY: forwarded from the caller.
    unsafe { (ptr.as_ref().vtable.set_join_waker)(ptr, waker) }
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
}

thread_local! {
    /// The queues of the runtime running on this thread (null if none).
    static LOCAL: StdCell<Local> = const {
        StdCell::new(Local { queue: ptr::null(), shared: ptr::null() })
    };
}

/// Makes `queue` and `shared` the queues that wakes on this thread push to
/// (for tasks of that runtime), until the guard is dropped.
///
/// # Safety
///
/// Both stay alive, at the same address, until the guard is dropped.
pub(crate) unsafe fn enter(queue: &RunQueue, shared: &Shared) -> LocalGuard {
    let previous = LOCAL.with(|l| l.replace(Local { queue, shared }));
    LocalGuard { previous }
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
        task.header().shared.clone().push(task);
    }
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
        set_join_waker: set_join_waker_typed::<F>,
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
        // SAFETY: runtime thread.
        if let Some(waker) = unsafe { (*cell.join_waker.get()).take() } {
            waker.wake();
        }
    } else {
        // SAFETY: runtime thread; nobody will read the output.
        unsafe { set_stage(cell, Stage::Consumed) };
    }
    drop(owned);
}

unsafe fn finish_cancelled_erased(ptr: NonNull<Header>) {
    // SAFETY: runtime thread; the task is live.
    let header = unsafe { ptr.as_ref() };
    let prev = header
        .state
        .fetch_or(COMPLETE | CANCELLED, Ordering::AcqRel);
    let _ = prev;
}

unsafe fn read_output_typed<F: Future>(ptr: NonNull<Header>, dst: *mut ()) {
    // SAFETY: runtime thread, task live (caller's promise).
    let cell = unsafe { ptr.cast::<Cell<F>>().as_ref() };
    // SAFETY: runtime thread; the stage is not borrowed elsewhere.
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
    // SAFETY: runtime thread, task live (caller's promise).
    let cell = unsafe { ptr.cast::<Cell<F>>().as_ref() };
    // SAFETY: runtime thread, stage not borrowed.
    unsafe { set_stage(cell, Stage::Consumed) };
}

unsafe fn set_join_waker_typed<F: Future>(ptr: NonNull<Header>, waker: &Waker) {
    // SAFETY: runtime thread, task live (caller's promise).
    let cell = unsafe { ptr.cast::<Cell<F>>().as_ref() };
    // SAFETY: runtime thread; the join waker is only touched there while the
    // task lives.
    let slot = unsafe { &mut *cell.join_waker.get() };
    match slot {
        Some(w) if w.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
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
