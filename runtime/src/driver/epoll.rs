//! The epoll driver: for machines where io_uring is refused.
//!
//! One epoll descriptor per runtime. The runtime's remote-wake eventfd is
//! registered in it, so wakes from other threads (the blocking pool,
//! wakers sent elsewhere) end a wait as they end `io_uring_enter`.
//!
//! **Readiness.** A descriptor is registered the first time an operation
//! waits on it: made non-blocking (`O_NONBLOCK`, as `accept`/`connect`
//! need; receives and sends pass `MSG_DONTWAIT` anyway) and added once,
//! edge-triggered, for both directions
//! (`EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET`). Its [`IoEntry`] keeps
//! what epoll last said (one "ready" bit per direction, both set at
//! registration since nothing is known yet) and the wakers of the tasks
//! waiting per direction. An operation (see `op/ready.rs`) performs its
//! system call while its direction is marked ready; `EAGAIN` clears the
//! bit and registers the waker, and the next edge (new bytes, room to
//! write, a hang-up or an error) sets it again and wakes every waiter of
//! that direction. No wake is lost: events are only taken in
//! [`EpollDriver::turn`], on this thread, never between an `EAGAIN` and
//! the clearing of the bit; and an edge that comes after the clearing is
//! reported by the next `epoll_wait`. Hang-ups and errors mark both
//! directions ready, so the system call reports them. A receive on a
//! stream socket that got fewer bytes than it asked for
//! ([`Operation::drained`](crate::op::Operation::drained)) clears the read
//! bit too ([`EpollDriver::mark_drained`]): the queue was empty when it
//! returned, so the next read waits for the next edge instead of asking
//! and being told `EAGAIN` (one system call less per request of a
//! request/response server); bytes that came after it make that edge.
//! Once epoll reported a hang-up or an error on the descriptor, a short
//! receive clears nothing: the end of the stream is read after the last
//! bytes, with no edge left to come.
//!
//! **Descriptor numbers are reused.** An entry is keyed by descriptor
//! number, so it must never outlive its file: closing a
//! [`SharedFd`](crate::op::SharedFd) on a runtime with this driver removes
//! the entry (`EPOLL_CTL_DEL`) before `close(2)`. A descriptor can also be
//! closed where this driver cannot be reached (after `block_on` returned,
//! or while the driver is borrowed); every close of a `SharedFd` on a
//! thread that has an epoll driver counts in a per-thread table of closes
//! per number ([`note_close`]), and an entry made before the latest close
//! of its number is stale: it is dropped and the new file registered
//! afresh. The epoll event's data carries a generation as well as the
//! number, so an event of an older registration is never taken for the
//! current one.
//!
//! **Stand-ins.** io_uring-only facilities have no system call to
//! perform: raw SQEs ([`crate::op::Op::submit`], [`crate::op::Multishot::submit`],
//! chains) get a slot here whose completion is `EOPNOTSUPP`
//! (`ErrorKind::Unsupported`), so their futures end with that error.
//!
//! **Blocking work.** Operations that may block (files, paths) run on the
//! blocking pool (see `op/ready.rs`); when their future is dropped while
//! the pool runs them, they are parked here ([`ParkedJob`]) until the pool
//! is done with their memory, and shutdown waits for them as the io_uring
//! driver waits for the kernel.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use slab::Slab;

use crate::driver::lifecycle::{Completion, Parked};
use crate::op::ready::ParkedJob;

/// The `ErrorKind::Unsupported` error of an io_uring-only facility used on
/// the epoll driver.
pub(crate) fn unsupported(facility: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "{facility}: needs io_uring, and this runtime runs on the epoll driver \
             (io_uring was refused on this system, or RUNTIME_DRIVER=epoll or \
             Builder::driver(DriverKind::Epoll) chose it)"
        ),
    )
}

