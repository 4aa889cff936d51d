//! The choice of driver: [`DriverKind`], how the default is decided, and
//! [`AnyDriver`], the driver a runtime's `Core` holds, which forwards each
//! call to the io_uring driver ([`Driver`]) or to the epoll driver
//! ([`EpollDriver`]).
//!
//! The choice is made once, when the runtime is built. On the io_uring
//! path a call costs one match on a discriminant that never changes for
//! the runtime (a perfectly predicted branch), with no allocation and no
//! indirection added: the io_uring driver lives inline in the enum.
//!
//! The methods below that exist only for io_uring facilities (the raw
//! submission API, chains, direct descriptors, registered and provided
//! buffers) answer on the epoll driver with `ErrorKind::Unsupported`
//! errors naming the facility, or with stand-in operations whose
//! completion is `EOPNOTSUPP` (see `epoll.rs`).

use std::io;
use std::os::fd::RawFd;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use io_uring::squeue;

use crate::driver::epoll::{unsupported, EpollDriver};
use crate::driver::lifecycle::{Completion, Creates, Parked};
use crate::driver::probe::Features;
use crate::driver::resources::GroupKind;
use crate::driver::setup::RingConfig;
use crate::driver::Driver;

/// The mechanism a runtime performs its I/O with.
///
/// The default runtime uses io_uring, and the epoll driver when the
/// kernel refuses io_uring (`io_uring_setup` answers `EPERM`: a seccomp
/// filter such as a container's default profile, or the sysctl
/// `kernel.io_uring_disabled`; `ENOSYS`: a kernel without it; `ENOMEM`:
/// too little locked memory for the rings; or the kernel's io_uring lacks
/// a feature this runtime needs). The environment variable
/// `RUNTIME_DRIVER=io_uring|epoll` overrides that default;
/// [`Builder::driver`](crate::Builder::driver) insists on one.
///
/// On the epoll driver every socket, file, timer and task API works with
/// the same results and errors; facilities that only io_uring has (buffer
/// rings, registered files and buffers, direct descriptors, `SEND_ZC`,
/// linked chains, raw [`op::Op::submit`](crate::op::Op::submit)
/// submissions, multishot receives and polls) answer
/// `ErrorKind::Unsupported`.
///
/// ```
/// let rt = runtime::Runtime::builder()
///     .driver(runtime::DriverKind::Epoll)
///     .build()?;
/// assert_eq!(rt.features().driver, runtime::DriverKind::Epoll);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    /// Linux io_uring: operations are submitted to the kernel's rings.
    IoUring,
    /// epoll readiness: sockets are waited on with `epoll_wait` and their
    /// operations performed as non-blocking system calls; files and paths
    /// run on the blocking pool.
    Epoll,
}

impl DriverKind {
    /// Parses the value of `RUNTIME_DRIVER`.
    pub(crate) fn from_env_value(value: &str) -> io::Result<DriverKind> {
        match value {
            "io_uring" | "io-uring" | "iouring" | "uring" => Ok(DriverKind::IoUring),
            "epoll" => Ok(DriverKind::Epoll),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the environment variable RUNTIME_DRIVER must be `io_uring` or `epoll`, \
                     got {other:?}"
                ),
            )),
        }
    }
}

/// How the driver of a runtime is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DriverChoice {
    /// io_uring, or epoll where io_uring is refused.
    Auto,
    /// This one, or the error of setting it up.
    Only(DriverKind),
}

/// Whether a failure to set up io_uring means "io_uring is refused here"
/// (the default then runs on epoll) rather than a bad setting: the kinds
/// `setup_error` and `missing_feature` give for `EPERM`, `ENOSYS`,
/// `ENOMEM` and a kernel whose io_uring lacks what the runtime needs.
fn io_uring_refused(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported | io::ErrorKind::OutOfMemory
    )
}

/// The driver of one runtime.
// The io_uring driver stays inline: boxing it would add an indirection to
// every call on the hot path; the epoll one is boxed instead.
#[allow(clippy::large_enum_variant)]
pub(crate) enum AnyDriver {
    /// io_uring.
    Uring(Driver),
    /// epoll readiness (boxed: it is the rare one, and the io_uring
    /// variant's size is what matters).
    Epoll(Box<EpollDriver>),
}

/// Forwards a call to the io_uring driver, or evaluates `$epoll` with the
/// epoll driver bound to `$e`.
macro_rules! either {
    ($self:ident, |$d:ident| $uring:expr, |$e:ident| $epoll:expr) => {
        match $self {
            AnyDriver::Uring($d) => $uring,
            AnyDriver::Epoll($e) => $epoll,
        }
    };
}

