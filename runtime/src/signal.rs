//! Unix signals as futures: [`ctrl_c`], [`signal`] and [`Signal::recv`].
//!
//! ```no_run
//! #[runtime::main]
//! async fn main() -> std::io::Result<()> {
//!     let mut term = runtime::signal::signal(libc::SIGTERM)?;
//!     runtime::spawn(async {
//!         // ... serve ...
//!     });
//!     term.recv().await;
//!     println!("SIGTERM: shutting down");
//!     Ok(())
//! }
//! ```
//!
//! # Design
//!
//! A signal is sent to a process, and the kernel runs its handler on
//! whichever thread of the process does not block it: a runtime's thread, a
//! blocking-pool thread, a thread the program started itself. The handler
//! interrupts that thread anywhere, even inside `malloc` or with a lock
//! held, so it may do only async-signal-safe things. Ours does two: it sets
//! the signal's *pending* flag (an atomic) and writes to an eventfd opened
//! non-blocking, saving and restoring `errno` around the write. Nothing
//! else: no lock, no allocation, no waker.
//!
//! Turning that into wake-ups is the job of one *dispatcher* thread
//! (`runtime-signal`), started by the first call to [`signal`] and parked in
//! `poll(2)` on the eventfd for the rest of the process. When the eventfd
//! fires it resets it, takes every pending flag, and for each signal found
//! increments that signal's *generation* counter and wakes every [`Signal`]
//! waiting for it. Wakers are `Send + Sync`, so a [`Signal`] can live on any
//! runtime, on any thread, or in another executor altogether.
//!
//! Why a thread and not the rings: a signal belongs to the process while a
//! ring belongs to one thread. With a thread, it does not matter which
//! thread the kernel picks, how many runtimes listen (each of them is woken
//! by an ordinary cross-thread wake), or whether a runtime is busy with a
//! long computation when the signal comes (the others hear it anyway). The
//! cost is one thread parked in `poll`, only in processes that ask for
//! signals, and a thread hop of latency, which is nothing next to a signal's
//! own.
//!
//! Nothing is lost between the handler and the dispatcher: the handler sets
//! the flag *before* it writes the eventfd, and the dispatcher reads the
//! eventfd *before* it takes the flags; so every flag set is followed by a
//! write that the dispatcher has yet to read, and it will look again. (If
//! the eventfd cannot take another write, an unread write is pending
//! already.)
//!
//! Nothing is lost between two [`Signal::recv`] calls either: each
//! [`Signal`] remembers the generation it last reported, and `recv` returns
//! at once when the counter has moved on, whether the signal came while the
//! task was waiting or while it was busy elsewhere. Several deliveries
//! between two `recv` calls coalesce into one, as the kernel coalesces a
//! standard signal pending twice. Every [`Signal`] for a number is woken by
//! each delivery: two listeners on two runtimes both see it.
//!
//! # What listening changes
//!
//! The first [`signal`] call for a number installs the handler for it
//! (`sigaction` with `SA_RESTART`, so that system calls interrupted on other
//! threads are restarted) and the handler stays for the life of the
//! process, even after every [`Signal`] is dropped: restoring the old
//! disposition while a delivery is in flight would race with it. So once a
//! program listens for SIGINT or SIGTERM, those signals no longer terminate
//! it; the program decides what they do (a second Ctrl-C that exits at once
//! is the program's to implement). A delivery with no [`Signal`] alive is
//! counted and otherwise ignored. The handler replaces whatever disposition
//! was there, including `SIG_IGN` and a handler set by other code, which is
//! no longer called.
//!
//! A process forked without `exec` inherits the handler but not the
//! dispatcher thread: its [`Signal`]s never fire. `exec` resets caught
//! signals to their default actions and closes the eventfd (`O_CLOEXEC`).

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use slab::Slab;

/// One more than the largest signal number Linux has (`SIGRTMAX` is 64).
const NSIG: usize = 65;

/// Set by the handler when signal `i` arrives; taken by the dispatcher.
static PENDING: [AtomicBool; NSIG] = [const { AtomicBool::new(false) }; NSIG];

/// The eventfd the handler writes to, or -1 before the dispatcher exists.
/// Set once and never closed (the dispatcher owns it and never returns).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// Everything that is not touched by the handler.
static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    dispatcher: false,
    slots: [const { Slot::new() }; NSIG],
});

struct Registry {
    /// The dispatcher thread runs and `WAKE_FD` is set.
    dispatcher: bool,
    slots: [Slot; NSIG],
}

