//! The data-moving operations on a descriptor: `READ`, `WRITE`, `READV` and
//! `WRITEV` at an offset (the typed ops of [`runtime::op`]), and the loops
//! that finish short transfers.
//!
//! Each typed op holds a clone of the [`SharedFd`] (so the descriptor stays
//! open until the completion) and the caller's buffers; the vectored forms
//! take at most 1024 buffers (`UIO_MAXIOV`) per call, leaving the rest for
//! the next one (a short count).

use std::io;

use runtime::buf::{IoBuf, IoBufMut};
use runtime::op::{Operation, Read, Readv, SharedFd, Write, Writev};
use runtime::BufResult;

/// The offset that makes the kernel use (and advance) the file position.
pub(crate) const CURSOR: u64 = u64::MAX;

/// Offsets are `off_t`: larger ones are `InvalidInput` rather than being
/// taken by the kernel as "the file position" (`-1`).
pub(crate) fn check_pos(pos: u64) -> io::Result<()> {
    if pos > i64::MAX as u64 {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("file offset {pos} is larger than i64::MAX"),
        ))
    } else {
        Ok(())
    }
}

/// `pos + done`, or `InvalidInput` if that leaves the file offset range.
fn advance(pos: u64, done: usize) -> io::Result<u64> {
    let next = pos.saturating_add(done as u64);
    check_pos(next).map(|()| next)
}

/// One read into `buf[read_start()..bytes_total()]` at `pos` ([`CURSOR`]
/// for the file position): what the page cache holds at once
/// (`preadv2(RWF_NOWAIT)`, see `runtime::op::Read::cached_first`), the rest
/// with one `IORING_OP_READ`; `Ok(0)` at once, with nothing submitted, if
/// `buf` has no room.
pub(crate) async fn read<B: IoBufMut>(fd: &SharedFd, buf: B, pos: u64) -> BufResult<usize, B> {
    if buf.bytes_room() == 0 {
        return (Ok(0), buf);
    }
    Read::new(fd, buf, pos).cached_first().submit().await
}

/// One `IORING_OP_WRITE` of `buf[..bytes_init()]` at `pos` ([`CURSOR`] for
/// the file position).
pub(crate) async fn write<B: IoBuf>(fd: &SharedFd, buf: B, pos: u64) -> BufResult<usize, B> {
    Write::new(fd, buf, pos).submit().await
}

/// One read scattering into each buffer's writable region, in order
/// (what the page cache holds at once, the rest with one
/// `IORING_OP_READV`); `Ok(0)` at once if no buffer has room.
pub(crate) async fn readv<B: IoBufMut>(
    fd: &SharedFd,
    bufs: Vec<B>,
    pos: u64,
) -> BufResult<usize, Vec<B>> {
    if bufs.iter().all(|b| b.bytes_room() == 0) {
        return (Ok(0), bufs);
    }
    Readv::new(fd, bufs, pos).cached_first().submit().await
}

/// One `IORING_OP_WRITEV` gathering each buffer's initialised bytes, in
/// order.
pub(crate) async fn writev<B: IoBuf>(
    fd: &SharedFd,
    bufs: Vec<B>,
    pos: u64,
) -> BufResult<usize, Vec<B>> {
    Writev::new(fd, bufs, pos).submit().await
}

/// Reads at `pos` until `buf` is full, or `UnexpectedEof`.
pub(crate) async fn read_exact<B: IoBufMut>(fd: &SharedFd, buf: B, pos: u64) -> BufResult<(), B> {
    let total = buf.bytes_total();
    let mut filled = buf.read_start();
    let mut buf = buf;
    let mut done = 0usize;
    while filled < total {
        let at = match advance(pos, done) {
            Ok(at) => at,
            Err(e) => return (Err(e), buf),
        };
        let (res, slice) = read(fd, buf.slice(filled..total), at).await;
        buf = slice.into_inner();
        match res {
            Ok(0) => {
                return (
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "end of file after {done} of {} bytes in read_exact_at at offset {pos}",
                            done + total - filled
                        ),
                    )),
                    buf,
                )
            }
            Ok(n) => {
                filled += n;
                done += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}

/// Writes all of `buf`'s initialised bytes at `pos`, or `WriteZero`.
pub(crate) async fn write_all<B: IoBuf>(fd: &SharedFd, buf: B, pos: u64) -> BufResult<(), B> {
    let total = buf.bytes_init();
    let mut written = 0;
    let mut buf = buf;
    while written < total {
        let at = match advance(pos, written) {
            Ok(at) => at,
            Err(e) => return (Err(e), buf),
        };
        let (res, slice) = write(fd, buf.slice(written..total), at).await;
        buf = slice.into_inner();
        match res {
            Ok(0) => {
                return (
                    Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("the file took no more bytes after {written} of {total}"),
                    )),
                    buf,
                )
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}