/// The epoll data of the remote-wake eventfd.
const WAKE_TOKEN: u64 = u64::MAX;
/// The ready bit of the read direction.
const READ: u8 = 1;
/// The ready bit of the write direction.
const WRITE: u8 = 2;
/// How many events one `epoll_wait` takes.
const EVENTS: usize = 1024;
/// How many operations may complete on the spot (no waiting: the
/// descriptor was ready, or the call failed at once) between two turns of
/// the driver. On io_uring every operation waits for a completion, so a
/// task looping over operations yields each time; here one whose
/// operations keep succeeding or failing at once (an accept loop on a
/// listener another thread shut down answers `EINVAL` forever) would
/// never yield and starve every other task on the thread, signal
/// listeners included. Past this many, an operation wakes its task and
/// answers `Pending` without running: the task goes to the back of the
/// run queue and the driver turns before it runs again. Large enough that
/// a busy connection is not slowed (one turn per 128 operations is what
/// the scheduler's own `event_interval` allows for tasks), small enough
/// that the others run within microseconds.
const SYNC_BUDGET: u32 = 128;

/// A direction of readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Readable: bytes, a connection to accept, end of stream, an error.
    Read,
    /// Writable: room to send, a connect finished, an error.
    Write,
}

impl Direction {
    fn bit(self) -> u8 {
        match self {
            Direction::Read => READ,
            Direction::Write => WRITE,
        }
    }
}

