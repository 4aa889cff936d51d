//! Reads and writes through registered buffers: `IORING_OP_READ_FIXED` and
//! `IORING_OP_WRITE_FIXED` on a [`File`], with a
//! [`FixedBuf`](runtime::fixed::FixedBuf) (or a slice of one).
//!
//! When the buffer's pool is not registered (it degraded to plain memory,
//! see [`runtime::fixed`]) or belongs to another runtime, the plain
//! `IORING_OP_READ` / `IORING_OP_WRITE` is used instead, with the same
//! result.

use runtime::buf::IoBufMut;
use runtime::fixed::FixedIoBuf;
use runtime::op::{Operation, Read, Write};
use runtime::BufResult;

use crate::rw::check_pos;
use crate::File;

impl File {
    /// Reads once at `pos` into a registered buffer
    /// (`IORING_OP_READ_FIXED`): like [`read_at`](File::read_at), the
    /// bytes go after the buffer's length, up to its capacity, and the
    /// length grows by the count returned (`0` at end of file; a full
    /// buffer gives `Ok(0)` at once, without submitting anything). Takes a
    /// [`FixedBuf`](runtime::fixed::FixedBuf) or a slice of one.
    ///
    /// ```
    /// use runtime::fixed::FixedBufPool;
    ///
    /// # runtime::block_on(async {
    /// let path = std::env::temp_dir().join(format!("read-fixed-doc-{}", std::process::id()));
    /// fs::write(&path, "registered").await?;
    /// let pool = FixedBufPool::new(1, 4096)?;
    /// let file = fs::File::open(&path).await?;
    /// let (res, buf) = file.read_fixed_at(pool.get().await, 0).await;
    /// assert_eq!(res?, 10);
    /// assert_eq!(&buf[..], b"registered");
    /// # fs::remove_file(&path).await?;
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`read_at`](File::read_at).
    pub async fn read_fixed_at<B: FixedIoBuf + IoBufMut>(
        &self,
        buf: B,
        pos: u64,
    ) -> BufResult<usize, B> {
        if let Err(e) = check_pos(pos) {
            return (Err(e), buf);
        }
        if buf.bytes_room() == 0 {
            return (Ok(0), buf);
        }
        Read::fixed(self.shared_fd(), buf, pos).submit().await
    }

    /// Writes the buffer's bytes once at `pos` from a registered buffer
    /// (`IORING_OP_WRITE_FIXED`) and returns how many were written,
    /// possibly fewer. Takes a [`FixedBuf`](runtime::fixed::FixedBuf) or a
    /// slice of one (`buf.slice(n..)` to write the rest after a short
    /// write).
    ///
    /// ```
    /// use runtime::fixed::FixedBufPool;
    ///
    /// # runtime::block_on(async {
    /// let path = std::env::temp_dir().join(format!("write-fixed-doc-{}", std::process::id()));
    /// let file = fs::File::create(&path).await?;
    /// let pool = FixedBufPool::new(1, 4096)?;
    /// let mut buf = pool.get().await;
    /// buf.extend_from_slice(b"pinned bytes");
    /// let (res, _buf) = file.write_fixed_at(buf, 0).await;
    /// assert_eq!(res?, 12);
    /// assert_eq!(fs::read(&path).await?, b"pinned bytes");
    /// # fs::remove_file(&path).await?;
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`write_at`](File::write_at).
    pub async fn write_fixed_at<B: FixedIoBuf>(&self, buf: B, pos: u64) -> BufResult<usize, B> {
        if let Err(e) = check_pos(pos) {
            return (Err(e), buf);
        }
        Write::fixed(self.shared_fd(), buf, pos).submit().await
    }
}
