//! Tasks: one heap allocation each, holding the future, its output and the
//! join waker, with a reference-counted, thread-safe waker.
//!
//! Threading rules. A task's future is `!Send` in general and is only ever
//! touched on the runtime's thread: polled by the run loop, dropped there
//! (or at shutdown). Other threads touch the state word (through wakers
//! and the `JoinHandle`) and the join waker slot (under the `JOIN_WAKER`
//! protocol below). The output is written on the runtime's thread before
//! `COMPLETE` is set and only read or dropped after it is seen set: by the
//! runtime's thread, or by a `JoinHandle` on any thread, which is `Send`
//! only when the output is. The one exception is a task spawned from
//! another thread ([`spawn_remote`]): until it reaches its runtime its
//! stage holds only a `Send` closure, which the spawning thread drops if
//! the runtime is gone. The allocation itself may be freed on any thread by
//! the last reference, so freeing it never drops the stage: by then the
//! stage was dropped (the one exception, a `JoinHandle` that was
//! `mem::forget`-ed over a finished task, leaks the output instead).
//!
//! The state word. The flags below and the reference count (from
//! [`REF_ONE`] up) share one atomic word, so that each step of a task's
//! life is one atomic operation: a wake sets `SCHEDULED` and hands a
//! reference to the run queue, a poll clears `SCHEDULED` and gives the
//! queue's reference up (the list of live tasks holds one while the task is
//! not complete, which keeps it alive through the poll), a completion sets
//! `COMPLETE` and gives up the list's reference, a dropped `JoinHandle`
//! clears `JOIN_INTEREST` and gives up its own.
//!
//! The join waker slot. While `JOIN_WAKER` is clear and the task is not
//! complete, the `JoinHandle` owns the slot: it writes its waker there,
//! then sets `JOIN_WAKER` (failing if `COMPLETE` was set first, in which
//! case it reads the output instead). While `JOIN_WAKER` is set the slot is
//! read-only for both sides; the handle takes it back by clearing the bit
//! (again failing once `COMPLETE` is set). The runtime side, having set
//! `COMPLETE` with `JOIN_WAKER` set, wakes the waker in place and clears
//! the bit; from then on the slot is the handle's, or, if the handle is
//! gone, the runtime side's, which drops the waker at once (so that two
//! tasks awaiting each other's handles hold no cycle of references once
//! one of them is over). Whatever is left in the slot is dropped with the
//! allocation.

use std::cell::{Cell as StdCell, RefCell, UnsafeCell};
use std::collections::VecDeque;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::{self, NonNull};
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use crate::task::error::JoinError;
use crate::task::remote::{Outbox as GenericOutbox, Remote};

/// The queue other threads push this runtime's woken tasks to.
pub(crate) type Shared = Remote<TaskRef>;

/// The cross-ring wake-ups a runtime's thread owes other runtimes.
pub(crate) type Outbox = GenericOutbox<TaskRef>;

/// A runtime's queue of tasks ready to run, in wake order. Runtime thread.
pub(crate) type RunQueue = RefCell<VecDeque<TaskRef>>;

/// The task is in a run queue (or about to be pushed to one); the queue
/// holds a reference.
pub(crate) const SCHEDULED: usize = 1;
/// The future is gone: the output (or error) is stored or already taken.
pub(crate) const COMPLETE: usize = 2;
/// `abort` was called: the next poll drops the future instead.
pub(crate) const CANCELLED: usize = 4;
/// A `JoinHandle` exists and wants the output.
pub(crate) const JOIN_INTEREST: usize = 8;
/// The join waker slot holds the handle's waker and is read-only (see the
/// module docs).
const JOIN_WAKER: usize = 16;
/// One reference in the state word; the bits below it are flags.
const REF_ONE: usize = 64;
/// Past this many references the count is about to overflow: abort, as
/// `Arc` does.
const MAX_REFS: usize = (isize::MAX as usize) / REF_ONE;

/// The reference count in a state word.
fn refs(state: usize) -> usize {
    state / REF_ONE
}

pub(crate) struct Header {
    /// The flags above and the reference count, see the module docs.
    pub(crate) state: AtomicUsize,
    vtable: &'static Vtable,
    pub(crate) shared: Arc<Shared>,
    /// Links in the runtime's list of live tasks ([`OwnedTasks`]). Runtime
    /// thread only, once the task has reached its runtime.
    links: UnsafeCell<Links>,
    /// The waker of the task's `JoinHandle`, which may be on any thread;
    /// who may touch it: see the module docs.
    join_waker: UnsafeCell<Option<Waker>>,
}