thread_local! {
    /// Whether an epoll driver was ever created on this thread (closes are
    /// only counted then).
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    /// Closes of `SharedFd`s on this thread, per descriptor number.
    static CLOSES: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Counts a close of descriptor `fd` by its last `SharedFd` handle on this
/// thread, so that an epoll driver of this thread that registered the
/// number knows its entry is stale. One thread-local read when no epoll
/// driver was ever made on this thread.
pub(crate) fn note_close(fd: RawFd) {
    if !ACTIVE.with(Cell::get) || fd < 0 {
        return;
    }
    CLOSES.with(|c| {
        let mut c = c.borrow_mut();
        let i = fd as usize;
        if c.len() <= i {
            c.resize(i + 1, 0);
        }
        c[i] = c[i].wrapping_add(1);
    });
}

/// How many times descriptor number `fd` was closed on this thread.
fn closes_of(fd: RawFd) -> u32 {
    CLOSES.with(|c| c.borrow().get(fd as usize).copied().unwrap_or(0))
}

/// What the driver knows of one registered descriptor.
struct IoEntry {
    /// The generation of the registration (in the epoll data).
    generation: u32,
    /// [`closes_of`] the number when it was registered.
    closes: u32,
    /// `READ` / `WRITE`: epoll's last word (or not known yet).
    ready: u8,
    /// epoll refused the descriptor (`EPERM`: a regular file or a
    /// directory, always ready): operations never wait on it.
    pollable: bool,
    /// Whether it is a `SOCK_STREAM` socket, once asked.
    stream: Option<bool>,
    /// epoll reported a hang-up or an error: the end of the stream (or
    /// the error) is read after the bytes before it, and stays readable
    /// without another edge, so a short receive no longer clears the
    /// read bit.
    closed: bool,
    readers: Vec<Waker>,
    writers: Vec<Waker>,
}

impl IoEntry {
    fn waiters(&mut self, dir: Direction) -> &mut Vec<Waker> {
        match dir {
            Direction::Read => &mut self.readers,
            Direction::Write => &mut self.writers,
        }
    }
}

/// Adds `waker` to `list` unless it wakes the same task as one there.
fn add_waiter(list: &mut Vec<Waker>, waker: &Waker) {
    if !list.iter().any(|w| w.will_wake(waker)) {
        list.push(waker.clone());
    }
}

/// The epoll driver of one runtime.
pub(crate) struct EpollDriver {
    epfd: OwnedFd,
    wake_fd: RawFd,
    events: Vec<libc::epoll_event>,
    /// Registered descriptors, by number.
    fds: Vec<Option<IoEntry>>,
    next_generation: u32,
    /// Stand-ins of io_uring-only operations (whether multishot).
    stand_ins: Slab<bool>,
    /// Blocking operations whose futures are gone, until the pool is done.
    parked: Vec<ParkedJob>,
    /// Operations waiting for readiness or running on the pool.
    waiting: usize,
    released: Vec<Parked>,
    to_wake: Vec<Waker>,
    /// Operations started and completed, for metrics.
    started: u64,
    completed: u64,
    shutting_down: bool,
    abandoned: bool,
    /// Operations that may still complete without waiting before the
    /// next turn (see [`EpollDriver::spend_budget`]).
    budget: u32,
    /// `epoll_pwait2` works here (see [`EpollDriver::wait`]).
    pwait2: bool,
}

impl EpollDriver {
    /// A driver whose waits also end when `wake_fd` (the remote-wake
    /// eventfd) is written.
    pub(crate) fn new(wake_fd: RawFd) -> io::Result<EpollDriver> {
        // SAFETY: plain system call; the result is checked.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let epfd = unsafe { OwnedFd::from_raw_fd(epfd) };
        set_nonblocking(wake_fd)?;
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: WAKE_TOKEN,
        };
        // SAFETY: `ev` is a live epoll_event; both descriptors are open.
        if unsafe { libc::epoll_ctl(epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, wake_fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        ACTIVE.with(|a| a.set(true));
        Ok(EpollDriver {
            epfd,
            wake_fd,
            events: Vec::with_capacity(EVENTS),
            fds: Vec::new(),
            next_generation: 0,
            stand_ins: Slab::new(),
            parked: Vec::new(),
            waiting: 0,
            released: Vec::new(),
            to_wake: Vec::new(),
            started: 0,
            completed: 0,
            shutting_down: false,
            abandoned: false,
            budget: SYNC_BUDGET,
            pwait2: true,
        })
    }

    /// The entry of `fd`, registering the descriptor if it has none (or a
    /// stale one).
    fn entry(&mut self, fd: RawFd) -> io::Result<&mut IoEntry> {
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let i = fd as usize;
        if self.fds.len() <= i {
            self.fds.resize_with(i + 1, || None);
        }
        let closes = closes_of(fd);
        if self.fds[i].as_ref().is_some_and(|e| e.closes != closes) {
            // Closed where we could not hear of it: another file now.
            self.drop_entry(fd);
        }
        if self.fds[i].is_none() {
            let entry = self.register(fd, closes)?;
            self.fds[i] = Some(entry);
        }
        Ok(self.fds[i].as_mut().expect("registered above"))
    }

    /// Makes `fd` non-blocking and adds it to the epoll set.
    fn register(&mut self, fd: RawFd, closes: u32) -> io::Result<IoEntry> {
        set_nonblocking(fd)?;
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: (u64::from(generation) << 32) | u64::from(fd as u32),
        };
        let epfd = self.epfd.as_raw_fd();
        // SAFETY: `ev` is a live epoll_event; the caller's operation keeps
        // `fd` open.
        let mut ret = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if ret < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
            // Still in the set from an entry dropped without a DEL: take
            // it over with the new generation.
            // SAFETY: as above.
            ret = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_MOD, fd, &mut ev) };
        }
        let pollable = if ret < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EPERM) {
                return Err(err);
            }
            false
        } else {
            true
        };
        Ok(IoEntry {
            generation,
            closes,
            ready: READ | WRITE,
            pollable,
            stream: None,
            closed: false,
            readers: Vec::new(),
            writers: Vec::new(),
        })
    }

    /// Removes `fd`'s entry (and its epoll registration, if the file is
    /// still open); its waiters are woken, to find out for themselves.
    fn drop_entry(&mut self, fd: RawFd) {
        let Some(slot) = self.fds.get_mut(fd as usize) else {
            return;
        };
        let Some(entry) = slot.take() else { return };
        if entry.pollable {
            // SAFETY: plain system call; a descriptor that is closed or
            // another file answers an error, which changes nothing.
            unsafe {
                libc::epoll_ctl(
                    self.epfd.as_raw_fd(),
                    libc::EPOLL_CTL_DEL,
                    fd,
                    std::ptr::null_mut(),
                )
            };
        }
        self.to_wake.extend(entry.readers);
        self.to_wake.extend(entry.writers);
    }

    /// Whether `fd` is (or may be) ready in `dir`: `Ready(Ok)` to try the
    /// system call; `Pending` with `waker` registered if epoll said it is
    /// not. The first call registers the descriptor; its errors are
    /// returned.
    pub(crate) fn poll_ready(
        &mut self,
        fd: RawFd,
        dir: Direction,
        waker: &Waker,
    ) -> Poll<io::Result<()>> {
        let entry = match self.entry(fd) {
            Ok(entry) => entry,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if !entry.pollable || entry.ready & dir.bit() != 0 {
            return Poll::Ready(Ok(()));
        }
        add_waiter(entry.waiters(dir), waker);
        Poll::Pending
    }

    /// The system call on `fd` answered `EAGAIN`: `dir` is not ready
    /// until epoll says so; `waker` is woken then. Returns `false` if the
    /// descriptor cannot be waited on (epoll refused it).
    pub(crate) fn clear_ready(&mut self, fd: RawFd, dir: Direction, waker: &Waker) -> bool {
        let Ok(entry) = self.entry(fd) else {
            return false;
        };
        if !entry.pollable {
            return false;
        }
        entry.ready &= !dir.bit();
        add_waiter(entry.waiters(dir), waker);
        true
    }

    /// A receive on `fd` stopped short of what it asked: if `fd` is a
    /// stream socket its receive queue was empty then, so the read
    /// direction is not ready until the next edge (bytes that came after
    /// the receive make one), and the next read waits for it instead of
    /// asking first and being told `EAGAIN`. Not after a hang-up or an
    /// error was reported: the end of the stream or the error comes after
    /// the bytes, with no edge of its own left to come.
    pub(crate) fn mark_drained(&mut self, fd: RawFd) {
        let Some(Some(entry)) = self.fds.get_mut(fd as usize) else {
            return;
        };
        if entry.closed {
            return;
        }
        let stream = *entry.stream.get_or_insert_with(|| is_stream_socket(fd));
        if stream {
            entry.ready &= !READ;
        }
    }

    /// Closes `fd`, whose last `SharedFd` handle went: its entry goes
    /// first (so the number, once reused, starts afresh), then
    /// `close(2)`'s result.
    pub(crate) fn close(&mut self, fd: RawFd) -> io::Result<()> {
        self.drop_entry(fd);
        note_close(fd);
        // SAFETY: the caller owned the descriptor and this was its last
        // handle.
        if unsafe { libc::close(fd) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// A stand-in for an io_uring-only operation: its slot completes with
    /// `EOPNOTSUPP`.
    // Out of line: the io_uring path inlines its callers' other arm.
    #[cold]
    #[inline(never)]
    pub(crate) fn unsupported_op(&mut self, multishot: bool) -> usize {
        self.stand_ins.insert(multishot)
    }

    /// The completion of a stand-in (always its last), freeing the slot.
    // Out of line: the io_uring path inlines its callers' other arm.
    #[cold]
    #[inline(never)]
    pub(crate) fn poll_stand_in(&mut self, key: usize) -> Poll<(Completion, bool)> {
        if self.stand_ins.try_remove(key).is_none() {
            debug_assert!(false, "poll of an unknown stand-in {key}");
        }
        Poll::Ready((Completion::new(-libc::EOPNOTSUPP, 0), true))
    }

    /// The future of a stand-in went: its data is released.
    pub(crate) fn ignore(&mut self, key: usize, resources: Parked) {
        self.stand_ins.try_remove(key);
        self.released.push(resources);
    }

    /// Keeps a blocking operation whose future went until the pool is
    /// done with it.
    pub(crate) fn park(&mut self, job: ParkedJob) {
        self.parked.push(job);
    }

    /// Whether an operation may run on the spot now; `false` once
    /// [`SYNC_BUDGET`] operations did since the last turn (the caller then
    /// wakes its task and answers `Pending`). Each `true` spends one.
    pub(crate) fn spend_budget(&mut self) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        true
    }

    /// An operation was first polled.
    pub(crate) fn op_started(&mut self) {
        self.started += 1;
    }

    /// An operation completed (its output was made).
    pub(crate) fn op_completed(&mut self) {
        self.completed += 1;
    }

    /// An operation waits for readiness or runs on the pool (counted in
    /// [`in_flight`](Self::in_flight) until [`op_done_waiting`](Self::op_done_waiting)).
    pub(crate) fn op_waiting(&mut self) {
        self.waiting += 1;
    }

    /// An operation that [`op_waiting`](Self::op_waiting) no longer waits
    /// (done, or dropped).
    pub(crate) fn op_done_waiting(&mut self) {
        self.waiting = self.waiting.saturating_sub(1);
    }

    /// Releases parked operations the pool is done with.
    fn reap_parked(&mut self) {
        let mut i = 0;
        while i < self.parked.len() {
            if self.parked[i].is_done() {
                let job = self.parked.swap_remove(i);
                self.released.push(job.release());
            } else {
                i += 1;
            }
        }
    }

    /// One look at epoll: with `park`, wait for an event, at most
    /// `timeout` (if any).
    pub(crate) fn turn(&mut self, park: bool, timeout: Option<Duration>) {
        self.budget = SYNC_BUDGET;
        self.reap_parked();
        let wait = park && self.to_wake.is_empty() && self.released.is_empty();
        let timeout = if wait { timeout } else { Some(Duration::ZERO) };
        self.events.clear();
        let n = self.wait(timeout);
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                return;
            }
            panic!("epoll_wait failed: {err}");
        }
        // SAFETY: the kernel initialised the first n entries.
        unsafe { self.events.set_len(n as usize) };
        for i in 0..n as usize {
            let ev = self.events[i];
            let (bits, token) = (ev.events, ev.u64);
            if token == WAKE_TOKEN {
                self.drain_wake_fd();
                continue;
            }
            self.dispatch(token, bits);
        }
        self.reap_parked();
    }

    /// One `epoll_pwait2` (a nanosecond timeout, as the ring's timed waits
    /// have: timers fire on time), or, where the kernel lacks it (before
    /// 5.11) or a filter refuses it, `epoll_wait` with the timeout rounded
    /// up to milliseconds. `None` waits without limit. The events go to
    /// `self.events`' spare capacity; the result is the system call's.
    fn wait(&mut self, timeout: Option<Duration>) -> i32 {
        let (epfd, events) = (self.epfd.as_raw_fd(), self.events.as_mut_ptr());
        if self.pwait2 {
            let ts = timeout.map(|t| libc::timespec {
                tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
            });
            let tsp = ts
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `events` has room for EVENTS entries and the kernel
            // writes at most that many; `tsp` is null or a live timespec;
            // no signal mask.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_epoll_pwait2,
                    epfd,
                    events,
                    EVENTS as libc::c_int,
                    tsp,
                    std::ptr::null::<libc::sigset_t>(),
                    0usize,
                )
            };
            let refused = n < 0
                && matches!(
                    io::Error::last_os_error().raw_os_error(),
                    Some(libc::ENOSYS) | Some(libc::EPERM)
                );
            if !refused {
                return n as i32;
            }
            self.pwait2 = false;
        }
        let ms = match timeout {
            None => -1,
            // Rounded up: waking early would spin until the timer is due.
            Some(t) => t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
        };
        // SAFETY: as above.
        unsafe { libc::epoll_wait(epfd, events, EVENTS as i32, ms) }
    }

    /// Applies one event to its entry and wakes the waiters of the
    /// directions it made ready.
    fn dispatch(&mut self, token: u64, bits: u32) {
        let fd = token as u32 as usize;
        let generation = (token >> 32) as u32;
        let Some(Some(entry)) = self.fds.get_mut(fd) else {
            return;
        };
        if entry.generation != generation {
            // An event of an earlier registration of this number.
            return;
        }
        let mut ready = 0;
        let hup_or_err = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
        if bits & (hup_or_err | libc::EPOLLRDHUP as u32) != 0 {
            entry.closed = true;
        }
        if bits & ((libc::EPOLLIN | libc::EPOLLPRI | libc::EPOLLRDHUP) as u32 | hup_or_err) != 0 {
            ready |= READ;
        }
        if bits & (libc::EPOLLOUT as u32 | hup_or_err) != 0 {
            ready |= WRITE;
        }
        entry.ready |= ready;
        if ready & READ != 0 {
            self.to_wake.append(&mut entry.readers);
        }
        if ready & WRITE != 0 {
            self.to_wake.append(&mut entry.writers);
        }
    }

    /// Resets the remote-wake eventfd's counter.
    fn drain_wake_fd(&mut self) {
        let mut buf = 0u64;
        // SAFETY: reads 8 bytes into a live u64 from our non-blocking
        // eventfd (EAGAIN if another read got there first).
        unsafe { libc::read(self.wake_fd, (&mut buf as *mut u64).cast(), 8) };
    }

    /// Waits, up to `grace`, for the pool to finish the parked operations;
    /// those it does not finish in time are leaked, never freed.
    pub(crate) fn shutdown(&mut self, grace: Duration) {
        self.shutting_down = true;
        let deadline = Instant::now() + grace;
        loop {
            self.reap_parked();
            if self.parked.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                self.abandoned = true;
                for job in self.parked.drain(..) {
                    job.leak();
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Wakers of waiting operations belong to dropped tasks.
        for entry in self.fds.iter_mut().flatten() {
            self.to_wake.append(&mut entry.readers);
            self.to_wake.append(&mut entry.writers);
        }
    }

    /// Whether the runtime is shutting down.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Whether shutdown leaked operations the pool did not finish.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.abandoned
    }

    /// Wakers collected during shutdown belong to dropped tasks.
    pub(crate) fn clear_wakers(&mut self) {
        self.to_wake.clear();
    }

    /// Resources to drop outside the driver's borrow.
    pub(crate) fn take_released(&mut self) -> Vec<Parked> {
        std::mem::take(&mut self.released)
    }

    /// Moves the wakers to wake into `out` (an empty vector whose
    /// allocation is swapped in).
    pub(crate) fn swap_wakers(&mut self, out: &mut Vec<Waker>) {
        std::mem::swap(&mut self.to_wake, out);
    }

    /// Operations started and completed so far.
    pub(crate) fn counters(&self) -> (u64, u64) {
        (self.started, self.completed)
    }

    /// Operations waiting for readiness, running on the pool (also those
    /// whose future went) and stand-ins not yet polled.
    pub(crate) fn in_flight(&self) -> usize {
        self.waiting + self.parked.len() + self.stand_ins.len()
    }

    /// Whether `fd` has an entry (registered), for tests.
    #[cfg(test)]
    fn is_registered(&self, fd: RawFd) -> bool {
        self.fds.get(fd as usize).is_some_and(Option::is_some)
    }
}

