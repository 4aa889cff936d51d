//! Linked file operations: a write and the `fsync` that makes it durable,
//! submitted together as one kernel chain (`IOSQE_IO_LINK`).

use std::io;

use runtime::buf::IoBuf;
use runtime::op::io_uring::{opcode, types::FsyncFlags};
use runtime::op::{Link, Op, SharedFd};
use runtime::BufResult;

use crate::rw::check_pos;
use crate::File;

/// The data of the write half of a chain.
struct WriteData<B> {
    fd: SharedFd,
    buf: B,
}

/// One chain `WRITE(buf[written..total] at pos + written) -> FSYNC`; gives
/// the write's result and the fsync's.
async fn write_then_sync<B: IoBuf>(
    fd: &SharedFd,
    buf: runtime::buf::Slice<B>,
    pos: u64,
    fsync_flags: FsyncFlags,
) -> (io::Result<usize>, io::Result<()>, runtime::buf::Slice<B>) {
    let mut chain = Link::new();
    let len = u32::try_from(buf.bytes_init()).unwrap_or(u32::MAX);
    // SAFETY: the write points at `len <= bytes_init` initialised bytes of
    // the buffer's stable memory; the buffer and a SharedFd clone (keeping
    // the descriptor open) are its data until its CQE. The fsync names no
    // memory, only the descriptor, kept open by its own SharedFd clone.
    let (write, sync) = unsafe {
        (
            chain.push(
                WriteData {
                    fd: fd.clone(),
                    buf,
                },
                |d| {
                    let ptr = d.buf.stable_ptr();
                    runtime::with_target!(d.fd, |t| opcode::Write::new(t, ptr, len)
                        .offset(pos)
                        .build())
                },
            ),
            chain.push(fd.clone(), |fd| {
                runtime::with_target!(fd, |t| opcode::Fsync::new(t).flags(fsync_flags).build())
            }),
        )
    };
    // On failure both ops complete with EINVAL without running; their
    // results say so below.
    let _ = chain.submit();
    let (written, WriteData { buf, .. }) = write.await;
    let (synced, _fd) = sync.await;
    (
        written.result().map(|n| n as usize),
        synced.result().map(drop),
        buf,
    )
}

/// An `IORING_OP_FSYNC` alone.
async fn fsync(fd: &SharedFd, flags: FsyncFlags) -> io::Result<()> {
    // SAFETY: the SQE names no memory, only the descriptor, kept open by
    // the SharedFd clone in the op's data.
    let op = unsafe {
        Op::submit(fd.clone(), |fd| {
            runtime::with_target!(fd, |t| opcode::Fsync::new(t).flags(flags).build())
        })
    };
    op.await.0.result().map(drop)
}

impl File {
    /// Writes all of `buf`'s initialised bytes at `pos` and then flushes
    /// them to the device, as one chain: an `IORING_OP_WRITE` linked
    /// (`IOSQE_IO_LINK`) to an `IORING_OP_FSYNC` (`IORING_FSYNC_DATASYNC`
    /// with `datasync`, like [`sync_data`](File::sync_data); else like
    /// [`sync_all`](File::sync_all)). One submission, one round trip in
    /// the common case.
    ///
    /// A failed write cancels the fsync in the kernel: the write's error is
    /// returned and nothing was synced. A short write also cancels it; the
    /// rest is then written by a new chain, with its own fsync, until all
    /// bytes are written and synced. With nothing to write, it only syncs.
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let path = std::env::temp_dir().join(format!("synced-doc-{}", std::process::id()));
    /// let file = fs::File::create(&path).await?;
    /// let (res, _buf) = file.write_all_at_synced(b"durable".to_vec(), 0, true).await;
    /// res?;
    /// assert_eq!(fs::read(&path).await?, b"durable");
    /// # fs::remove_file(&path).await?;
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The write's error (then no fsync ran for the bytes it failed on),
    /// `WriteZero` if the file takes no more bytes, the fsync's error, and
    /// `InvalidInput` for an offset past `i64::MAX`.
    pub async fn write_all_at_synced<B: IoBuf>(
        &self,
        buf: B,
        pos: u64,
        datasync: bool,
    ) -> BufResult<(), B> {
        if let Err(e) = check_pos(pos) {
            return (Err(e), buf);
        }
        let flags = if datasync {
            FsyncFlags::DATASYNC
        } else {
            FsyncFlags::empty()
        };
        let fd = self.shared_fd();
        let total = buf.bytes_init();
        if total == 0 {
            return (fsync(fd, flags).await, buf);
        }
        let mut buf = buf;
        let mut written = 0usize;
        let chains = Link::new().capacity() >= 2;
        loop {
            let at = match pos
                .checked_add(written as u64)
                .filter(|&at| check_pos(at).is_ok())
            {
                Some(at) => at,
                None => {
                    return (
                        Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "file offset past i64::MAX",
                        )),
                        buf,
                    )
                }
            };
            let (wrote, synced, slice) = if chains {
                write_then_sync(fd, buf.slice(written..total), at, flags).await
            } else {
                // A one-entry submission queue cannot hold the chain: the
                // same two steps, one after the other.
                let (wrote, slice) = crate::rw::write(fd, buf.slice(written..total), at).await;
                let synced = match &wrote {
                    Ok(n) if written + n == total => fsync(fd, flags).await,
                    _ => Err(io::Error::from_raw_os_error(libc::ECANCELED)),
                };
                (wrote, synced, slice)
            };
            buf = slice.into_inner();
            match wrote {
                Ok(0) => {
                    return (
                        Err(io::Error::new(
                            io::ErrorKind::WriteZero,
                            format!("the file took no more bytes after {written} of {total}"),
                        )),
                        buf,
                    )
                }
                Ok(n) => {
                    written += n;
                    if written == total {
                        return (synced, buf);
                    }
                    // A short write: its fsync was cancelled (or ran for
                    // part of the bytes); write the rest, sync again.
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
    }
}