/// A task's place in its runtime's list of live tasks.
struct Links {
    prev: Option<NonNull<Header>>,
    next: Option<NonNull<Header>>,
    /// In the list. False until a task spawned from another thread is
    /// adopted by its runtime, and again once complete.
    linked: bool,
}

struct Vtable {
    /// Polls (or cancels) the task, taking over the run queue's reference.
    /// Runtime thread only.
    poll: unsafe fn(NonNull<Header>, &OwnedTasks),
    /// Moves the output of a complete task into
    /// `*mut Poll<Result<T, JoinError>>` and lets the JoinHandle go
    /// ([`take_output`]).
    take_output: unsafe fn(NonNull<Header>, *mut ()),
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

/// An owned reference to a task (one count in its state word).
pub(crate) struct TaskRef(NonNull<Header>);

// SAFETY: a TaskRef only gives other threads access to the atomic state
// word and (under the JOIN_WAKER protocol) the join waker; the non-Send
// stage and the links are touched only on the runtime thread (see the
// module docs), and freeing the allocation never drops the stage.
unsafe impl Send for TaskRef {}

impl TaskRef {
    /// Allocates a task (the one allocation of `spawn`) holding `refs`
    /// references, with the given flags.
    pub(crate) fn allocate<F: Future + 'static>(
        future: F,
        shared: Arc<Shared>,
        refs: usize,
        flags: usize,
    ) -> NonNull<Header> {
        debug_assert!(flags < REF_ONE);
        // Allocated first and written in place, rather than built on the
        // stack and copied (`Box::new`).
        let mut cell = Box::<Cell<F>>::new_uninit();
        cell.write(Cell {
            header: Header {
                state: AtomicUsize::new((refs * REF_ONE) | flags),
                vtable: vtable::<F>(),
                shared,
                links: UnsafeCell::new(Links {
                    prev: None,
                    next: None,
                    linked: false,
                }),
                join_waker: UnsafeCell::new(None),
            },
            stage: UnsafeCell::new(ManuallyDrop::new(Stage::Running(future))),
        });
        // SAFETY: written just above.
        let cell = unsafe { cell.assume_init() };
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

    /// Polls the task once, taking this reference (the run queue's). Must
    /// be called on the runtime thread that owns the task, with that
    /// runtime's set of live tasks.
    pub(crate) fn run(self, owned: &OwnedTasks) {
        let ptr = self.0;
        std::mem::forget(self);
        // SAFETY: the run loop calls this on the runtime thread; the poll
        // takes over the reference forgotten above.
        unsafe { (ptr.as_ref().vtable.poll)(ptr, owned) }
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
        let header = self.header();
        let prev = header
            .state
            .fetch_or(COMPLETE | CANCELLED, Ordering::AcqRel);
        if prev & COMPLETE == 0 {
            // SAFETY: this call set COMPLETE and holds a reference.
            unsafe { notify_join(header, prev) };
        }
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
    let old = header.state.fetch_add(REF_ONE, Ordering::Relaxed);
    if refs(old) > MAX_REFS {
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
    let prev = header.state.fetch_sub(REF_ONE, Ordering::Release);
    // SAFETY: the reference given up was the caller's.
    unsafe { dealloc_if_last(ptr, prev) };
}

/// Frees the task if `prev`, the state before an atomic operation that
/// gave up one reference, held the last one.
///
/// # Safety
///
/// `prev` is the value the atomic operation that gave up the caller's
/// reference replaced.
#[inline]
unsafe fn dealloc_if_last(ptr: NonNull<Header>, prev: usize) {
    if refs(prev) == 1 {
        // Every other reference's last use happened before its release.
        fence(Ordering::Acquire);
        // SAFETY: that was the last reference; nobody can reach the task.
        unsafe { (ptr.as_ref().vtable.dealloc)(ptr) }
    }
}

/// Moves the output of a complete task into `dst`, then gives up the
/// JoinHandle's interest and reference, as dropping the handle would (the
/// handle must not touch the task afterwards).
///
/// # Safety
///
/// Called by the task's `JoinHandle`, at most once, instead of
/// [`drop_join_handle`]; the task is complete (its `COMPLETE` bit seen set
/// with `Acquire`); on the runtime's thread, or on any thread if the output
/// type is `Send`; `dst` points at a `Poll<Result<T, JoinError>>` holding
/// `Pending`, where `T` is the task's output type.
pub(crate) unsafe fn take_output(ptr: NonNull<Header>, dst: *mut ()) {
    // SAFETY: forwarded from the caller.
    unsafe { (ptr.as_ref().vtable.take_output)(ptr, dst) }
}

/// The part of letting go of a JoinHandle once the task is complete and
/// the stage dealt with: releases the join waker slot if it is the
/// handle's, then clears `JOIN_INTEREST` and gives up the handle's
/// reference. Returns whether that was the last reference (the caller
/// frees the task).
///
/// # Safety
///
/// The caller is the task's JoinHandle, holds its reference, and saw
/// `COMPLETE`.
#[inline]
unsafe fn release_complete_handle(header: &Header) -> bool {
    let state = header.state.load(Ordering::Acquire);
    let prev = if state & JOIN_WAKER == 0 {
        // SAFETY: COMPLETE without JOIN_WAKER: the slot is the handle's.
        drop(unsafe { (*header.join_waker.get()).take() });
        header
            .state
            .fetch_sub(JOIN_INTEREST + REF_ONE, Ordering::AcqRel)
    } else {
        // The completion is waking the waker in place. Give up the interest
        // first (keeping the reference): if JOIN_WAKER is still set then,
        // the completion will see the interest gone and drop the waker;
        // if it was cleared meanwhile, the completion saw the interest and
        // left the slot to the handle, which must drop the waker now (or it
        // would stay until the task is freed).
        let prev = header.state.fetch_and(!JOIN_INTEREST, Ordering::AcqRel);
        if prev & JOIN_WAKER == 0 {
            // SAFETY: COMPLETE without JOIN_WAKER: the slot is the handle's
            // (it still holds its reference).
            drop(unsafe { (*header.join_waker.get()).take() });
        }
        header.state.fetch_sub(REF_ONE, Ordering::AcqRel)
    };
    if refs(prev) == 1 {
        // Every other reference's last use happened before its release.
        fence(Ordering::Acquire);
        return true;
    }
    false
}

/// Wakes the JoinHandle's waker after the caller set `COMPLETE` (`prev`
/// is the state before), and lets go of the waker slot as the module docs
/// say.
///
/// # Safety
///
/// The caller's atomic operation set `COMPLETE` and replaced `prev`, and
/// the caller still holds a reference.
unsafe fn notify_join(header: &Header, prev: usize) {
    if prev & JOIN_WAKER == 0 {
        return;
    }
    if prev & JOIN_INTEREST != 0 {
        // SAFETY: JOIN_WAKER is set: the slot holds the handle's waker and
        // nobody writes it until the bit is cleared (below, by us: the
        // handle can no longer clear it once COMPLETE is set).
        if let Some(waker) = unsafe { &*header.join_waker.get() } {
            waker.wake_by_ref();
        }
        let prev = header.state.fetch_and(!JOIN_WAKER, Ordering::AcqRel);
        if prev & JOIN_INTEREST != 0 {
            // The handle is there: the slot is its from now on.
            return;
        }
    }
    // The handle is gone and left the slot to us.
    // SAFETY: as just said, nobody else touches the slot any more.
    drop(unsafe { (*header.join_waker.get()).take() });
}

impl Header {
    /// Stores the waker of the task's JoinHandle (any thread) unless the
    /// task is complete; returns whether it is (then the waker may never be
    /// woken, and the caller reads the output instead). `state` is a
    /// recent load of the state word.
    ///
    /// Only the task's `JoinHandle` calls this (it owns the slot while
    /// `JOIN_WAKER` is clear).
    pub(crate) fn set_join_waker(&self, mut state: usize, waker: &Waker) -> bool {
        if state & COMPLETE != 0 {
            return true;
        }
        if state & JOIN_WAKER != 0 {
            // SAFETY: the bit is set: the slot is read-only for everyone,
            // and this handle is the only one that clears it.
            let current = unsafe { &*self.join_waker.get() };
            if current.as_ref().is_some_and(|w| w.will_wake(waker)) {
                return false;
            }
            // Take the slot back to store the new waker.
            loop {
                if state & COMPLETE != 0 {
                    return true;
                }
                match self.state.compare_exchange_weak(
                    state,
                    state & !JOIN_WAKER,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break,
                    Err(actual) => state = actual,
                }
            }
            state &= !JOIN_WAKER;
        }
        // SAFETY: JOIN_WAKER is clear and the task was not complete: the
        // slot is this handle's alone.
        unsafe { *self.join_waker.get() = Some(waker.clone()) };
        loop {
            if state & COMPLETE != 0 {
                // The slot stays this handle's (the completion saw no
                // JOIN_WAKER): the waker is dropped with it later.
                return true;
            }
            // Release: the completion that sees JOIN_WAKER sees the waker.
            match self.state.compare_exchange_weak(
                state,
                state | JOIN_WAKER,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return false,
                Err(actual) => state = actual,
            }
        }
    }
}

/// The JoinHandle of task `ptr` is dropped: gives up its interest in the
/// output and its reference, dropping the output if the task is complete.
///
/// # Safety
///
/// Called once, by the task's `JoinHandle`, which owns a reference (and
/// has not called [`take_output`]); on the runtime's thread, or on any
/// thread if the output type is `Send`.
pub(crate) unsafe fn drop_join_handle(ptr: NonNull<Header>) {
    // SAFETY: the handle holds a reference.
    let header = unsafe { ptr.as_ref() };
    let mut state = header.state.load(Ordering::Acquire);
    loop {
        if state & COMPLETE != 0 {
            // The stage is the handle's: drop the unread output, if any
            // (the caller's promise about threads covers it).
            // SAFETY: complete, so the runtime no longer touches the stage.
            unsafe { (header.vtable.drop_stage)(ptr) };
            // SAFETY: the handle's reference, COMPLETE seen.
            if unsafe { release_complete_handle(header) } {
                // SAFETY: that was the last reference.
                unsafe { (header.vtable.dealloc)(ptr) };
            }
            return;
        }
        // Not complete: the runtime drops the output when it comes.
        match header.state.compare_exchange_weak(
            state,
            (state & !JOIN_INTEREST) - REF_ONE,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(prev) => {
                // SAFETY: that gave up the handle's reference.
                unsafe { dealloc_if_last(ptr, prev) };
                return;
            }
            Err(actual) => state = actual,
        }
    }
}

/// Puts the task in a run queue unless it is already queued or complete,
/// giving the queue a new reference.
///
/// # Safety
///
/// `ptr` is a live task whose reference the caller holds. Any thread.
pub(crate) unsafe fn schedule(ptr: NonNull<Header>) {
    // SAFETY: the caller holds a reference.
    let header = unsafe { ptr.as_ref() };
    let mut state = header.state.load(Ordering::Relaxed);
    loop {
        let queue = state & (SCHEDULED | COMPLETE) == 0;
        if queue && refs(state) > MAX_REFS {
            std::process::abort();
        }
        // Written even when there is nothing to do, so that the wake is a
        // release the next poll (which clears SCHEDULED) acquires.
        let next = if queue {
            (state | SCHEDULED) + REF_ONE
        } else {
            state
        };
        match header
            .state
            .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) if queue => break,
            Ok(_) => return,
            Err(actual) => state = actual,
        }
    }
    // The reference added above.
    push(TaskRef(ptr));
}

/// Like [`schedule`], consuming the caller's reference (a waker woken by
/// value): it goes to the queue, or is dropped if the task is already
/// queued or complete.
///
/// # Safety
///
/// `ptr` is a live task and the caller owns one of its references. Any
/// thread.
unsafe fn schedule_by_value(ptr: NonNull<Header>) {
    // SAFETY: the caller owns a reference.
    let header = unsafe { ptr.as_ref() };
    let mut state = header.state.load(Ordering::Relaxed);
    loop {
        let queue = state & (SCHEDULED | COMPLETE) == 0;
        let next = if queue {
            state | SCHEDULED
        } else {
            state - REF_ONE
        };
        match header
            .state
            .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => break,
            Err(actual) => state = actual,
        }
    }
    if state & (SCHEDULED | COMPLETE) == 0 {
        // The caller's reference is the queue's now.
        push(TaskRef(ptr));
    } else {
        // SAFETY: the operation above gave up the caller's reference.
        unsafe { dealloc_if_last(ptr, state) };
    }
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
/// their futures: an intrusive doubly linked list through the tasks'
/// [`Links`], holding one reference to each. Runtime thread.
pub(crate) struct OwnedTasks {
    head: StdCell<Option<NonNull<Header>>>,
    len: StdCell<usize>,
}

impl OwnedTasks {
    pub(crate) fn new() -> OwnedTasks {
        OwnedTasks {
            head: StdCell::new(None),
            len: StdCell::new(0),
        }
    }