impl AnyDriver {
    /// The driver `config` asks for (see [`DriverKind`] for the default).
    pub(crate) fn new(config: &RingConfig, wake_fd: i32) -> io::Result<AnyDriver> {
        match config.driver {
            DriverChoice::Only(DriverKind::IoUring) => {
                Driver::new(config, wake_fd).map(AnyDriver::Uring)
            }
            DriverChoice::Only(DriverKind::Epoll) => {
                EpollDriver::new(wake_fd).map(|e| AnyDriver::Epoll(Box::new(e)))
            }
            DriverChoice::Auto => match Driver::new(config, wake_fd) {
                Ok(d) => Ok(AnyDriver::Uring(d)),
                Err(e) if io_uring_refused(&e) => {
                    EpollDriver::new(wake_fd).map(|e| AnyDriver::Epoll(Box::new(e)))
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Which driver this is.
    pub(crate) fn kind(&self) -> DriverKind {
        match self {
            AnyDriver::Uring(_) => DriverKind::IoUring,
            AnyDriver::Epoll(_) => DriverKind::Epoll,
        }
    }

    /// See [`Driver::msg_ring_usable`]. On epoll: never (wakes go by the
    /// eventfd).
    pub(crate) fn msg_ring_usable(&self) -> bool {
        either!(self, |d| d.msg_ring_usable(), |_e| false)
    }

    /// See [`Driver::msg_ring_receivable`]. On epoll: never.
    pub(crate) fn msg_ring_receivable(&self) -> bool {
        either!(self, |d| d.msg_ring_receivable(), |_e| false)
    }

    /// See [`Driver::ring_fd`]. On epoll there is no ring: `-1` (never
    /// asked for, since [`msg_ring_receivable`](Self::msg_ring_receivable)
    /// is false there).
    pub(crate) fn ring_fd(&self) -> RawFd {
        either!(self, |d| d.ring_fd(), |_e| -1)
    }

    /// See [`Driver::push_msg_rings`]. On epoll: nothing is sent (never
    /// called, since [`msg_ring_usable`](Self::msg_ring_usable) is false).
    pub(crate) fn push_msg_rings(&mut self, targets: impl Iterator<Item = RawFd>) -> u64 {
        either!(self, |d| d.push_msg_rings(targets), |_e| 0)
    }

    /// See [`Driver::take_msg_failures`]. On epoll: none.
    pub(crate) fn take_msg_failures(&mut self, out: &mut Vec<(u64, usize)>) {
        either!(self, |d| d.take_msg_failures(out), |_e| ())
    }

    /// See [`Driver::sq_is_empty`]. On epoll there is no queue: true.
    pub(crate) fn sq_is_empty(&mut self) -> bool {
        either!(self, |d| d.sq_is_empty(), |_e| true)
    }

    /// See [`Driver::msg_counters`]. On epoll: none sent or received.
    pub(crate) fn msg_counters(&self) -> (u64, u64) {
        either!(self, |d| d.msg_counters(), |_e| (0, 0))
    }

    /// The epoll driver, if this is it.
    pub(crate) fn epoll(&mut self) -> Option<&mut EpollDriver> {
        match self {
            AnyDriver::Uring(_) => None,
            AnyDriver::Epoll(e) => Some(e),
        }
    }

    /// See [`Driver::submit`]. On epoll: a stand-in operation that
    /// completes with `EOPNOTSUPP`.
    ///
    /// # Safety
    ///
    /// As for [`Driver::submit`].
    #[inline(always)]
    pub(crate) unsafe fn submit(
        &mut self,
        entry: squeue::Entry,
        multishot: bool,
        creates: Creates,
    ) -> usize {
        match self {
            // SAFETY: forwarded from the caller.
            AnyDriver::Uring(d) => unsafe { d.submit(entry, multishot, creates) },
            AnyDriver::Epoll(e) => e.unsupported_op(multishot),
        }
    }

    /// See [`Driver::submit_detached`]. On epoll the entry is dropped
    /// unsubmitted (the only caller, closing a descriptor, closes it
    /// directly on epoll instead).
    ///
    /// # Safety
    ///
    /// As for [`Driver::submit_detached`].
    pub(crate) unsafe fn submit_detached(&mut self, entry: squeue::Entry) {
        match self {
            // SAFETY: forwarded from the caller.
            AnyDriver::Uring(d) => unsafe { d.submit_detached(entry) },
            AnyDriver::Epoll(_) => {}
        }
    }

    /// See [`Driver::reserve`]. On epoll: a stand-in operation that
    /// completes with `EOPNOTSUPP`.
    pub(crate) fn reserve(
        &mut self,
        entry: squeue::Entry,
        creates: Creates,
    ) -> (usize, squeue::Entry) {
        either!(self, |d| d.reserve(entry, creates), |e| {
            let key = e.unsupported_op(false);
            (key, entry.user_data(key as u64))
        })
    }

    /// See [`Driver::skip_success_flag`].
    pub(crate) fn skip_success_flag(&self) -> squeue::Flags {
        either!(self, |d| d.skip_success_flag(), |_e| squeue::Flags::empty())
    }

    /// See [`Driver::features`]. On epoll: no io_uring facility at all.
    pub(crate) fn features(&mut self) -> Features {
        either!(self, |d| d.features(), |_e| Features::readiness_only())
    }

    /// See [`Driver::max_chain`]; 0 on epoll (no chains).
    pub(crate) fn max_chain(&self) -> usize {
        either!(self, |d| d.max_chain(), |_e| 0)
    }

    /// See [`Driver::push_chain`]; `Unsupported` on epoll.
    ///
    /// # Safety
    ///
    /// As for [`Driver::push_chain`].
    pub(crate) unsafe fn push_chain(&mut self, entries: &[squeue::Entry]) -> io::Result<()> {
        // SAFETY: forwarded from the caller.
        either!(self, |d| unsafe { d.push_chain(entries) }, |_e| Err(
            unsupported(
                "linked chains of operations (runtime::op::Link, submit_with_timeout on a raw Op)"
            )
        ))
    }

    /// See [`Driver::complete_locally`]. On epoll the stand-in already
    /// completes with `EOPNOTSUPP`, which is kept.
    pub(crate) fn complete_locally(&mut self, user_data: u64, result: i32) {
        either!(self, |d| d.complete_locally(user_data, result), |_e| ())
    }

    /// See [`Driver::close_direct`]; nothing on epoll (no table).
    pub(crate) fn close_direct(&mut self, slot: u32) {
        either!(self, |d| d.close_direct(slot), |_e| ())
    }

    /// See [`Driver::install_direct`]; `Unsupported` on epoll.
    pub(crate) fn install_direct(&mut self, fd: RawFd) -> io::Result<u32> {
        either!(self, |d| d.install_direct(fd), |_e| Err(unsupported(
            "direct descriptors (SharedFd::register, SharedFd::into_direct, into_direct)"
        )))
    }

    /// See [`Driver::claim_direct`].
    pub(crate) fn claim_direct(&mut self) {
        either!(self, |d| d.claim_direct(), |_e| ())
    }

    /// See [`Driver::direct_slot_free`]; `Ok(false)` on epoll: accepts
    /// that would go into the table use ordinary descriptors.
    pub(crate) fn direct_slot_free(&mut self) -> io::Result<bool> {
        either!(self, |d| d.direct_slot_free(), |_e| Ok(false))
    }

    /// See [`Driver::direct_held`].
    pub(crate) fn direct_held(&self) -> u32 {
        either!(self, |d| d.direct_held(), |_e| 0)
    }

    /// See [`Driver::direct_table`]; `Unsupported` on epoll.
    pub(crate) fn direct_table(&mut self) -> io::Result<u32> {
        either!(self, |d| d.direct_table(), |_e| Err(unsupported(
            "the direct-descriptor table (runtime::op::direct_table)"
        )))
    }

    /// See [`Driver::alloc_buffer_slots`]; `Unsupported` on epoll.
    pub(crate) fn alloc_buffer_slots(&mut self, count: u32) -> io::Result<u32> {
        either!(self, |d| d.alloc_buffer_slots(count), |_e| Err(
            unsupported("registered buffers (runtime::fixed::FixedBufPool)")
        ))
    }

    /// See [`Driver::update_buffer_slots`]; `Unsupported` on epoll.
    ///
    /// # Safety
    ///
    /// As for [`Driver::update_buffer_slots`].
    pub(crate) unsafe fn update_buffer_slots(
        &self,
        offset: u32,
        iovecs: &[libc::iovec],
    ) -> io::Result<u32> {
        match self {
            // SAFETY: forwarded from the caller.
            AnyDriver::Uring(d) => unsafe { d.update_buffer_slots(offset, iovecs) },
            AnyDriver::Epoll(_) => Err(unsupported(
                "registered buffers (runtime::fixed::FixedBufPool)",
            )),
        }
    }

    /// See [`Driver::free_buffer_slots`].
    pub(crate) fn free_buffer_slots(&mut self, offset: u32, count: u32) -> io::Result<()> {
        either!(self, |d| d.free_buffer_slots(offset, count), |_e| Ok(()))
    }

    /// See [`Driver::clear_buffer_slots`].
    pub(crate) fn clear_buffer_slots(&self, offset: u32, count: u32) -> io::Result<()> {
        either!(self, |d| d.clear_buffer_slots(offset, count), |_e| Ok(()))
    }

    /// See [`Driver::release_buffer_slots`].
    pub(crate) fn release_buffer_slots(&mut self, offset: u32, count: u32) {
        either!(self, |d| d.release_buffer_slots(offset, count), |_e| ())
    }

    /// See [`Driver::register_buf_ring`]; `Unsupported` on epoll.
    ///
    /// # Safety
    ///
    /// As for [`Driver::register_buf_ring`].
    pub(crate) unsafe fn register_buf_ring(
        &mut self,
        ring_addr: u64,
        entries: u32,
        wanted: Option<u16>,
        kind: GroupKind,
    ) -> io::Result<u16> {
        either!(
            self,
            // SAFETY: forwarded from the caller.
            |d| unsafe { d.register_buf_ring(ring_addr, entries, wanted, kind) },
            |_e| Err(unsupported(
                "provided-buffer rings (runtime::bufring::BufRing, runtime::sendring)"
            ))
        )
    }

    /// See [`Driver::unregister_buf_ring`].
    pub(crate) fn unregister_buf_ring(&self, bgid: u16) -> io::Result<()> {
        either!(self, |d| d.unregister_buf_ring(bgid), |_e| Ok(()))
    }

    /// See [`Driver::buf_ring_head`]; `Unsupported` on epoll.
    pub(crate) fn buf_ring_head(&self, bgid: u16) -> io::Result<u16> {
        either!(self, |d| d.buf_ring_head(bgid), |_e| Err(unsupported(
            "provided-buffer rings"
        )))
    }

    /// See [`Driver::cancel`]; nothing to cancel on epoll.
    pub(crate) fn cancel(&mut self, user_data: u64) {
        either!(self, |d| d.cancel(user_data), |_e| ())
    }

    /// See [`Driver::ignore`].
    pub(crate) fn ignore(&mut self, key: usize, resources: Parked) {
        either!(self, |d| d.ignore(key, resources), |e| e
            .ignore(key, resources))
    }

    /// See [`Driver::request_cancel`].
    pub(crate) fn request_cancel(&mut self, key: usize) {
        either!(self, |d| d.request_cancel(key), |_e| ())
    }

    /// See [`Driver::take_released`].
    pub(crate) fn take_released(&mut self) -> Vec<Parked> {
        either!(self, |d| d.take_released(), |e| e.take_released())
    }

    /// See [`Driver::swap_wakers`].
    pub(crate) fn swap_wakers(&mut self, out: &mut Vec<Waker>) {
        either!(self, |d| d.swap_wakers(out), |e| e.swap_wakers(out))
    }

    /// See [`Driver::turn`].
    pub(crate) fn turn(&mut self, park: bool, timeout: Option<Duration>) {
        either!(self, |d| d.turn(park, timeout), |e| e.turn(park, timeout))
    }

    /// See [`Driver::shutdown`].
    pub(crate) fn shutdown(&mut self, grace: Duration) {
        either!(self, |d| d.shutdown(grace), |e| e.shutdown(grace))
    }

    /// See [`Driver::is_shutting_down`].
    pub(crate) fn is_shutting_down(&self) -> bool {
        either!(self, |d| d.is_shutting_down(), |e| e.is_shutting_down())
    }

    /// See [`Driver::clear_wakers`].
    pub(crate) fn clear_wakers(&mut self) {
        either!(self, |d| d.clear_wakers(), |e| e.clear_wakers())
    }

    /// See [`Driver::is_abandoned`].
    pub(crate) fn is_abandoned(&self) -> bool {
        either!(self, |d| d.is_abandoned(), |e| e.is_abandoned())
    }

    /// See [`Driver::setup_flags`]; 0 on epoll.
    pub(crate) fn setup_flags(&self) -> u32 {
        either!(self, |d| d.setup_flags(), |_e| 0)
    }

    /// See [`Driver::counters`]; on epoll, operations started and
    /// completed.
    pub(crate) fn counters(&self) -> (u64, u64) {
        either!(self, |d| d.counters(), |e| e.counters())
    }

    /// See [`Driver::poll_multi`].
    pub(crate) fn poll_multi(
        &mut self,
        key: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(Completion, bool)>> {
        either!(self, |d| d.poll_multi(key, cx), |e| e
            .poll_stand_in(key)
            .map(Some))
    }

    /// See [`Driver::is_ignored`].
    pub(crate) fn is_ignored(&self, key: usize) -> bool {
        either!(self, |d| d.is_ignored(key), |_e| false)
    }

    /// See [`Driver::in_flight`]; on epoll, the operations waiting for
    /// readiness or running on the blocking pool.
    pub(crate) fn in_flight(&self) -> usize {
        either!(self, |d| d.in_flight(), |e| e.in_flight())
    }
}
