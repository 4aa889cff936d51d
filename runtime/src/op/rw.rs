//! Reads and writes at an offset: `IORING_OP_READ`, `WRITE`, `READV`,
//! `WRITEV`, and `READ_FIXED` / `WRITE_FIXED` for registered buffers
//! ([`Read::fixed`], [`Write::fixed`]).
//!
//! Every struct holds a [`SharedFd`] clone (the descriptor stays open while
//! the kernel may use it) and the caller's buffers, whose memory does not
//! move when the struct moves ([`IoBuf`]'s promise); the vectored forms add
//! their `iovec` array in a `Vec` (heap memory, which stays put too). The
//! position `u64::MAX` means "the file position" (and is what pipes,
//! character devices and sockets use); any other must fit in an `off_t`
//! (callers check it: the kernel would take `-1` as the file position).

use std::io;

use io_uring::opcode;

use crate::buf::{mark_read, read_iovecs, write_iovecs, IoBuf, IoBufMut};
use crate::driver::lifecycle::Completion;
use crate::fixed::FixedIoBuf;
use crate::op::fd::SharedFd;
use crate::op::operation::{syscall_result, Operation, Readiness};
use crate::op::submit::Entry;
use crate::BufResult;

/// The most bytes one SQE moves (its length field is a `u32`); the kernel
/// returns a short count for anything longer anyway.
fn clamp_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Most iovecs one vectored file operation takes (`UIO_MAXIOV`); buffers
/// past it are left out (a short count).
const IOV_MAX: usize = 1024;

/// The result of a read of `n` bytes into `buf` from `start`.
fn finish_read<B: IoBufMut>(
    completion: Completion,
    mut buf: B,
    start: usize,
) -> BufResult<usize, B> {
    match completion.result() {
        Ok(n) => {
            // SAFETY: the kernel (or the system call) initialised `n` bytes
            // from `start`, no more than the `bytes_total - start` it was
            // given.
            unsafe { buf.set_init(start + n as usize) };
            (Ok(n as usize), buf)
        }
        Err(e) => (Err(e), buf),
    }
}

/// `pread(2)`/`read(2)` (`pos == u64::MAX`).
fn pread(fd: i32, ptr: *mut u8, len: u32, pos: u64) -> io::Result<u32> {
    // SAFETY: the callers pass a pointer to `len` writable bytes owned by
    // their operation.
    let ret = unsafe {
        if pos == u64::MAX {
            libc::read(fd, ptr.cast(), len as usize)
        } else {
            libc::pread(fd, ptr.cast(), len as usize, pos as libc::off_t)
        }
    };
    syscall_result(ret)
}

/// `pwrite(2)`/`write(2)` (`pos == u64::MAX`).
fn pwrite(fd: i32, ptr: *const u8, len: u32, pos: u64) -> io::Result<u32> {
    // SAFETY: the callers pass a pointer to `len` initialised bytes owned by
    // their operation.
    let ret = unsafe {
        if pos == u64::MAX {
            libc::write(fd, ptr.cast(), len as usize)
        } else {
            libc::pwrite(fd, ptr.cast(), len as usize, pos as libc::off_t)
        }
    };
    syscall_result(ret)
}

/// `FixedIoBuf::fixed_index` of a registered buffer, asked when the SQE is
/// built (on the runtime that submits it).
type IndexOf<B> = Option<fn(&B) -> Option<u16>>;

/// `IORING_OP_READ`: one read into `buf[read_start()..bytes_total()]` at
/// `pos`; the buffer's initialised length grows by the count read. Made by
/// [`Read::fixed`], `IORING_OP_READ_FIXED` into a registered buffer.
#[derive(Debug)]
pub struct Read<B> {
    fd: SharedFd,
    buf: B,
    pos: u64,
    start: usize,
    len: u32,
    index_of: IndexOf<B>,
}

impl<B: IoBufMut> Read<B> {
    /// A read of `fd` into `buf`'s writable region at `pos` (`u64::MAX`:
    /// the file position).
    pub fn new(fd: &SharedFd, buf: B, pos: u64) -> Read<B> {
        let start = buf.read_start();
        let len = clamp_len(buf.bytes_total() - start);
        Read {
            fd: fd.clone(),
            buf,
            pos,
            start,
            len,
            index_of: None,
        }
    }

    /// A read into a registered buffer ([`FixedBuf`](crate::fixed::FixedBuf)):
    /// `IORING_OP_READ_FIXED` naming its slot when the buffer is registered
    /// on the runtime that submits it, a plain `IORING_OP_READ` otherwise.
    /// io_uring only (a readiness driver answers `Unsupported`).
    pub fn fixed(fd: &SharedFd, buf: B, pos: u64) -> Read<B>
    where
        B: FixedIoBuf,
    {
        Read {
            index_of: Some(<B as FixedIoBuf>::fixed_index),
            ..Read::new(fd, buf, pos)
        }
    }
}

