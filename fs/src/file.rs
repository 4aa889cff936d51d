//! [`File`]: an open file whose every operation is an SQE.
//!
//! Opening one is in `open_options.rs`, the write->fsync chain in
//! `linked.rs`, registered-buffer I/O in `fixed.rs`.

use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use runtime::buf::{IoBuf, IoBufMut};
use runtime::io::{OwnedRead, OwnedWrite};
use runtime::op::{Fsync, Operation, SharedFd, Statx};
use runtime::BufResult;

use crate::metadata::{statx, Metadata};
use crate::rw::{self, check_pos, CURSOR};

/// An open file.
///
/// All I/O takes `&self` and an explicit offset, so several tasks can read
/// and write one `File` at once. Buffers are passed by value and come back
/// with the result (see the [crate docs](crate)).
///
/// Dropping a `File` closes its descriptor through the ring without
/// blocking, and only once no operation in flight uses it any more;
/// [`close`](File::close) does the same but reports `close(2)`'s result.
///
/// `File` also implements the runtime's stream traits
/// ([`OwnedRead`]/[`OwnedWrite`]) at the file position (offset `-1` in the
/// SQE), for pipes, terminals and sequential use.
pub struct File {
    fd: SharedFd,
}

impl File {
    pub(crate) fn from_shared(fd: SharedFd) -> File {
        File { fd }
    }

    /// Wraps an open std file; its descriptor is now closed by this `File`.
    pub fn from_std(file: std::fs::File) -> File {
        File::from(OwnedFd::from(file))
    }

    /// The shared descriptor, for submitting other operations on this file
    /// through [`runtime::op`] (keep a clone in the operation's data).
    ///
    /// ```
    /// use runtime::op::{Operation, Read};
    ///
    /// # runtime::block_on(async {
    /// let path = std::env::temp_dir().join(format!("shared-fd-doc-{}", std::process::id()));
    /// fs::write(&path, "typed op").await?;
    /// let file = fs::File::open(&path).await?;
    /// let (res, buf) = Read::new(file.shared_fd(), Vec::with_capacity(8), 0).submit().await;
    /// assert_eq!(res?, 8);
    /// assert_eq!(buf, b"typed op");
    /// # fs::remove_file(&path).await?;
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn shared_fd(&self) -> &SharedFd {
        &self.fd
    }

    /// Reads once at `pos` into `buf`'s writable region (a `Vec`'s spare
    /// capacity, which the read appends to) and returns the count read:
    /// fewer than asked near the end of the file, `0` at or past it. A
    /// `buf` with no room (an empty or full `Vec`, an empty `Box<[u8]>`)
    /// gives `Ok(0)` at once, without submitting anything, as std's `read`
    /// does.
    ///
    /// One read moves at most `u32::MAX` bytes. An offset past `i64::MAX`
    /// is `InvalidInput`.
    pub async fn read_at<B: IoBufMut>(&self, buf: B, pos: u64) -> BufResult<usize, B> {
        if let Err(e) = check_pos(pos) {
            return (Err(e), buf);
        }
        rw::read(&self.fd, buf, pos).await
    }

    /// Reads at `pos` until `buf` is full (a `Vec` up to its capacity),
    /// looping over short reads. If the file ends first the result is
    /// `UnexpectedEof`, with the bytes that were read in the buffer. A
    /// `buf` with no room gives `Ok(())` at once.
    pub async fn read_exact_at<B: IoBufMut>(&self, buf: B, pos: u64) -> BufResult<(), B> {
        if let Err(e) = check_pos(pos) {
            return (Err(e), buf);
        }
        rw::read_exact(&self.fd, buf, pos).await
    }

    /// Reads once at `pos`, filling the buffers in order (what the page
    /// cache holds at once, the rest with `IORING_OP_READV`), and returns
    /// the total count read. At most 1024
    /// buffers take part in one call. If no buffer has room, `Ok(0)` at
    /// once.
    pub async fn readv_at<B: IoBufMut>(&self, bufs: Vec<B>, pos: u64) -> BufResult<usize, Vec<B>> {
        if let Err(e) = check_pos(pos) {
            return (Err(e), bufs);
        }
        rw::readv(&self.fd, bufs, pos).await
    }

    /// Writes once at `pos` from `buf`'s initialised bytes and returns how
    /// many were written (possibly fewer). Writing to a handle opened
    /// without write access is an error (`EBADF`).
    pub async fn write_at<B: IoBuf>(&self, buf: B, pos: u64) -> BufResult<usize, B> {
        if let Err(e) = check_pos(pos) {
            return (Err(e), buf);
        }
        rw::write(&self.fd, buf, pos).await
    }