    /// Adds a task, taking over one of its references. The task must
    /// belong to this runtime and not be in the list.
    pub(crate) fn insert(&self, task: TaskRef) {
        let ptr = task.0;
        std::mem::forget(task);
        let head = self.head.get();
        // SAFETY: runtime thread: the links of this runtime's tasks are
        // only touched here, by this list; the list holds a reference to
        // every task in it, so `head` is live.
        unsafe {
            let links = &mut *ptr.as_ref().links.get();
            debug_assert!(!links.linked);
            links.prev = None;
            links.next = head;
            links.linked = true;
            if let Some(head) = head {
                (*head.as_ref().links.get()).prev = Some(ptr);
            }
        }
        self.head.set(Some(ptr));
        self.len.set(self.len.get() + 1);
    }

    /// Whether task `ptr` is in the list (false for a task spawned from
    /// another thread until it is adopted, and for a complete one).
    ///
    /// # Safety
    ///
    /// `ptr` is live and belongs to this list's runtime; runtime thread.
    pub(crate) unsafe fn contains(&self, ptr: NonNull<Header>) -> bool {
        // SAFETY: the caller's promise; only this thread touches the links
        // of a task that reached its runtime (a task still on its way was
        // written before it was sent, and is read here after the queue's
        // lock handed it over).
        unsafe { (*ptr.as_ref().links.get()).linked }
    }