// SAFETY: the SQE points at `len <= bytes_total - start` bytes from `start`
// of the buffer's stable memory (IoBufMut's promise), owned by the struct
// and touched by nobody else until `complete`; with an index, the bytes also
// lie inside the registered slot it names (FixedIoBuf's promise, the index
// being asked of the buffer now, on the runtime building the SQE). The
// descriptor is kept open by the SharedFd clone. `perform` reads into the
// same bytes.
unsafe impl<B: IoBufMut> Operation for Read<B> {
    type Output = BufResult<usize, B>;

    fn sqe(&mut self) -> Entry {
        let index = self.index_of.and_then(|index_of| index_of(&self.buf));
        // SAFETY: start <= bytes_total: inside the buffer's allocation.
        let ptr = unsafe { self.buf.stable_mut_ptr().add(self.start) };
        let (len, pos) = (self.len, self.pos);
        crate::with_target!(self.fd, |t| match index {
            Some(i) => opcode::ReadFixed::new(t, ptr, len, i).offset(pos).build(),
            None => opcode::Read::new(t, ptr, len).offset(pos).build(),
        })
    }

    fn complete(self, completion: Completion) -> Self::Output {
        finish_read(completion, self.buf, self.start)
    }

    /// A read on the blocking pool; also for a registered buffer, which is
    /// ordinary memory (a readiness driver has no buffer table: its
    /// buffers have no slot, as on a ring that could not register them).
    fn readiness(&self) -> Readiness {
        Readiness::Blocking
    }

    fn perform(&mut self) -> io::Result<u32> {
        // SAFETY: as in `sqe`.
        let ptr = unsafe { self.buf.stable_mut_ptr().add(self.start) };
        pread(self.fd.raw(), ptr, self.len, self.pos)
    }
}

/// `IORING_OP_WRITE`: one write of `buf[..bytes_init()]` at `pos`. Made by
/// [`Write::fixed`], `IORING_OP_WRITE_FIXED` from a registered buffer.
#[derive(Debug)]
pub struct Write<B> {
    fd: SharedFd,
    buf: B,
    pos: u64,
    len: u32,
    index_of: IndexOf<B>,
}

impl<B: IoBuf> Write<B> {
    /// A write of `buf`'s initialised bytes to `fd` at `pos` (`u64::MAX`:
    /// the file position).
    pub fn new(fd: &SharedFd, buf: B, pos: u64) -> Write<B> {
        let len = clamp_len(buf.bytes_init());
        Write {
            fd: fd.clone(),
            buf,
            pos,
            len,
            index_of: None,
        }
    }

    /// A write from a registered buffer: `IORING_OP_WRITE_FIXED` naming its
    /// slot when the buffer is registered on the runtime that submits it, a
    /// plain `IORING_OP_WRITE` otherwise. io_uring only (a readiness driver
    /// answers `Unsupported`).
    pub fn fixed(fd: &SharedFd, buf: B, pos: u64) -> Write<B>
    where
        B: FixedIoBuf,
    {
        Write {
            index_of: Some(<B as FixedIoBuf>::fixed_index),
            ..Write::new(fd, buf, pos)
        }
    }
}

// SAFETY: the SQE points at `len <= bytes_init` initialised bytes of the
// buffer's stable memory, owned by the struct; the kernel only reads them.
// With an index, they lie inside the registered slot it names (as for
// `Read`). The SharedFd clone keeps the descriptor open.
unsafe impl<B: IoBuf> Operation for Write<B> {
    type Output = BufResult<usize, B>;

    fn sqe(&mut self) -> Entry {
        let index = self.index_of.and_then(|index_of| index_of(&self.buf));
        let (ptr, len, pos) = (self.buf.stable_ptr(), self.len, self.pos);
        crate::with_target!(self.fd, |t| match index {
            Some(i) => opcode::WriteFixed::new(t, ptr, len, i).offset(pos).build(),
            None => opcode::Write::new(t, ptr, len).offset(pos).build(),
        })
    }

    fn complete(self, completion: Completion) -> Self::Output {
        (completion.result().map(|n| n as usize), self.buf)
    }

    /// A write on the blocking pool; also from a registered buffer (see
    /// `Read`).
    fn readiness(&self) -> Readiness {
        Readiness::Blocking
    }

    fn perform(&mut self) -> io::Result<u32> {
        pwrite(self.fd.raw(), self.buf.stable_ptr(), self.len, self.pos)
    }
}

