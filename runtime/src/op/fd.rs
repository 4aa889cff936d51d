//! `SharedFd`: a descriptor that stays open while any operation on it is in
//! the kernel.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::{Rc, Weak};

use io_uring::{opcode, types};

use crate::driver::epoll;
use crate::op::Op;
use crate::scheduler::{current, current_ptr, expect_current, Core};

/// A file descriptor shared by its owner and by the operations in flight
/// on it: an ordinary descriptor, or a **direct descriptor** (a slot of
/// the ring's registered file table, see [`op::direct_table`](crate::op::direct_table)).
///
/// Every operation that names the descriptor keeps a clone of the
/// `SharedFd` in its data, and operation data lives until the kernel's
/// last CQE for it (see [`op`](crate::op)). The descriptor is closed when
/// the last clone goes, so its number is never closed, nor reused for
/// another file, while the kernel may still use it. Closing goes through
/// the ring (`IORING_OP_CLOSE`) when a runtime is running on this thread,
/// so it never blocks the ring; otherwise (and on the epoll driver, which
/// first forgets the descriptor's readiness) it is a plain `close(2)`. A
/// direct descriptor is closed on the ring that owns it (or vanishes with
/// that ring).
///
/// Build SQEs with [`with_target!`](crate::with_target), which names a
/// direct descriptor with `IOSQE_FIXED_FILE` and an ordinary one by
/// number.
#[derive(Clone)]
pub struct SharedFd {
    inner: Rc<Inner>,
}

struct Inner {
    kind: Kind,
    /// Whether reads at once (`preadv2` with `RWF_NOWAIT`, see
    /// [`SharedFd::nowait_reads`]) are worth trying on this descriptor.
    nowait: Cell<Nowait>,
}

/// What is known about reads at once on a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Nowait {
    /// Not asked yet.
    Unknown,
    /// A regular file opened without `O_DIRECT`: worth trying; the last
    /// `misses` attempts found none of their bytes cached.
    Yes { misses: u8 },
    /// As `Yes`, but the last attempts kept missing: the next `left`
    /// reads go the usual way without trying (see
    /// [`SharedFd::nowait_missed`]).
    Resting { left: u16, misses: u8 },
    /// Not a regular file, `O_DIRECT`, a direct or registered descriptor,
    /// or the kernel or file system refused `RWF_NOWAIT`: never tried
    /// again.
    No,
}

/// Reads at once that find nothing cached, in a row, before a descriptor
/// rests from them ([`SharedFd::nowait_missed`]).
const MISSES_BEFORE_REST: u8 = 4;
/// The most reads a descriptor that keeps missing skips the attempt for
/// (a power of two).
const MAX_REST: u16 = 64;

impl Inner {
    fn new(kind: Kind) -> Inner {
        Inner {
            kind,
            nowait: Cell::new(Nowait::Unknown),
        }
    }
}

enum Kind {
    Fd(RawFd),
    /// A slot of the table of the runtime `owner`.
    Direct {
        slot: u32,
        owner: Weak<Core>,
    },
    /// An ordinary descriptor also installed in slot `slot` of `owner`'s
    /// table: SQEs on that runtime name the slot, everything else the
    /// descriptor.
    Registered {
        fd: RawFd,
        slot: u32,
        owner: Weak<Core>,
    },
}

/// Takes ownership of the descriptor a successful operation created
/// (accept, openat, socket; see `Operation::creates`): an ordinary
/// descriptor, or with `direct` a slot the kernel picked in the current
/// runtime's direct-descriptor table.
pub(crate) fn claim_created(result: u32, direct: bool) -> SharedFd {
    if direct {
        SharedFd::from_direct(result)
    } else {
        // SAFETY: the kernel just created this descriptor for the
        // operation whose result this is, and nobody else has it.
        SharedFd::new(unsafe { OwnedFd::from_raw_fd(result as RawFd) })
    }
}