    /// Takes task `ptr` out of the list, returning the list's reference,
    /// or `None` if it is not in the list.
    ///
    /// # Safety
    ///
    /// `ptr` is live and belongs to this list's runtime; runtime thread.
    unsafe fn remove(&self, ptr: NonNull<Header>) -> Option<TaskRef> {
        // SAFETY: as in `insert`; the neighbours are in the list, so live.
        unsafe {
            let links = &mut *ptr.as_ref().links.get();
            if !links.linked {
                return None;
            }
            match links.prev {
                Some(prev) => (*prev.as_ref().links.get()).next = links.next,
                None => self.head.set(links.next),
            }
            if let Some(next) = links.next {
                (*next.as_ref().links.get()).prev = links.prev;
            }
            // (The stale pointers are never read while unlinked.)
            links.linked = false;
        }
        self.len.set(self.len.get() - 1);
        Some(TaskRef(ptr))
    }

    /// Takes every task out (shutdown).
    pub(crate) fn drain(&self) -> Vec<TaskRef> {
        let mut out = Vec::with_capacity(self.len.get());
        while let Some(head) = self.head.get() {
            // SAFETY: the head is in the list: live and this runtime's.
            out.extend(unsafe { self.remove(head) });
        }
        out
    }

    /// Adds a task that reached this runtime from another thread, unless
    /// it is in the list already or complete.
    pub(crate) fn adopt(&self, task: &TaskRef) {
        // SAFETY: the task was queued to this runtime, so it is its.
        if unsafe { self.contains(task.0) } {
            return;
        }
        if task.header().state.load(Ordering::Acquire) & COMPLETE == 0 {
            self.insert(task.clone_ref());
        }
    }

