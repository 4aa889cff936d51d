//! Linked file operations: a write and the `fsync` that makes it durable,
//! submitted together as one kernel chain (`IOSQE_IO_LINK`).

use std::io;

use runtime::buf::{IoBuf, Slice};
use runtime::op::{Fsync, Link, Operation, SharedFd, Write};
use runtime::BufResult;

use crate::rw::check_pos;
use crate::File;

/// One chain `WRITE(buf[written..total] at pos + written) -> FSYNC`; gives
/// the write's result and the fsync's.
async fn write_then_sync<B: IoBuf>(
    fd: &SharedFd,
    buf: Slice<B>,
    pos: u64,
    datasync: bool,
) -> (io::Result<usize>, io::Result<()>, Slice<B>) {
    let mut chain = Link::new();
    let write = chain.push_op(Write::new(fd, buf, pos));
    let sync = chain.push_op(Fsync::new(fd, datasync));
    // On failure both ops complete with EINVAL without running; their
    // results say so below.
    let _ = chain.submit();
    let (written, buf) = write.await;
    let synced = sync.await;
    (written, synced, buf)
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
        let fd = self.shared_fd();
        let total = buf.bytes_init();
        if total == 0 {
            return (Fsync::new(fd, datasync).submit().await, buf);
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
                write_then_sync(fd, buf.slice(written..total), at, datasync).await
            } else {
                // A one-entry submission queue cannot hold the chain: the
                // same two steps, one after the other.
                let (wrote, slice) = crate::rw::write(fd, buf.slice(written..total), at).await;
                let synced = match &wrote {
                    Ok(n) if written + n == total => Fsync::new(fd, datasync).submit().await,
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