    /// Writes all of `buf`'s initialised bytes at `pos`, looping over short
    /// writes; `WriteZero` if the file stops taking bytes.
    pub async fn write_all_at<B: IoBuf>(&self, buf: B, pos: u64) -> BufResult<(), B> {
        if let Err(e) = check_pos(pos) {
            return (Err(e), buf);
        }
        rw::write_all(&self.fd, buf, pos).await
    }

    /// Writes once at `pos`, gathering the buffers' initialised bytes in
    /// order (`IORING_OP_WRITEV`), and returns the total count written. At
    /// most 1024 buffers take part in one call.
    pub async fn writev_at<B: IoBuf>(&self, bufs: Vec<B>, pos: u64) -> BufResult<usize, Vec<B>> {
        if let Err(e) = check_pos(pos) {
            return (Err(e), bufs);
        }
        rw::writev(&self.fd, bufs, pos).await
    }

    /// Flushes the file's data and metadata to the device
    /// (`IORING_OP_FSYNC`).
    ///
    /// Only writes that completed before this call are covered: the ring
    /// does not order operations in flight.
    pub async fn sync_all(&self) -> io::Result<()> {
        Fsync::new(&self.fd, false).submit().await
    }

    /// Flushes the file's data, and only the metadata needed to read it
    /// back (`IORING_OP_FSYNC` with `IORING_FSYNC_DATASYNC`).
    pub async fn sync_data(&self) -> io::Result<()> {
        Fsync::new(&self.fd, true).submit().await
    }

    /// The file's metadata (`IORING_OP_STATX` on the descriptor).
    pub async fn metadata(&self) -> io::Result<Metadata> {
        statx(Statx::fd(&self.fd)).await
    }

    /// Installs the file in the runtime's table of registered files (a
    /// slot of the ring's direct-descriptor table, see
    /// [`runtime::op::SharedFd::register`]) and returns the handle that uses it:
    /// its reads, writes and syncs on this runtime name the slot
    /// (`IOSQE_FIXED_FILE`), which spares the kernel a lookup of the file
    /// and a reference count update per operation. The file keeps its
    /// descriptor, so [`metadata`](Self::metadata), `AsRawFd` and
    /// everything else work as before; on another runtime the handle uses
    /// the descriptor. Closing frees both. Registering an already
    /// registered file returns it unchanged. See
    /// [`runtime::op::direct_table`] for the table's size and limits.
    ///
    /// ```no_run
    /// # runtime::block_on(async {
    /// let file = fs::File::open("data.bin").await?.register()?;
    /// assert!(file.is_registered());
    /// let (res, buf) = file.read_at(Vec::with_capacity(4096), 0).await;
    /// # let _ = (res?, buf);
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn register(self) -> io::Result<File> {
        let fd = self.fd.register()?;
        Ok(File::from_shared(fd))
    }

    /// Whether the file is registered (see [`register`](Self::register)).
    pub fn is_registered(&self) -> bool {
        self.fd.is_registered()
    }

    /// Closes the file (`IORING_OP_CLOSE`) and reports the result, which
    /// for some file systems carries a deferred write error.
    ///
    /// If operations on the file are still in flight (their futures were
    /// dropped early), the descriptor is closed when the last of them
    /// completes, and this returns `Ok(())` at once.
    pub async fn close(self) -> io::Result<()> {
        self.fd.close().await
    }
}

impl From<OwnedFd> for File {
    /// Takes ownership of an open descriptor.
    fn from(fd: OwnedFd) -> File {
        File::from_shared(SharedFd::new(fd))
    }
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File").field("fd", &self.fd.raw()).finish()
    }
}

/// Reads at (and advancing) the file position.
impl OwnedRead for File {
    fn read<B: IoBufMut>(&self, buf: B) -> impl Future<Output = BufResult<usize, B>> {
        rw::read(&self.fd, buf, CURSOR)
    }

    fn readv<B: IoBufMut>(&self, bufs: Vec<B>) -> impl Future<Output = BufResult<usize, Vec<B>>> {
        rw::readv(&self.fd, bufs, CURSOR)
    }
}

/// Writes at (and advancing) the file position.
impl OwnedWrite for File {
    fn write<B: IoBuf>(&self, buf: B) -> impl Future<Output = BufResult<usize, B>> {
        rw::write(&self.fd, buf, CURSOR)
    }

    fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> impl Future<Output = BufResult<usize, Vec<B>>> {
        rw::writev(&self.fd, bufs, CURSOR)
    }
}