    /// The number of tasks.
    pub(crate) fn len(&self) -> usize {
        self.len.get()
    }
}

impl Drop for OwnedTasks {
    fn drop(&mut self) {
        // Normally empty (shutdown drained it): give the references back.
        drop(self.drain());
    }
}

fn vtable<F: Future + 'static>() -> &'static Vtable {
    &Vtable {
        poll: poll::<F>,
        take_output: take_output_typed::<F>,
        drop_stage: drop_stage_typed::<F>,
        dealloc: dealloc::<F>,
    }
}

/// Drops what the stage holds in place (a pinned future is never moved)
/// and leaves it `Consumed`. A panic while dropping is swallowed: the task
/// is over.
///
/// # Safety
///
/// Runtime thread only, or the thread the caller's promise about the stage
/// allows; nobody else borrows the stage.
#[inline]
unsafe fn clear_stage<F: Future>(cell: &Cell<F>) {
    let stage: *mut Stage<F> = cell.stage.get().cast();
    // SAFETY: the stage is initialised and not borrowed (caller's promise).
    let needs_drop = match unsafe { &*stage } {
        Stage::Running(_) => std::mem::needs_drop::<F>(),
        Stage::Finished(_) => std::mem::needs_drop::<Result<F::Output, JoinError>>(),
        Stage::Consumed => return,
    };
    if needs_drop {
        // SAFETY: as above; after drop_in_place (even one that unwound) the
        // stage is treated as dropped and overwritten without being read.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe { ptr::drop_in_place(stage) }));
    }
    // SAFETY: as above (what it held is dropped, or needs no drop).
    unsafe { ptr::write(stage, Stage::Consumed) };
}

/// Drops the future of a running task in place and leaves the stage
/// `Consumed` (like [`clear_stage`], for a stage known to be `Running`).
///
/// # Safety
///
/// Runtime thread; the stage is `Running` and not borrowed.
#[inline(always)]
unsafe fn drop_future<F: Future>(cell: &Cell<F>) {
    let stage: *mut Stage<F> = cell.stage.get().cast();
    if std::mem::needs_drop::<F>() {
        // SAFETY: the stage is initialised and not borrowed (caller's
        // promise).
        if let Stage::Running(future) = unsafe { &mut *stage } {
            let future: *mut F = future;
            // SAFETY: the future is dropped in place, once; after that
            // (even if it unwound) the stage is overwritten without being
            // read.
            let _ = catch_unwind(AssertUnwindSafe(|| unsafe { ptr::drop_in_place(future) }));
        }
    }
    // SAFETY: as above (the future is dropped, or needs no drop).
    unsafe { ptr::write(stage, Stage::Consumed) };
}

unsafe fn poll<F: Future + 'static>(ptr: NonNull<Header>, owned: &OwnedTasks) {
    // SAFETY: the run queue's reference (given to us) keeps the task live
    // until the operation below; runtime thread.
    let cell = unsafe { ptr.cast::<Cell<F>>().as_ref() };
    // SAFETY: a task in this runtime's queue belongs to this runtime.
    if unsafe { !owned.contains(ptr) } {
        // Not in the list of live tasks: complete (it was cancelled while
        // queued), or, defensively, one that was never adopted.
        if cell.header.state.load(Ordering::Acquire) & COMPLETE != 0 {
            let prev = cell
                .header
                .state
                .fetch_sub(SCHEDULED + REF_ONE, Ordering::AcqRel);
            // SAFETY: that gave up the queue's reference.
            unsafe { dealloc_if_last(ptr, prev) };
            return;
        }
        // Adopt it with the queue's reference, SCHEDULED cleared below.
        cell.header.state.fetch_add(REF_ONE, Ordering::Relaxed);
        // SAFETY: the reference just added is the list's.
        owned.insert(unsafe { TaskRef::from_raw(ptr) });
    }
    // The queue's reference is given up with SCHEDULED (set while the task
    // is queued): the list's reference keeps the task alive through the
    // poll, as only the completion below takes it out of the list.
    let prev = cell
        .header
        .state
        .fetch_sub(SCHEDULED + REF_ONE, Ordering::AcqRel);
    debug_assert!(prev & SCHEDULED != 0 && refs(prev) >= 2);
    if prev & COMPLETE != 0 {
        return;
    }
    let outcome = if prev & CANCELLED != 0 {
        // SAFETY: runtime thread, stage not borrowed.
        unsafe { clear_stage(cell) };
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
                unsafe { drop_future(cell) };
                Ok(output)
            }
            Err(payload) => {
                // SAFETY: as above.
                unsafe { drop_future(cell) };
                Err(JoinError::panic(payload))
            }
        }
    };
    // SAFETY: runtime thread; the stage is Consumed.
    unsafe { complete(cell, ptr, owned, outcome) };
}