/// `IORING_OP_READV`: one read at `pos` scattering into each buffer's
/// writable region in order (at most 1,024 buffers: the rest are left out
/// of this read).
#[derive(Debug)]
pub struct Readv<B> {
    fd: SharedFd,
    bufs: Vec<B>,
    iovecs: Vec<libc::iovec>,
    pos: u64,
}

impl<B: IoBufMut> Readv<B> {
    /// A vectored read of `fd` into `bufs` at `pos` (`u64::MAX`: the file
    /// position).
    pub fn new(fd: &SharedFd, mut bufs: Vec<B>, pos: u64) -> Readv<B> {
        let count = bufs.len().min(IOV_MAX);
        let iovecs = read_iovecs(&mut bufs[..count]);
        Readv {
            fd: fd.clone(),
            bufs,
            iovecs,
            pos,
        }
    }
}

// SAFETY: every iovec points at the writable region of one buffer's stable
// memory (made by `read_iovecs` from buffers the struct owns and does not
// touch until `complete`); the iovec array is a Vec's heap memory, which
// stays put when the struct moves. The SharedFd clone keeps the descriptor
// open.
unsafe impl<B: IoBufMut> Operation for Readv<B> {
    type Output = BufResult<usize, Vec<B>>;

    fn sqe(&mut self) -> Entry {
        let (iov, n, pos) = (self.iovecs.as_ptr(), self.iovecs.len() as u32, self.pos);
        crate::with_target!(self.fd, |t| opcode::Readv::new(t, iov, n)
            .offset(pos)
            .build())
    }

    fn complete(self, completion: Completion) -> Self::Output {
        let mut bufs = self.bufs;
        match completion.result() {
            Ok(n) => {
                let count = self.iovecs.len();
                // SAFETY: the kernel filled n bytes through the iovecs made
                // from these first `count` buffers by `read_iovecs`.
                unsafe { mark_read(&mut bufs[..count], n as usize) };
                (Ok(n as usize), bufs)
            }
            Err(e) => (Err(e), bufs),
        }
    }

    fn readiness(&self) -> Readiness {
        Readiness::Blocking
    }

    fn perform(&mut self) -> io::Result<u32> {
        let (fd, iov, n) = (
            self.fd.raw(),
            self.iovecs.as_ptr(),
            self.iovecs.len() as i32,
        );
        // SAFETY: the iovecs point into buffers the struct owns (see the
        // impl's argument).
        let ret = unsafe {
            if self.pos == u64::MAX {
                libc::readv(fd, iov, n)
            } else {
                libc::preadv(fd, iov, n, self.pos as libc::off_t)
            }
        };
        syscall_result(ret)
    }
}

/// `IORING_OP_WRITEV`: one write at `pos` gathering each buffer's
/// initialised bytes in order (at most 1,024 buffers).
#[derive(Debug)]
pub struct Writev<B> {
    fd: SharedFd,
    bufs: Vec<B>,
    iovecs: Vec<libc::iovec>,
    pos: u64,
}

impl<B: IoBuf> Writev<B> {
    /// A vectored write of `bufs` to `fd` at `pos` (`u64::MAX`: the file
    /// position).
    pub fn new(fd: &SharedFd, bufs: Vec<B>, pos: u64) -> Writev<B> {
        let iovecs = write_iovecs(&bufs[..bufs.len().min(IOV_MAX)]);
        Writev {
            fd: fd.clone(),
            bufs,
            iovecs,
            pos,
        }
    }
}

// SAFETY: every iovec points at the initialised bytes of one buffer's
// stable memory, owned by the struct (the kernel only reads them); the
// iovec array is a Vec's heap memory. The SharedFd clone keeps the
// descriptor open.
unsafe impl<B: IoBuf> Operation for Writev<B> {
    type Output = BufResult<usize, Vec<B>>;

    fn sqe(&mut self) -> Entry {
        let (iov, n, pos) = (self.iovecs.as_ptr(), self.iovecs.len() as u32, self.pos);
        crate::with_target!(self.fd, |t| opcode::Writev::new(t, iov, n)
            .offset(pos)
            .build())
    }

    fn complete(self, completion: Completion) -> Self::Output {
        (completion.result().map(|n| n as usize), self.bufs)
    }

    fn readiness(&self) -> Readiness {
        Readiness::Blocking
    }

    fn perform(&mut self) -> io::Result<u32> {
        let (fd, iov, n) = (
            self.fd.raw(),
            self.iovecs.as_ptr(),
            self.iovecs.len() as i32,
        );
        // SAFETY: the iovecs point into buffers the struct owns.
        let ret = unsafe {
            if self.pos == u64::MAX {
                libc::writev(fd, iov, n)
            } else {
                libc::pwritev(fd, iov, n, self.pos as libc::off_t)
            }
        };
        syscall_result(ret)
    }
}