/// The state of one signal number.
struct Slot {
    /// Our handler is installed for this number.
    installed: bool,
    /// How many times the dispatcher found this signal pending.
    generation: u64,
    /// One entry per live [`Signal`]: the waker of its pending `recv`.
    waiters: Slab<Option<Waker>>,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            installed: false,
            generation: 0,
            waiters: Slab::new(),
        }
    }
}

fn registry() -> MutexGuard<'static, Registry> {
    // Nothing panics while holding the lock (wakers are woken and dropped
    // after it is released), but a poisoned lock would still hold
    // consistent data.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A listener for one signal number, made by [`signal`]; [`recv`] waits for
/// the next delivery.
///
/// `Send` and `Sync`: it can be moved to and awaited on any runtime or
/// thread, and is not tied to the runtime it was created on.
///
/// [`recv`]: Signal::recv
pub struct Signal {
    signum: usize,
    /// This listener's entry in the slot's `waiters`.
    key: usize,
    /// The generation last reported by `recv` (or current at creation).
    seen: u64,
}

/// Listens for signal `signum` (for example `libc::SIGTERM`): the returned
/// [`Signal`]'s [`recv`](Signal::recv) completes once for each delivery from
/// now on (several deliveries between two `recv` calls may count as one).
///
/// The first call for a number installs a handler for it that stays until
/// the process ends: the signal's default action (terminating, for SIGINT
/// and SIGTERM) no longer happens; see the [module docs](self). Works
/// inside or outside a runtime; the first call in a process starts the
/// `runtime-signal` thread.
///
/// # Errors
///
/// `ErrorKind::InvalidInput` for a number that is not a signal (outside
/// `1..=SIGRTMAX`), for SIGKILL and SIGSTOP (which cannot be caught), for
/// SIGSEGV, SIGBUS, SIGILL and SIGFPE (raised by a faulting instruction,
/// which a handler that returns would run again forever), and for the
/// real-time numbers the C library keeps for itself (below `SIGRTMIN`).
/// The error of `eventfd`, of starting the thread or of `sigaction`
/// otherwise.
pub fn signal(signum: i32) -> io::Result<Signal> {
    let index = check(signum)?;
    let mut reg = registry();
    if !reg.dispatcher {
        start_dispatcher()?;
        reg.dispatcher = true;
    }
    let slot = &mut reg.slots[index];
    if !slot.installed {
        install(signum)?;
        slot.installed = true;
    }
    Ok(Signal {
        signum: index,
        key: slot.waiters.insert(None),
        seen: slot.generation,
    })
}

/// Waits for the next SIGINT (Ctrl-C in a terminal).
///
/// Shorthand for `signal(libc::SIGINT)?.recv().await`: the listener is
/// installed when the future is first polled, and from then on SIGINT no
/// longer terminates the process (see the [module docs](self)).
///
/// # Errors
///
/// Those of [`signal`] (starting the dispatcher thread or installing the
/// handler failed).
pub async fn ctrl_c() -> io::Result<()> {
    let mut sigint = signal(libc::SIGINT)?;
    sigint.recv().await;
    Ok(())
}

impl Signal {
    /// Waits for the next delivery of the signal: one that came after the
    /// previous `recv` returned (or after [`signal`] made this listener, for
    /// the first call), even if it came while nobody was awaiting `recv`.
    ///
    /// Cancel-safe: dropping the future before it completes loses nothing;
    /// the next `recv` reports the delivery instead.
    ///
    /// Returns `Some(())` for a delivery; never returns `None` in this
    /// implementation (the handler, once installed, stays for the life of
    /// the process, so there is always a next delivery to wait for). The
    /// `Option` leaves room for a listener that can be closed.
    pub async fn recv(&mut self) -> Option<()> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<()>> {
        let mut reg = registry();
        let slot = &mut reg.slots[self.signum];
        let entry = &mut slot.waiters[self.key];
        if slot.generation != self.seen {
            self.seen = slot.generation;
            let old = entry.take();
            drop(reg);
            drop(old);
            return Poll::Ready(Some(()));
        }
        let old = match entry {
            Some(w) if w.will_wake(cx.waker()) => None,
            _ => entry.replace(cx.waker().clone()),
        };
        drop(reg);
        // A waker's drop may run arbitrary code: not under the lock.
        drop(old);
        Poll::Pending
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        let old = registry().slots[self.signum].waiters.remove(self.key);
        drop(old);
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("signum", &self.signum)
            .field("seen", &self.seen)
            .finish()
    }
}