/// Stores the outcome (or drops it if no `JoinHandle` wants it), marks the
/// task complete, takes it out of the list of live tasks and tells the
/// JoinHandle.
///
/// # Safety
///
/// Runtime thread; the task is in `owned` and its stage is `Consumed`.
unsafe fn complete<F: Future>(
    cell: &Cell<F>,
    ptr: NonNull<Header>,
    owned: &OwnedTasks,
    outcome: Result<F::Output, JoinError>,
) {
    // SAFETY: the task is in `owned` (caller's promise); the list's
    // reference is now ours, given up below.
    let list_ref = unsafe { owned.remove(ptr) };
    debug_assert!(list_ref.is_some());
    std::mem::forget(list_ref);
    let header = &cell.header;
    let mut state = header.state.load(Ordering::Acquire);
    let mut outcome = Some(outcome);
    loop {
        if state & JOIN_INTEREST == 0 {
            // Nobody will read the output (JOIN_INTEREST never comes back).
            // A panic dropping it is swallowed, as in `clear_stage`: the
            // task is over, and unwinding from here would leave it neither
            // listed nor complete (leaked, its list reference forgotten).
            if let Some(outcome) = outcome.take() {
                let _ = catch_unwind(AssertUnwindSafe(move || drop(outcome)));
            }
            // SAFETY: runtime thread; nobody else reads the stage.
            unsafe { clear_stage(cell) };
            if state & JOIN_WAKER != 0 {
                // SAFETY: the handle is gone and left the slot to us.
                // (The bit is cleared with COMPLETE below.)
                drop(unsafe { (*header.join_waker.get()).take() });
            }
        } else if let Some(outcome) = outcome.take() {
            // SAFETY: runtime thread; the stage is Consumed and not borrowed;
            // the handle reads it only after seeing COMPLETE (set below with
            // Release).
            unsafe {
                ptr::write(
                    cell.stage.get().cast::<Stage<F>>(),
                    Stage::Finished(outcome),
                )
            };
        }
        if state & (JOIN_INTEREST | JOIN_WAKER) == JOIN_INTEREST | JOIN_WAKER {
            // A handle waits: set COMPLETE, wake it, then give up the
            // reference.
            let prev = header.state.fetch_or(COMPLETE, Ordering::AcqRel);
            if prev & JOIN_INTEREST == 0 {
                // Dropped meanwhile, before seeing COMPLETE: the output is
                // ours to drop.
                // SAFETY: runtime thread; nobody else reads the stage.
                unsafe { clear_stage(cell) };
            }
            // SAFETY: we set COMPLETE and hold the list's reference.
            unsafe {
                notify_join(header, prev);
                drop_ref(ptr);
            }
            return;
        }
        // No waker to wake: set COMPLETE and give up the list's reference
        // in one step, unless the handle changed something meanwhile.
        match header.state.compare_exchange_weak(
            state,
            ((state & !JOIN_WAKER) | COMPLETE) - REF_ONE,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(prev) => {
                // SAFETY: that gave up the list's reference.
                unsafe { dealloc_if_last(ptr, prev) };
                return;
            }
            Err(actual) => state = actual,
        }
    }
}

