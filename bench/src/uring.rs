//! The pieces (ring plumbing, a socket option) that the suite's hand-written io_uring
//! programs (the load generators' [`crate::client`], the `raw` echo server
//! and `raw_http`) share.

use std::io;
use std::os::fd::RawFd;

use io_uring::{squeue, IoUring};

/// A ring with `sq` submission and `cq` completion entries, single-issuer
/// with deferred task work where the kernel has them, plain otherwise.
pub fn ring(sq: u32, cq: u32) -> io::Result<IoUring> {
    IoUring::builder()
        .setup_cqsize(cq)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(sq)
        .or_else(|_| IoUring::builder().setup_cqsize(cq).build(sq))
}

/// Queues `sqe`, first submitting what is queued if the submission queue is
/// full (retrying on `EINTR`, `EAGAIN` and `EBUSY`).
///
/// # Safety
///
/// As for [`io_uring::SubmissionQueue::push`]: every buffer and descriptor
/// `sqe` points at stays valid, unmoved, until its completion is reaped.
pub unsafe fn push(ring: &mut IoUring, sqe: &squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: forwarded from the caller.
        if unsafe { ring.submission().push(sqe) }.is_ok() {
            return Ok(());
        }
        if let Err(e) = ring.submit() {
            if !matches!(
                e.raw_os_error(),
                Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
            ) {
                return Err(e);
            }
        }
    }
}

/// Submits what is queued, waits for at least one completion (an `EINTR`,
/// `EAGAIN` or `EBUSY` only ends the wait early), and replaces the contents
/// of `cqes` with every completion reaped: `(user_data, result, flags)`.
pub fn wait_completions(ring: &mut IoUring, cqes: &mut Vec<(u64, i32, u32)>) -> io::Result<()> {
    if let Err(e) = ring.submit_and_wait(1) {
        if !matches!(
            e.raw_os_error(),
            Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
        ) {
            return Err(e);
        }
    }
    cqes.clear();
    cqes.extend(
        ring.completion()
            .map(|c| (c.user_data(), c.result(), c.flags())),
    );
    Ok(())
}

/// Sets `TCP_NODELAY` on the socket `fd` (best effort: an error, say on a
/// socket that is not TCP, is ignored).
pub fn set_nodelay(fd: RawFd) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `&on`, which
    // lives across the call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}