impl SharedFd {
    /// Takes ownership of a descriptor.
    pub fn new(fd: OwnedFd) -> SharedFd {
        SharedFd {
            inner: Rc::new(Inner::new(Kind::Fd(fd.into_raw_fd()))),
        }
    }

    /// Takes ownership of slot `slot` of the current runtime's
    /// direct-descriptor table (e.g. the result of an accept with
    /// `IORING_FILE_INDEX_ALLOC`). The slot is closed when the last clone
    /// goes. Only operations submitted on this runtime can use it: on any
    /// other, [`with_target!`](crate::with_target) names descriptor `-1`
    /// and the operation fails with `EBADF`.
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub fn from_direct(slot: u32) -> SharedFd {
        let core = expect_current("runtime::op::SharedFd::from_direct");
        core.driver.borrow_mut().claim_direct();
        SharedFd {
            inner: Rc::new(Inner::new(Kind::Direct {
                slot,
                owner: Rc::downgrade(&core),
            })),
        }
    }

    /// The descriptor number, for system calls and building SQEs; `-1`
    /// for a direct descriptor (which has no number outside its ring:
    /// a system call on `-1` fails with `EBADF`). Valid while this handle
    /// (or a clone) lives.
    pub fn raw(&self) -> RawFd {
        raw_of_inner(&self.inner)
    }