unsafe fn take_output_typed<F: Future>(ptr: NonNull<Header>, dst: *mut ()) {
    // SAFETY: task live (caller's promise).
    let cell = unsafe { ptr.cast::<Cell<F>>().as_ref() };
    let stage: *mut Stage<F> = cell.stage.get().cast();
    // SAFETY: the task is complete, so the runtime no longer touches the
    // stage, and only the JoinHandle (this caller) reads it; what is read
    // out is replaced at once without being dropped.
    let out = unsafe {
        match ptr::replace(stage, Stage::Consumed) {
            Stage::Finished(result) => result,
            // Cancelled at shutdown: the stage was dropped without an
            // outcome.
            Stage::Consumed => Err(JoinError::cancelled()),
            Stage::Running(_) => unreachable!("read_output on a running task"),
        }
    };
    // SAFETY: the caller promises dst is a Poll<Result<F::Output, JoinError>>
    // holding `Pending`, which needs no drop.
    unsafe {
        ptr::write(
            dst.cast::<Poll<Result<F::Output, JoinError>>>(),
            Poll::Ready(out),
        )
    };
    // SAFETY: the JoinHandle's reference (caller's promise), COMPLETE seen.
    if unsafe { release_complete_handle(&cell.header) } {
        // SAFETY: that was the last reference.
        unsafe { dealloc::<F>(ptr) };
    }
}

unsafe fn drop_stage_typed<F: Future>(ptr: NonNull<Header>) {
    // SAFETY: task live (caller's promise).
    let cell = unsafe { ptr.cast::<Cell<F>>().as_ref() };
    // SAFETY: nobody else touches the stage (caller's promise).
    unsafe { clear_stage(cell) };
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
    let ptr = NonNull::new(data as *mut Header).expect("null task waker");
    // SAFETY: an owned waker holds one reference, given up here.
    unsafe { schedule_by_value(ptr) }
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
