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

/// The result of a read of `n` bytes into `buf` from `start`, after
/// `done` bytes read at once before `start` (see [`nowait_read`]): an error
/// after some bytes were read at once is reported as the short count, as
/// `read(2)` would (the next read meets the error again).
fn finish_read<B: IoBufMut>(
    completion: Completion,
    mut buf: B,
    start: usize,
    done: u32,
) -> BufResult<usize, B> {
    match completion.result() {
        Ok(n) => {
            // SAFETY: the kernel (or the system call) initialised `n` bytes
            // from `start`, no more than the `bytes_total - start` it was
            // given, and the read at once the `done` bytes before `start`.
            unsafe { buf.set_init(start + n as usize) };
            (Ok(done as usize + n as usize), buf)
        }
        Err(_) if done > 0 => {
            // SAFETY: the read at once initialised the `done` bytes before
            // `start`.
            unsafe { buf.set_init(start) };
            (Ok(done as usize), buf)
        }
        Err(e) => (Err(e), buf),
    }
}

/// What a read at once ([`nowait_read`]) got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AtOnce {
    /// Every byte asked for, or all up to the end of the file: this many.
    Done(u32),
    /// This many bytes (`0` or more), then the page cache lacked the next
    /// ones (or the attempt failed): the rest goes the usual way.
    Partly(u32),
}