    /// The descriptor, borrowed; `None` for a direct descriptor.
    pub fn borrow_fd(&self) -> Option<BorrowedFd<'_>> {
        match self.inner.kind {
            Kind::Fd(fd) | Kind::Registered { fd, .. } => {
                // SAFETY: the descriptor stays open while any handle lives,
                // and the borrow cannot outlive this handle; it is not -1.
                Some(unsafe { BorrowedFd::borrow_raw(fd) })
            }
            Kind::Direct { .. } => None,
        }
    }

    /// Whether this is a direct descriptor (a slot of a ring's table,
    /// with no descriptor number).
    pub fn is_direct(&self) -> bool {
        matches!(self.inner.kind, Kind::Direct { .. })
    }

    /// Whether this is an ordinary descriptor also installed in a ring's
    /// table (see [`register`](Self::register)).
    pub fn is_registered(&self) -> bool {
        matches!(self.inner.kind, Kind::Registered { .. })
    }

    /// The slot of a ring's table this descriptor is or is installed in,
    /// if any.
    pub fn direct_slot(&self) -> Option<u32> {
        match self.inner.kind {
            Kind::Fd(_) => None,
            Kind::Direct { slot, .. } | Kind::Registered { slot, .. } => Some(slot),
        }
    }

    /// Installs this ordinary descriptor in a free slot of the current
    /// runtime's direct-descriptor table as well and returns the handle
    /// that uses it: operations submitted with
    /// [`with_target!`](crate::with_target) on this runtime name the slot
    /// (no per-operation file lookup in the kernel); system calls, and
    /// operations on any other runtime, keep using the descriptor, so
    /// nothing else changes. Dropping the last clone frees both.
    ///
    /// The slot comes from the part of the table the runtime hands out
    /// itself (the last eighth, see
    /// [`Builder::direct_descriptors`](crate::Builder::direct_descriptors)),
    /// installed with a plain system call (`IORING_REGISTER_FILES_UPDATE`):
    /// nothing is left in flight. `ENFILE` when that part is full;
    /// `ErrorKind::Unsupported` on the epoll driver. A
    /// descriptor that is already direct or registered comes back as it
    /// is. If clones of this handle are alive (operations in flight), the
    /// new handle owns a duplicate of the descriptor (`F_DUPFD_CLOEXEC`)
    /// and the old one closes with its last clone.
    ///
    /// ```
    /// use runtime::op::SharedFd;
    ///
    /// # runtime::block_on(async {
    /// let file = std::fs::File::open("/dev/null")?;
    /// let fd = SharedFd::new(file.into()).register()?;
    /// assert!(fd.is_registered());
    /// assert!(fd.raw() >= 0 && fd.direct_slot().is_some());
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub fn register(self) -> io::Result<SharedFd> {
        if !matches!(self.inner.kind, Kind::Fd(_)) {
            return Ok(self);
        }
        let core = expect_current("runtime::op::SharedFd::register");
        let slot = core.driver.borrow_mut().install_direct(self.raw())?;
        let fd = match Rc::try_unwrap(self.inner) {
            Ok(inner) => {
                let fd = raw_of_inner(&inner);
                // The new handle takes the descriptor over: no close here.
                std::mem::forget(inner);
                fd
            }
            Err(shared) => {
                // SAFETY: F_DUPFD_CLOEXEC on a descriptor `shared` keeps
                // open; the duplicate is ours.
                let dup = unsafe { libc::fcntl(raw_of_inner(&shared), libc::F_DUPFD_CLOEXEC, 0) };
                if dup < 0 {
                    let err = io::Error::last_os_error();
                    core.driver.borrow_mut().close_direct(slot);
                    return Err(err);
                }
                dup
            }
        };
        Ok(SharedFd {
            inner: Rc::new(Inner::new(Kind::Registered {
                fd,
                slot,
                owner: Rc::downgrade(&core),
            })),
        })
    }

    /// Installs the descriptor's file in a free slot of the current
    /// runtime's direct-descriptor table (as [`register`](Self::register)
    /// does) and returns a direct descriptor of that slot only (no number;
    /// see [`from_direct`](Self::from_direct)); this handle is dropped, so
    /// its descriptor is closed once its last clone goes. A direct
    /// descriptor comes back as it is.
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub fn into_direct(self) -> io::Result<SharedFd> {
        if self.is_direct() {
            return Ok(self);
        }
        let core = expect_current("runtime::op::SharedFd::into_direct");
        let slot = core.driver.borrow_mut().install_direct(self.raw())?;
        // The slot holds its own reference to the file: the descriptor
        // (and, for a registered one, its other slot) can go.
        drop(self);
        Ok(SharedFd {
            inner: Rc::new(Inner::new(Kind::Direct {
                slot,
                owner: Rc::downgrade(&core),
            })),
        })
    }

    /// The slot to name with `IOSQE_FIXED_FILE` in an SQE submitted on the
    /// runtime running now: `Some` only for a direct descriptor of that
    /// runtime. Used by [`with_target!`](crate::with_target).
    #[doc(hidden)]
    pub fn sqe_slot(&self) -> Option<u32> {
        match &self.inner.kind {
            Kind::Direct { slot, owner } | Kind::Registered { slot, owner, .. }
                if std::ptr::eq(owner.as_ptr(), current_ptr()) =>
            {
                Some(*slot)
            }
            _ => None,
        }
    }

    /// Whether reads at once (`preadv2` with `RWF_NOWAIT`) are worth
    /// trying on this descriptor: an ordinary descriptor (not a direct or
    /// registered one, whose operations name a slot of the ring's table)
    /// of a regular file opened without `O_DIRECT` (which would wait for
    /// the device). Asked of the kernel once per handle (`fstat` and
    /// `F_GETFL`) and remembered, as is
    /// [`no_nowait_reads`](Self::no_nowait_reads).
    pub(crate) fn nowait_reads(&self) -> bool {
        match self.inner.nowait.get() {
            Nowait::Yes { .. } => return true,
            Nowait::Resting { left, misses } => {
                self.inner.nowait.set(if left > 1 {
                    Nowait::Resting {
                        left: left - 1,
                        misses,
                    }
                } else {
                    Nowait::Yes { misses }
                });
                return false;
            }
            Nowait::No => return false,
            Nowait::Unknown => {}
        }
        let plain = match self.inner.kind {
            Kind::Fd(fd) => Some(fd),
            Kind::Direct { .. } | Kind::Registered { .. } => None,
        };
        let worth = plain.is_some_and(|fd| {
            let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
            // SAFETY: fstat fills the stat struct it is given; `fd` is
            // open while this handle lives.
            let stat = unsafe { libc::fstat(fd, st.as_mut_ptr()) };
            // SAFETY: F_GETFL takes no memory argument.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            stat == 0
                && flags >= 0
                && flags & libc::O_DIRECT == 0
                // SAFETY: fstat returned 0, so it initialised the struct.
                && unsafe { st.assume_init() }.st_mode & libc::S_IFMT == libc::S_IFREG
        });
        self.inner.nowait.set(if worth {
            Nowait::Yes { misses: 0 }
        } else {
            Nowait::No
        });
        worth
    }

    /// Notes an attempt at a read at once that found none of its bytes in
    /// the page cache. A file read mostly from the device (larger than the
    /// cache, or read once) would otherwise pay a failed `preadv2` before
    /// every read: after [`MISSES_BEFORE_REST`] misses in a row the next
    /// reads go the usual way without trying, 1 read after the first
    /// such streak, then 2, 4, ... up to [`MAX_REST`] while the misses go
    /// on, so a file whose pages come back into the cache is tried again
    /// soon, and one that stays cold costs a failed attempt per
    /// [`MAX_REST`] reads at most.
    pub(crate) fn nowait_missed(&self) {
        let Nowait::Yes { misses } = self.inner.nowait.get() else {
            return;
        };
        let misses = misses.saturating_add(1);
        self.inner.nowait.set(if misses >= MISSES_BEFORE_REST {
            let shift = u32::from(misses - MISSES_BEFORE_REST).min(MAX_REST.trailing_zeros());
            Nowait::Resting {
                left: 1 << shift,
                misses,
            }
        } else {
            Nowait::Yes { misses }
        });
    }

    /// Notes an attempt at a read at once that got bytes: the misses in a
    /// row are over.
    pub(crate) fn nowait_hit(&self) {
        if let Nowait::Yes { misses } = self.inner.nowait.get() {
            if misses != 0 {
                self.inner.nowait.set(Nowait::Yes { misses: 0 });
            }
        }
    }

    /// Remembers that reads at once do not work on this descriptor (the
    /// kernel or the file system refused `RWF_NOWAIT`).
    pub(crate) fn no_nowait_reads(&self) {
        self.inner.nowait.set(Nowait::No);
    }

    /// The descriptor as an io_uring SQE target, for an ordinary
    /// descriptor. A direct descriptor gives `Fd(-1)` here (so an SQE built
    /// with it fails with `EBADF`); use [`with_target!`](crate::with_target)
    /// where a direct descriptor may appear.
    pub fn target(&self) -> types::Fd {
        types::Fd(self.raw())
    }

    /// Closes the descriptor through the ring and reports the result of
    /// `close(2)` (which matters for files: a deferred write error can show
    /// up there).
    ///
    /// If operations on it are still in flight (futures dropped before
    /// their completion), the descriptor is closed when the last of them
    /// finishes, and this returns `Ok(())` at once.
    pub async fn close(self) -> io::Result<()> {
        let mut inner = match Rc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(_shared) => return Ok(()),
        };
        match &inner.kind {
            Kind::Fd(_) => {}
            Kind::Registered { fd, slot, owner } => {
                // The slot goes first; the descriptor is closed below.
                close_slot(*slot, owner);
                inner.kind = Kind::Fd(*fd);
            }
            Kind::Direct { .. } => {
                // No close(2) result to report for a slot: the drop frees
                // it (on the runtime that owns it).
                drop(inner);
                return Ok(());
            }
        }
        let fd = raw_of_inner(&inner);
        // The descriptor is closed here, not by the drop (an `Inner` of
        // kind `Fd` owns nothing else).
        std::mem::forget(inner);
        if let Some(closed) = close_on_epoll(fd) {
            return closed;
        }
        epoll::note_close(fd);
        if current().is_none() {
            // SAFETY: we own fd and nobody else uses it any more.
            return if unsafe { libc::close(fd) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            };
        }
        // SAFETY: a close SQE refers to no memory.
        let op = unsafe { Op::submit((), |_| opcode::Close::new(types::Fd(fd)).build()) };
        let (completion, ()) = op.await;
        completion.result().map(drop)
    }
}