/// The slot index of `signum`, or why it cannot be listened for.
fn check(signum: i32) -> io::Result<usize> {
    let invalid = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    let name = match signum {
        libc::SIGKILL => Some("SIGKILL"),
        libc::SIGSTOP => Some("SIGSTOP"),
        _ => None,
    };
    if let Some(name) = name {
        return invalid(format!("{name} cannot be caught"));
    }
    let fault = match signum {
        libc::SIGSEGV => Some("SIGSEGV"),
        libc::SIGBUS => Some("SIGBUS"),
        libc::SIGILL => Some("SIGILL"),
        libc::SIGFPE => Some("SIGFPE"),
        _ => None,
    };
    if let Some(name) = fault {
        return invalid(format!(
            "{name} reports a faulting instruction; a handler that returns would run it again"
        ));
    }
    let max = libc::SIGRTMAX();
    if signum < 1 || signum > max {
        return invalid(format!("{signum} is not a signal number (1..={max})"));
    }
    // 32 and 33 (with glibc) are used by the C library's threads.
    let rtmin = libc::SIGRTMIN();
    if signum > 31 && signum < rtmin {
        return invalid(format!(
            "signal {signum} is reserved by the C library (real-time signals start at {rtmin})"
        ));
    }
    match usize::try_from(signum) {
        Ok(i) if i < NSIG => Ok(i),
        _ => invalid(format!("{signum} is not a signal number")),
    }
}

/// Installs the handler for `signum`.
fn install(signum: i32) -> io::Result<()> {
    // SAFETY: an all-zero `sigaction` is a valid value (no handler, no
    // flags, empty mask) that the fields below complete.
    let mut action: libc::sigaction = unsafe { mem::zeroed() };
    action.sa_sigaction = handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SA_RESTART: system calls that the handler interrupts on other threads
    // restart rather than fail with EINTR. SA_ONSTACK: a thread that set up
    // an alternate stack (Rust's threads do, for stack overflows) runs the
    // handler there, which is harmless for one this small.
    action.sa_flags = libc::SA_RESTART | libc::SA_ONSTACK;
    // SAFETY: `sa_mask` is a valid sigset_t inside `action`.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is a complete, valid sigaction whose handler is
    // async-signal-safe (see `handler`); the old action is not asked for.
    if unsafe { libc::sigaction(signum, &action, ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The signal handler: async-signal-safe (atomics and one `write(2)`), and
/// leaves `errno` as it found it.
extern "C" fn handler(signum: libc::c_int) {
    // SAFETY: `__errno_location` returns this thread's errno, always valid.
    let errno = unsafe { *libc::__errno_location() };
    if let Some(flag) = usize::try_from(signum).ok().and_then(|i| PENDING.get(i)) {
        flag.store(true, Ordering::SeqCst);
    }
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to the eventfd, which is
        // never closed. It is non-blocking: if the counter is full (it
        // cannot be in practice) the write fails with EAGAIN, and an unread
        // write is pending anyway.
        unsafe { libc::write(fd, (&one as *const u64).cast(), mem::size_of::<u64>()) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Creates the eventfd and starts the thread that reads it. Called once,
/// under the registry lock, before any handler is installed.
fn start_dispatcher() -> io::Result<()> {
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = fd.as_raw_fd();
    std::thread::Builder::new()
        .name("runtime-signal".to_string())
        .spawn(move || dispatch(fd))?;
    WAKE_FD.store(raw, Ordering::SeqCst);
    Ok(())
}

/// The dispatcher thread: waits for the handler's writes and turns pending
/// flags into generations and wake-ups. Never returns (it owns `fd`, which
/// the handler may write to at any time).
fn dispatch(fd: OwnedFd) {
    let mut woken: Vec<Waker> = Vec::new();
    loop {
        let mut pollfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; no timeout. EINTR (a signal handled on
        // this thread) just goes round again.
        unsafe { libc::poll(&mut pollfd, 1, -1) };
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; resets the counter. EAGAIN
        // (a spurious wake-up) is harmless: the flags are looked at anyway.
        unsafe {
            libc::read(
                fd.as_raw_fd(),
                (&mut count as *mut u64).cast(),
                mem::size_of::<u64>(),
            )
        };
        {
            let mut reg = registry();
            for (signum, flag) in PENDING.iter().enumerate() {
                if flag.swap(false, Ordering::SeqCst) {
                    let slot = &mut reg.slots[signum];
                    slot.generation += 1;
                    woken.extend(slot.waiters.iter_mut().filter_map(|(_, w)| w.take()));
                }
            }
        }
        // Woken outside the lock: another executor's wake may run arbitrary
        // code, which could call back into this module.
        for waker in woken.drain(..) {
            waker.wake();
        }
    }
}