/// Reads at once into `iovs` at `pos` (`u64::MAX`: the file position) from
/// the page cache of `fd`, with `preadv2(RWF_NOWAIT)` until the iovecs are
/// full, the file ends, or a page is missing; `iovs` are advanced past the
/// bytes read. `None` if `fd` is not worth trying (see
/// [`SharedFd::nowait_reads`]); a refusal of `RWF_NOWAIT` (an old kernel, a
/// file system without it) is remembered on `fd`.
///
/// A regular file gives a short count only at its end or where its cached
/// pages stop, so a short count is followed by another attempt for the
/// rest: `0` means the end, `EAGAIN` a missing page.
fn nowait_read(fd: &SharedFd, iovs: &mut [libc::iovec], pos: u64) -> Option<AtOnce> {
    if !fd.nowait_reads() {
        return None;
    }
    let total: usize = iovs.iter().map(|v| v.iov_len).sum();
    let mut done = 0usize;
    let mut first = 0;
    while done < total {
        while iovs[first].iov_len == 0 {
            first += 1;
        }
        let rest = &iovs[first..];
        let at = if pos == u64::MAX {
            -1
        } else {
            (pos + done as u64) as libc::off_t
        };
        // SAFETY: the iovecs point at writable bytes owned by the calling
        // operation (its buffers' stable memory, not otherwise used while
        // it runs); `fd` is open while the handle lives.
        let ret = unsafe {
            libc::preadv2(
                fd.raw(),
                rest.as_ptr(),
                rest.len().min(IOV_MAX) as i32,
                at,
                libc::RWF_NOWAIT,
            )
        };
        if ret == 0 {
            fd.nowait_hit();
            return Some(AtOnce::Done(done as u32));
        }
        if ret < 0 {
            let errno = io::Error::last_os_error().raw_os_error();
            if matches!(errno, Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS)) {
                fd.no_nowait_reads();
            } else if done == 0 {
                fd.nowait_missed();
            } else {
                fd.nowait_hit();
            }
            // EAGAIN (a page not cached), or anything else: the usual way
            // gives its own answer.
            return Some(AtOnce::Partly(done as u32));
        }
        let mut n = ret as usize;
        done += n;
        for v in iovs[first..].iter_mut() {
            let step = n.min(v.iov_len);
            // SAFETY: `step <= iov_len`: still inside the same buffer.
            v.iov_base = unsafe { v.iov_base.cast::<u8>().add(step) }.cast();
            v.iov_len -= step;
            n -= step;
            if n == 0 {
                break;
            }
        }
    }
    fd.nowait_hit();
    Some(AtOnce::Done(done as u32))
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
    /// Try the page cache at once first ([`Read::cached_first`]).
    nowait: bool,
    /// Bytes read at once, before `start`.
    done: u32,
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
            nowait: false,
            done: 0,
        }
    }

    /// Makes [`submit`](Operation::submit) first read what the page cache
    /// holds at once, with `preadv2(RWF_NOWAIT)` on the runtime's thread
    /// ([`Operation::perform_nowait`]), and send only the rest (if any)
    /// through the ring, or on the epoll driver to the blocking pool. For
    /// regular files: anything else (and a file opened with `O_DIRECT`,
    /// or a direct or registered descriptor) goes the usual way, as does every read when
    /// [`Builder::nowait_reads`](crate::Builder::nowait_reads) is off. The
    /// result is the one the usual way gives: the bytes up to the end of
    /// the file or of the buffer; if the rest fails after some bytes were
    /// read at once, the count of those.
    ///
    /// ```
    /// use runtime::op::{Operation, Read, SharedFd};
    ///
    /// # runtime::block_on(async {
    /// let path = std::env::temp_dir().join(format!("cached-first-doc-{}", std::process::id()));
    /// std::fs::write(&path, b"in the page cache")?;
    /// let fd = SharedFd::new(std::fs::File::open(&path)?.into());
    /// let (n, buf) = Read::new(&fd, Vec::with_capacity(64), 7).cached_first().submit().await;
    /// assert_eq!(n?, 10);
    /// assert_eq!(buf, b"page cache");
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn cached_first(mut self) -> Read<B> {
        self.nowait = true;
        self
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
        finish_read(completion, self.buf, self.start, self.done)
    }

    /// With [`cached_first`](Read::cached_first): the bytes the page cache
    /// holds, at once; the SQE and `perform` then read the rest.
    fn perform_nowait(&mut self) -> Option<io::Result<u32>> {
        if !std::mem::take(&mut self.nowait) || self.len == 0 {
            return None;
        }
        // SAFETY: start <= bytes_total: inside the buffer's allocation.
        let ptr = unsafe { self.buf.stable_mut_ptr().add(self.start) };
        let mut iov = [libc::iovec {
            iov_base: ptr.cast(),
            iov_len: self.len as usize,
        }];
        match nowait_read(&self.fd, &mut iov, self.pos)? {
            AtOnce::Done(n) => Some(Ok(n)),
            AtOnce::Partly(n) => {
                self.done = n;
                self.start += n as usize;
                self.len -= n;
                if self.pos != u64::MAX {
                    self.pos += u64::from(n);
                }
                None
            }
        }
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
    /// Try the page cache at once first ([`Readv::cached_first`]).
    nowait: bool,
    /// Bytes read at once (the iovecs were advanced past them).
    done: u32,
    /// How many buffers take part (iovecs emptied by the read at once
    /// stay in the array).
    count: usize,
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
            nowait: false,
            done: 0,
            count,
        }
    }

    /// As [`Read::cached_first`]: the bytes the page cache holds are read
    /// at once (`preadv2(RWF_NOWAIT)`), the rest the usual way.
    pub fn cached_first(mut self) -> Readv<B> {
        self.nowait = true;
        self
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
        let total = match completion.result() {
            Ok(n) => self.done as usize + n as usize,
            // Some bytes were read at once: their count (as in `Read`).
            Err(_) if self.done > 0 => self.done as usize,
            Err(e) => return (Err(e), bufs),
        };
        // SAFETY: the read at once filled the first `done` bytes and then
        // the kernel the next `n` through the iovecs made from these first
        // `count` buffers by `read_iovecs`, in order.
        unsafe { mark_read(&mut bufs[..self.count], total) };
        (Ok(total), bufs)
    }

    /// With [`cached_first`](Readv::cached_first): the bytes the page
    /// cache holds, at once; the SQE and `perform` then read the rest
    /// through the advanced iovecs.
    fn perform_nowait(&mut self) -> Option<io::Result<u32>> {
        if !std::mem::take(&mut self.nowait) || self.iovecs.iter().all(|v| v.iov_len == 0) {
            return None;
        }
        match nowait_read(&self.fd, &mut self.iovecs, self.pos)? {
            AtOnce::Done(n) => Some(Ok(n)),
            AtOnce::Partly(n) => {
                self.done = n;
                if self.pos != u64::MAX {
                    self.pos += u64::from(n);
                }
                None
            }
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