/// Builds an SQE on a [`SharedFd`](crate::op::SharedFd): `$t` is bound to
/// `types::Fixed(slot)` for a direct descriptor of the running runtime
/// (the io-uring crate then sets `IOSQE_FIXED_FILE`) and to
/// `types::Fd(fd)` otherwise (`Fd(-1)`, hence `EBADF`, for a direct
/// descriptor of another runtime), and `$body` is evaluated with it.
///
/// ```
/// use runtime::op::{io_uring::opcode, Op, SharedFd};
///
/// # runtime::block_on(async {
/// let (r, w) = std::io::pipe()?;
/// let fd = SharedFd::new(r.into());
/// # use std::io::Write; (&w).write_all(b"hi")?;
/// let buf = vec![0u8; 2];
/// // SAFETY: the SQE points into the Vec's heap buffer and names the
/// // descriptor, both owned by the op's data until its completion.
/// let op = unsafe {
///     Op::submit((fd.clone(), buf), |(fd, b)| {
///         runtime::with_target!(fd, |t| opcode::Read::new(t, b.as_mut_ptr(), 2).build())
///     })
/// };
/// let (completion, (_fd, buf)) = op.await;
/// assert_eq!(completion.result()?, 2);
/// assert_eq!(buf, b"hi");
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
#[macro_export]
macro_rules! with_target {
    ($fd:expr, |$t:ident| $body:expr) => {{
        let fd: &$crate::op::SharedFd = &$fd;
        match fd.sqe_slot() {
            ::std::option::Option::Some(slot) => {
                let $t = $crate::op::io_uring::types::Fixed(slot);
                $body
            }
            ::std::option::Option::None => {
                let $t = $crate::op::io_uring::types::Fd(fd.raw());
                $body
            }
        }
    }};
}

