//! Per-operation deadlines enforced by the kernel: an SQE linked to an
//! `IORING_OP_LINK_TIMEOUT` (see [`Op::submit_with_timeout`]).
//!
//! A link-timeout SQE gets no slot: the kernel copies its timespec when it
//! reads the SQE, which is before the op it guards can complete (the head
//! of a chain is issued only once the whole chain was read), and the
//! timespec lives in the guarded op's data until that op's CQE anyway. Its
//! own CQE, when there is one (`-ETIME` if it fired, `-ECANCELED` if the op
//! finished first, none for a success under `IOSQE_CQE_SKIP_SUCCESS`), is
//! consumed by the driver and dropped.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use io_uring::{opcode, squeue, types::Timespec};

use crate::driver::lifecycle::{Completion, Creates, LINK_TIMEOUT_UD};
use crate::driver::sys;
use crate::op::submit::{Entry, Op};
use crate::scheduler::{expect_current, Core};

impl<T: 'static> Op<T> {
    /// Like [`Op::submit`], with a deadline: the SQE goes out linked to an
    /// `IORING_OP_LINK_TIMEOUT` (one chain of two SQEs, no separate timer),
    /// and if the operation has not completed `timeout` after it started,
    /// the kernel cancels it and the future gives `ErrorKind::TimedOut`
    /// (`ETIMEDOUT`), with the data back. Allocates one small box for the
    /// timespec.
    ///
    /// Whether the op wrote anything before it was cancelled depends on
    /// the op: a socket or pipe read that timed out has read nothing. On a
    /// runtime whose submission queue has a single entry the pair cannot
    /// be one chain, and the op completes with `EINVAL` without running.
    ///
    /// ```
    /// use runtime::op::{io_uring::{opcode, types}, Op};
    /// use std::time::Duration;
    ///
    /// # runtime::block_on(async {
    /// let (a, b) = std::os::unix::net::UnixStream::pair()?;
    /// let fd = types::Fd(std::os::fd::AsRawFd::as_raw_fd(&a));
    /// let read = |buf: &mut Vec<u8>| opcode::Recv::new(fd, buf.as_mut_ptr(), 16).build();
    /// // Nothing comes: the deadline cancels the receive.
    /// // SAFETY: the SQE points only into the Vec's heap buffer; `a` stays
    /// // open until the op is over.
    /// let (res, buf) = unsafe { Op::submit_with_timeout(vec![0u8; 16], read, Duration::from_millis(5)) }.await;
    /// assert_eq!(res.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    /// // Data in time: the receive completes and the timeout is disarmed.
    /// std::io::Write::write_all(&mut &b, b"hi")?;
    /// // SAFETY: as above.
    /// let (res, buf) = unsafe { Op::submit_with_timeout(buf, read, Duration::from_secs(10)) }.await;
    /// assert_eq!(res?.result()?, 2);
    /// assert_eq!(&buf[..2], b"hi");
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Safety
    ///
    /// As for [`Op::submit`].
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub unsafe fn submit_with_timeout(
        data: T,
        build: impl FnOnce(&mut T) -> Entry,
        timeout: std::time::Duration,
    ) -> Timed<T> {
        // SAFETY: forwarded from the caller.
        unsafe { Timed::submit(data, build, timeout) }
    }
}

/// The `IORING_OP_LINK_TIMEOUT` SQE for the op just before it.
pub(crate) fn link_timeout(ts: *const Timespec, skip: squeue::Flags) -> Entry {
    opcode::LinkTimeout::new(ts)
        .build()
        .user_data(LINK_TIMEOUT_UD)
        .flags(skip)
}

/// An operation with a deadline (a linked `IORING_OP_LINK_TIMEOUT`), made
/// by [`Op::submit_with_timeout`] or [`Link::push_timed`](crate::op::Link::push_timed): a future of the
/// operation's [`Completion`], or of `ErrorKind::TimedOut` if the deadline
/// cancelled it, and of its data back either way.
///
/// Dropping it before completion cancels the operation, as for [`Op`].
#[must_use = "a Timed op is cancelled when dropped; .await it"]
pub struct Timed<T: 'static> {
    pub(crate) op: Op<(T, Box<Timespec>)>,
}

impl<T: 'static> Timed<T> {
    /// Submits the op and its link timeout as one chain of two SQEs; the
    /// body of [`Op::submit_with_timeout`].
    ///
    /// # Safety
    ///
    /// As for [`Op::submit`].
    pub(crate) unsafe fn submit(
        mut data: T,
        build: impl FnOnce(&mut T) -> Entry,
        timeout: Duration,
    ) -> Timed<T> {
        let core = expect_current("runtime::op::Op::submit_with_timeout");
        let entry = build(&mut data);
        let creates = sys::creates(&entry);
        // SAFETY: forwarded from the caller.
        unsafe { Timed::submit_entry(core, data, entry, creates, timeout) }
    }

    /// # Safety
    ///
    /// As for [`Op::submit`], for `entry` and `data`.
    pub(crate) unsafe fn submit_entry(
        core: Rc<Core>,
        data: T,
        entry: Entry,
        creates: Creates,
        timeout: Duration,
    ) -> Timed<T> {
        let data = (data, Box::new(Timespec::from(timeout)));
        let entry = entry.flags(squeue::Flags::IO_LINK);
        let ts_ptr: *const Timespec = &*data.1;
        let key = {
            let mut driver = core.driver.borrow_mut();
            let (key, entry) = driver.reserve(entry, creates);
            let chain = [entry, link_timeout(ts_ptr, driver.skip_success_flag())];
            // SAFETY: the caller's promise covers the op's SQE; the timespec
            // is boxed in the op's data, which lives until the op's CQE
            // (after the kernel read the timeout SQE).
            let pushed = unsafe { driver.push_chain(&chain) };
            if pushed.is_err() {
                // A one-entry submission queue: the pair cannot be one chain.
                driver.complete_locally(chain[0].get_user_data(), -libc::EINVAL);
            }
            key
        };
        // SAFETY: the slot was reserved for this op and its SQE pushed.
        let op = unsafe { Op::from_reserved(core, key, data) };
        Timed { op }
    }
}

impl<T: 'static> Future for Timed<T> {
    type Output = (io::Result<Completion>, T);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.op).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready((completion, (data, _ts))) => {
                let res = if completion.raw_result() == -libc::ECANCELED {
                    Err(timed_out())
                } else {
                    Ok(completion)
                };
                Poll::Ready((res, data))
            }
        }
    }
}

impl<T: 'static> fmt::Debug for Timed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timed").field("op", &self.op).finish()
    }
}

/// The error of an op whose link timeout fired: `ETIMEDOUT`, whose kind is
/// `ErrorKind::TimedOut`.
fn timed_out() -> io::Error {
    io::Error::from_raw_os_error(libc::ETIMEDOUT)
}
