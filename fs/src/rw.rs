//! The data-moving operations on a descriptor: `READ`, `WRITE`, `READV` and
//! `WRITEV` at an offset, and the loops that finish short transfers.
//!
//! Each operation's data holds a clone of the [`SharedFd`] (so the
//! descriptor stays open until the completion), the caller's buffers, and,
//! for the vectored forms, the `iovec` array in a `Vec` whose heap memory
//! does not move.

use std::io;

use runtime::buf::{mark_read, read_iovecs, write_iovecs, IoBuf, IoBufMut};
use runtime::op::io_uring::opcode;
use runtime::op::{Op, SharedFd};
use runtime::BufResult;

/// The offset that makes the kernel use (and advance) the file position.
pub(crate) const CURSOR: u64 = u64::MAX;

/// Most iovecs one `readv`/`writev` takes (`UIO_MAXIOV`); buffers past it
/// are left for the next call (a short count).
const IOV_MAX: usize = 1024;

/// One operation moves at most this many bytes (the SQE's `len` is a
/// `u32`); the kernel returns a short count for anything longer anyway.
fn clamp_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

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

/// The data of a single-buffer read or write.
struct Rw<B> {
    fd: SharedFd,
    buf: B,
}

/// The data of a vectored read or write.
struct RwVec<B> {
    fd: SharedFd,
    bufs: Vec<B>,
    iovecs: Vec<libc::iovec>,
}

/// One `IORING_OP_READ` into `buf[read_start()..bytes_total()]` at `pos`
/// ([`CURSOR`] for the file position).
pub(crate) async fn read<B: IoBufMut>(fd: &SharedFd, buf: B, pos: u64) -> BufResult<usize, B> {
    let start = buf.read_start();
    let len = clamp_len(buf.bytes_total() - start);
    let data = Rw {
        fd: fd.clone(),
        buf,
    };
    // SAFETY: the SQE points at `len <= bytes_total - start` bytes of the
    // buffer's stable heap memory from `start` (IoBufMut's promise), owned
    // by the operation's data; the descriptor is kept open by the SharedFd
    // clone in the same data.
    let op = unsafe {
        Op::submit(data, |d| {
            let ptr = d.buf.stable_mut_ptr().add(start);
            runtime::with_target!(d.fd, |t| opcode::Read::new(t, ptr, len).offset(pos).build())
        })
    };
    let (completion, Rw { mut buf, .. }) = op.await;
    match completion.result() {
        Ok(n) => {
            let n = n as usize;
            // SAFETY: the kernel initialised `n <= len` bytes from `start`,
            // and `start + n <= bytes_total`.
            unsafe { buf.set_init(start + n) };
            (Ok(n), buf)
        }
        Err(e) => (Err(e), buf),
    }
}

/// One `IORING_OP_WRITE` of `buf[..bytes_init()]` at `pos` ([`CURSOR`] for
/// the file position).
pub(crate) async fn write<B: IoBuf>(fd: &SharedFd, buf: B, pos: u64) -> BufResult<usize, B> {
    let len = clamp_len(buf.bytes_init());
    let data = Rw {
        fd: fd.clone(),
        buf,
    };
    // SAFETY: the SQE points at `len <= bytes_init` initialised bytes of the
    // buffer's stable heap (or 'static) memory, owned by the operation's
    // data, as is the SharedFd clone that keeps the descriptor open.
    let op = unsafe {
        Op::submit(data, |d| {
            runtime::with_target!(d.fd, |t| opcode::Write::new(t, d.buf.stable_ptr(), len)
                .offset(pos)
                .build())
        })
    };
    let (completion, Rw { buf, .. }) = op.await;
    (completion.result().map(|n| n as usize), buf)
}

/// One `IORING_OP_READV` scattering into each buffer's writable region, in
/// order.
pub(crate) async fn readv<B: IoBufMut>(
    fd: &SharedFd,
    bufs: Vec<B>,
    pos: u64,
) -> BufResult<usize, Vec<B>> {
    let data = RwVec {
        fd: fd.clone(),
        bufs,
        iovecs: Vec::new(),
    };
    // SAFETY: every iovec points at `bytes_total - read_start` writable bytes
    // of one buffer's stable heap memory; the buffers and the iovec array
    // (a Vec, whose heap memory stays put when the data moves) are owned by
    // the operation's data, as is the SharedFd clone.
    let op = unsafe {
        Op::submit(data, |d| {
            let count = d.bufs.len().min(IOV_MAX);
            d.iovecs = read_iovecs(&mut d.bufs[..count]);
            runtime::with_target!(d.fd, |t| opcode::Readv::new(
                t,
                d.iovecs.as_ptr(),
                d.iovecs.len() as u32
            )
            .offset(pos)
            .build())
        })
    };
    let (completion, RwVec { mut bufs, .. }) = op.await;
    match completion.result() {
        Ok(n) => {
            let n = n as usize;
            let count = bufs.len().min(IOV_MAX);
            // SAFETY: the kernel filled n bytes through the iovecs made from
            // these first `count` buffers by `read_iovecs`.
            unsafe { mark_read(&mut bufs[..count], n) };
            (Ok(n), bufs)
        }
        Err(e) => (Err(e), bufs),
    }
}

/// One `IORING_OP_WRITEV` gathering each buffer's initialised bytes, in
/// order.
pub(crate) async fn writev<B: IoBuf>(
    fd: &SharedFd,
    bufs: Vec<B>,
    pos: u64,
) -> BufResult<usize, Vec<B>> {
    let data = RwVec {
        fd: fd.clone(),
        bufs,
        iovecs: Vec::new(),
    };
    // SAFETY: every iovec points at the initialised bytes of one buffer's
    // stable memory (the kernel only reads them, so casting the pointer to
    // `*mut` is fine); the buffers, the iovec Vec and the SharedFd clone are
    // owned by the operation's data.
    let op = unsafe {
        Op::submit(data, |d| {
            d.iovecs = write_iovecs(&d.bufs[..d.bufs.len().min(IOV_MAX)]);
            runtime::with_target!(d.fd, |t| opcode::Writev::new(
                t,
                d.iovecs.as_ptr(),
                d.iovecs.len() as u32
            )
            .offset(pos)
            .build())
        })
    };
    let (completion, RwVec { bufs, .. }) = op.await;
    (completion.result().map(|n| n as usize), bufs)
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