impl AsRawFd for SharedFd {
    /// `-1` for a direct descriptor (see [`SharedFd::raw`]).
    fn as_raw_fd(&self) -> RawFd {
        self.raw()
    }
}

impl AsFd for SharedFd {
    /// # Panics
    ///
    /// For a direct descriptor, which has no number outside its ring (use
    /// [`SharedFd::borrow_fd`] where one may appear).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.borrow_fd()
            .expect("a direct descriptor (io_uring fixed file) has no file descriptor number")
    }
}

impl fmt::Debug for SharedFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.kind {
            Kind::Fd(fd) => f.debug_tuple("SharedFd").field(&fd).finish(),
            Kind::Direct { slot, .. } => f.debug_struct("SharedFd").field("direct", &slot).finish(),
            Kind::Registered { fd, slot, .. } => f
                .debug_struct("SharedFd")
                .field("fd", &fd)
                .field("registered", &slot)
                .finish(),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        match &self.kind {
            Kind::Fd(fd) => close_fd(*fd),
            Kind::Direct { slot, owner } => close_slot(*slot, owner),
            Kind::Registered { fd, slot, owner } => {
                close_slot(*slot, owner);
                close_fd(*fd);
            }
        }
    }
}

/// Closes an ordinary descriptor whose last handle went: through the
/// ring of the runtime running here, or directly.
fn close_fd(fd: RawFd) {
    if let Some(core) = current() {
        if let Ok(mut driver) = core.driver.try_borrow_mut() {
            if let Some(epoll) = driver.epoll() {
                // Nobody to report an error to (as for the ring's close).
                let _ = epoll.close(fd);
                return;
            }
            epoll::note_close(fd);
            if !driver.is_shutting_down() {
                // SAFETY: a close SQE refers to no memory; this was the
                // last handle, so no operation uses the descriptor any
                // more.
                unsafe { driver.submit_detached(opcode::Close::new(types::Fd(fd)).build()) };
                return;
            }
        }
    }
    // No runtime on this thread (or it is busy, or shutting down and
    // submitting nothing more): close directly.
    epoll::note_close(fd);
    // SAFETY: we own the descriptor and this is its last handle.
    unsafe { libc::close(fd) };
}