/// Whether `fd` is a `SOCK_STREAM` socket.
fn is_stream_socket(fd: RawFd) -> bool {
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `ty` and `len` are live and sized for SO_TYPE's int.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    ret == 0 && ty == libc::SOCK_STREAM
}

/// Sets `O_NONBLOCK` on `fd` (if not set yet).
fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain system call on a descriptor the caller keeps open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::Ordering;

    use crate::test_util::counter;

    /// A driver and its wake eventfd (which the caller keeps open).
    fn driver() -> (EpollDriver, OwnedFd) {
        // SAFETY: plain system call; checked.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        assert!(efd >= 0);
        // SAFETY: a fresh descriptor.
        let efd = unsafe { OwnedFd::from_raw_fd(efd) };
        (EpollDriver::new(efd.as_raw_fd()).unwrap(), efd)
    }

    /// Wakes the collected wakers, returning how many there were.
    fn wake_all(d: &mut EpollDriver) -> usize {
        let mut out = Vec::new();
        d.swap_wakers(&mut out);
        let n = out.len();
        out.into_iter().for_each(Waker::wake);
        n
    }

    #[test]
    fn readiness_is_cleared_on_eagain_and_set_by_the_next_edge() {
        let (mut d, _efd) = driver();
        let (a, mut b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let (count, waker) = counter();
        // Unknown at first: try the system call.
        assert!(d.poll_ready(fd, Direction::Read, &waker).is_ready());
        assert!(d.is_registered(fd));
        // Registration made it non-blocking.
        // SAFETY: plain system call on an open descriptor.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        assert_ne!(flags & libc::O_NONBLOCK, 0);
        // The system call said EAGAIN.
        assert!(d.clear_ready(fd, Direction::Read, &waker));
        assert!(d.poll_ready(fd, Direction::Read, &waker).is_pending());
        // Writing is unaffected.
        assert!(d.poll_ready(fd, Direction::Write, &waker).is_ready());
        // Drain events that registration produced (both directions ready
        // then: writable, not readable), then an edge: bytes arrive.
        d.turn(false, None);
        wake_all(&mut d);
        assert!(d.poll_ready(fd, Direction::Read, &waker).is_pending());
        let before = count.0.load(Ordering::SeqCst);
        b.write_all(b"x").unwrap();
        // Bounded: the event is there already.
        d.turn(true, Some(Duration::from_secs(10)));
        assert!(wake_all(&mut d) >= 1);
        assert!(count.0.load(Ordering::SeqCst) > before);
        assert!(d.poll_ready(fd, Direction::Read, &waker).is_ready());
    }

    #[test]
    fn an_edge_before_the_turn_is_not_lost_and_wakes_every_waiter() {
        let (mut d, _efd) = driver();
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let (c1, w1) = counter();
        let (c2, w2) = counter();
        assert!(d.poll_ready(fd, Direction::Read, &w1).is_ready());
        d.turn(false, None);
        wake_all(&mut d);
        // Two tasks found nothing to read.
        assert!(d.clear_ready(fd, Direction::Read, &w1));
        assert!(d.poll_ready(fd, Direction::Read, &w2).is_pending());
        // Bytes arrive while nobody looks at epoll.
        b.write_all(b"hello").unwrap();
        d.turn(true, Some(Duration::from_secs(10)));
        assert_eq!(wake_all(&mut d), 2);
        assert_eq!(c1.0.load(Ordering::SeqCst), 1);
        assert_eq!(c2.0.load(Ordering::SeqCst), 1);
        // A partial read leaves the direction ready, without a new edge.
        let mut one = [0u8; 1];
        a.read_exact(&mut one).unwrap();
        d.turn(false, None);
        assert!(d.poll_ready(fd, Direction::Read, &w1).is_ready());
        // Drained: EAGAIN, cleared; the next write is a new edge.
        let mut rest = [0u8; 16];
        assert_eq!(a.read(&mut rest).unwrap(), 4);
        assert_eq!(
            a.read(&mut rest).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert!(d.clear_ready(fd, Direction::Read, &w1));
        b.write_all(b"again").unwrap();
        d.turn(true, Some(Duration::from_secs(10)));
        assert_eq!(wake_all(&mut d), 1);
        assert!(d.poll_ready(fd, Direction::Read, &w1).is_ready());
    }

    #[test]
    fn a_close_elsewhere_makes_the_entry_stale_and_the_number_starts_afresh() {
        let (mut d, _efd) = driver();
        let (a, mut b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let (_c, waker) = counter();
        assert!(d.poll_ready(fd, Direction::Read, &waker).is_ready());
        assert!(d.clear_ready(fd, Direction::Read, &waker));
        let first = d.fds[fd as usize].as_ref().unwrap().generation;
        // The number was closed where the driver could not hear of it (and
        // is now, as far as the driver can tell, another file): simulated
        // by counting a close without closing, so that no other test
        // thread can take the number meanwhile.
        note_close(fd);
        // A stale entry is never trusted: the file is registered again
        // (EEXIST -> MOD here, as the same file is still in the set), with
        // a new generation and "ready" (nothing known yet).
        assert!(d.poll_ready(fd, Direction::Read, &waker).is_ready());
        let entry = d.fds[fd as usize].as_ref().unwrap();
        assert_ne!(entry.generation, first);
        // And events reach the new registration.
        assert!(d.clear_ready(fd, Direction::Read, &waker));
        d.turn(false, None);
        wake_all(&mut d);
        b.write_all(b"x").unwrap();
        d.turn(true, Some(Duration::from_secs(10)));
        assert!(d.poll_ready(fd, Direction::Read, &waker).is_ready());
        // An event of the old generation is ignored.
        assert!(d.clear_ready(fd, Direction::Read, &waker));
        let stale = (u64::from(first) << 32) | u64::from(fd as u32);
        d.dispatch(stale, libc::EPOLLIN as u32);
        assert!(d.poll_ready(fd, Direction::Read, &waker).is_pending());
    }

    #[test]
    fn close_forgets_the_entry_and_wakes_its_waiters() {
        let (mut d, _efd) = driver();
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(a);
        let (count, waker) = counter();
        assert!(d.poll_ready(fd, Direction::Read, &waker).is_ready());
        assert!(d.clear_ready(fd, Direction::Read, &waker));
        d.close(fd).unwrap();
        assert!(!d.is_registered(fd));
        assert_eq!(wake_all(&mut d), 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_drained_stream_waits_for_the_next_edge_and_a_datagram_socket_does_not() {
        let (mut d, _efd) = driver();
        let (a, mut b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let (count, waker) = counter();
        assert!(d.poll_ready(fd, Direction::Read, &waker).is_ready());
        d.turn(false, None);
        wake_all(&mut d);
        // A short receive: not ready, without a system call saying EAGAIN.
        d.mark_drained(fd);
        assert!(d.poll_ready(fd, Direction::Read, &waker).is_pending());
        // Writing is unaffected.
        assert!(d.poll_ready(fd, Direction::Write, &waker).is_ready());
        // Bytes that come after it are an edge that wakes the reader.
        b.write_all(b"more").unwrap();
        d.turn(true, Some(Duration::from_secs(10)));
        assert!(wake_all(&mut d) >= 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(d.poll_ready(fd, Direction::Read, &waker).is_ready());
        // A datagram socket's short receive says nothing of what is
        // queued behind it: the direction stays ready.
        let (u, _v) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let ufd = u.as_raw_fd();
        assert!(d.poll_ready(ufd, Direction::Read, &waker).is_ready());
        d.mark_drained(ufd);
        assert!(d.poll_ready(ufd, Direction::Read, &waker).is_ready());
        // An unregistered number is left alone.
        d.mark_drained(ufd + 1000);
        assert!(!d.is_registered(ufd + 1000));
        // Once the peer hung up, the end of the stream is read after the
        // last bytes without another edge: a short receive leaves the
        // direction ready.
        drop(b);
        d.turn(true, Some(Duration::from_secs(10)));
        wake_all(&mut d);
        d.mark_drained(fd);
        assert!(d.poll_ready(fd, Direction::Read, &waker).is_ready());
    }

    #[test]
    fn regular_files_are_always_ready_and_bad_numbers_are_errors() {
        let (mut d, _efd) = driver();
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let (_c, waker) = counter();
        let fd = file.as_raw_fd();
        assert!(d.poll_ready(fd, Direction::Read, &waker).is_ready());
        // epoll cannot wait on it: EAGAIN is not waited for.
        assert!(!d.clear_ready(fd, Direction::Read, &waker));
        assert!(d.poll_ready(fd, Direction::Read, &waker).is_ready());
        let Poll::Ready(Err(e)) = d.poll_ready(-1, Direction::Read, &waker) else {
            panic!("a negative descriptor must be an error");
        };
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn a_remote_wake_ends_the_wait_and_is_drained() {
        let (mut d, efd) = driver();
        let one = 1u64;
        // SAFETY: writes a live u64 to the eventfd.
        let n = unsafe { libc::write(efd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        assert_eq!(n, 8);
        // Would wait 10 s if the eventfd were not in the set; the test
        // asserts the drain, not the time.
        d.turn(true, Some(Duration::from_secs(10)));
        let mut buf = 0u64;
        // SAFETY: reads 8 bytes into a live u64 (non-blocking eventfd).
        let n = unsafe { libc::read(efd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
        assert_eq!(n, -1, "the counter was reset by the turn");
        // The same through epoll_wait, where epoll_pwait2 is refused.
        d.pwait2 = false;
        // SAFETY: as above.
        let n = unsafe { libc::write(efd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        assert_eq!(n, 8);
        d.turn(true, Some(Duration::from_secs(10)));
        // SAFETY: as above.
        let n = unsafe { libc::read(efd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
        assert_eq!(n, -1, "the counter was reset by the turn");
        // A timed wait with nothing to wake it ends (bounded: 1 ms), both
        // ways.
        d.turn(true, Some(Duration::from_micros(200)));
        d.pwait2 = true;
        d.turn(true, Some(Duration::from_micros(200)));
    }

    #[test]
    fn stand_ins_complete_with_eopnotsupp() {
        let (mut d, _efd) = driver();
        let key = d.unsupported_op(false);
        assert_eq!(d.in_flight(), 1);
        let Poll::Ready((c, last)) = d.poll_stand_in(key) else {
            unreachable!()
        };
        assert!(last);
        assert_eq!(c.result().unwrap_err().kind(), io::ErrorKind::Unsupported);
        assert_eq!(d.in_flight(), 0);
        let key = d.unsupported_op(true);
        d.ignore(key, Box::new(vec![1u8]));
        assert_eq!(d.in_flight(), 0);
        assert_eq!(d.take_released().len(), 1);
    }
}