/// On a runtime with the epoll driver: forgets the descriptor's readiness
/// entry and closes it with `close(2)`, giving the result; `None`
/// elsewhere (no runtime, another driver, or the driver busy: the caller
/// closes it, and the driver learns of it from `epoll::note_close`).
fn close_on_epoll(fd: RawFd) -> Option<io::Result<()>> {
    let core = current()?;
    let mut driver = core.driver.try_borrow_mut().ok()?;
    Some(driver.epoll()?.close(fd))
}

/// Frees a slot of `owner`'s table whose last handle went.
fn close_slot(slot: u32, owner: &Weak<Core>) {
    // A ring that is gone took its table with it.
    let Some(core) = owner.upgrade() else { return };
    match core.driver.try_borrow_mut() {
        Ok(mut driver) => driver.close_direct(slot),
        // Busy: closed at the runtime's next turn.
        Err(_) => core.direct_closes.borrow_mut().push(slot),
    };
}

/// The descriptor of a handle, `-1` for a direct one.
fn raw_of_inner(inner: &Inner) -> RawFd {
    match inner.kind {
        Kind::Fd(fd) | Kind::Registered { fd, .. } => fd,
        Kind::Direct { .. } => -1,
    }
}

#[cfg(test)]
mod tests {
    use super::{SharedFd, MAX_REST, MISSES_BEFORE_REST};

    /// How many calls of `nowait_reads` in a row say no, then the next
    /// says yes (bounded).
    fn rest_length(fd: &SharedFd) -> u32 {
        let mut skipped = 0;
        while !fd.nowait_reads() {
            skipped += 1;
            assert!(skipped <= 1000, "the descriptor never tries again");
        }
        skipped
    }

    #[test]
    fn reads_at_once_rest_after_misses_in_a_row_and_resume_after_a_hit() {
        let path = std::env::temp_dir().join(format!("fd-nowait-{}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let fd = SharedFd::new(std::fs::File::open(&path).unwrap().into());
        std::fs::remove_file(&path).unwrap();
        assert!(fd.nowait_reads(), "a regular file is worth trying");
        // Fewer misses than the limit, then a hit: no rest at all.
        for _ in 1..MISSES_BEFORE_REST {
            fd.nowait_missed();
            assert!(fd.nowait_reads());
        }
        fd.nowait_hit();
        for _ in 1..MISSES_BEFORE_REST {
            fd.nowait_missed();
            assert!(fd.nowait_reads());
        }
        // The streak reaches the limit: rests of 1, 2, 4, ... reads, each
        // after one more miss, up to the cap.
        let mut rests = Vec::new();
        for _ in 0..10 {
            fd.nowait_missed();
            rests.push(rest_length(&fd));
        }
        assert_eq!(rests, [1, 2, 4, 8, 16, 32, 64, 64, 64, 64]);
        assert_eq!(*rests.last().unwrap(), u32::from(MAX_REST));
        // A hit ends the streak: the limit counts again from zero.
        fd.nowait_hit();
        for _ in 1..MISSES_BEFORE_REST {
            fd.nowait_missed();
            assert!(fd.nowait_reads());
        }
        fd.nowait_missed();
        assert_eq!(rest_length(&fd), 1);
    }

    #[test]
    fn descriptors_never_worth_trying_stay_so() {
        let (r, _w) = std::io::pipe().unwrap();
        let fd = SharedFd::new(r.into());
        assert!(!fd.nowait_reads(), "a pipe is not a regular file");
        fd.nowait_missed();
        fd.nowait_hit();
        assert!(!fd.nowait_reads());
        let path = std::env::temp_dir().join(format!("fd-nowait-no-{}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let file = SharedFd::new(std::fs::File::open(&path).unwrap().into());
        std::fs::remove_file(&path).unwrap();
        file.no_nowait_reads();
        file.nowait_hit();
        assert!(!file.nowait_reads(), "a refusal is remembered");
    }
}
