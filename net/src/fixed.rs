//! Stream socket I/O through registered buffers ([`runtime::fixed`]):
//! `read_fixed` (`IORING_OP_READ_FIXED`), `write_fixed`
//! (`IORING_OP_WRITE_FIXED`) and `send_zc_fixed` (`IORING_OP_SEND_ZC` with
//! `IORING_RECVSEND_FIXED_BUF`) on [`TcpStream`] and [`UnixStream`].
//!
//! On a socket, `READ_FIXED` / `WRITE_FIXED` are `read(2)` / `write(2)`:
//! the offset is `-1` (no file position). A `write(2)` has no
//! `MSG_NOSIGNAL`: writing to a socket whose peer is gone raises `SIGPIPE`,
//! which Rust programs ignore by default (the write then fails with
//! `BrokenPipe`); a program that installs a `SIGPIPE` handler should use
//! `send_zc_fixed`, which never raises it.
//!
//! With a buffer that is not registered on this runtime (its pool
//! degraded to plain memory) the plain `READ`, `SEND` (with
//! `MSG_NOSIGNAL`) and `SEND_ZC` are used instead.

use runtime::buf::IoBufMut;
use runtime::fixed::FixedIoBuf;
use runtime::op::SharedFd;
use runtime::op::{Operation, ReadFixed, WriteFixed};
use runtime::BufResult;

use crate::{DirectStream, TcpStream, UnixStream};

/// The "no offset" of a read or write on a stream (`-1`).
const NO_OFFSET: u64 = u64::MAX;

/// One `WRITE_FIXED` (or `SEND` with `MSG_NOSIGNAL`) of the buffer's
/// initialised bytes.
async fn write_fixed<B: FixedIoBuf>(fd: &SharedFd, buf: B) -> BufResult<usize, B> {
    if buf.fixed_index().is_none() {
        return crate::stream::send(fd, buf).await;
    }
    // `WRITE_FIXED` has no `MSG_NOSIGNAL`: see the method's docs.
    WriteFixed::new(fd, buf, NO_OFFSET).submit().await
}

/// The fixed-buffer methods, for a stream type with a `fd: SharedFd`.
macro_rules! fixed_methods {
    ($ty:ident, $doc_setup:literal) => {
        impl $ty {
            /// Reads once into a registered buffer
            /// (`IORING_OP_READ_FIXED`): the bytes go after the buffer's
            /// length, up to its capacity, and the length grows by the
            /// count returned; `0` means the peer closed its side (or the
            /// buffer is full). Takes a
            /// [`FixedBuf`](runtime::fixed::FixedBuf) or a slice of one.
            ///
            /// ```
            /// use runtime::fixed::FixedBufPool;
            ///
            /// # runtime::block_on(async {
            #[doc = $doc_setup]
            /// let pool = FixedBufPool::new(2, 4096)?;
            /// let mut out = pool.get().await;
            /// out.extend_from_slice(b"ping");
            /// let (res, _out) = a.write_fixed(out).await;
            /// assert_eq!(res?, 4);
            /// let (res, got) = b.read_fixed(pool.get().await).await;
            /// assert_eq!(res?, 4);
            /// assert_eq!(&got[..], b"ping");
            /// # Ok::<(), std::io::Error>(())
            /// # }).unwrap();
            /// ```
            pub async fn read_fixed<B: FixedIoBuf + IoBufMut>(
                &self,
                buf: B,
            ) -> BufResult<usize, B> {
                ReadFixed::new(&self.fd, buf, NO_OFFSET).submit().await
            }

            /// Writes once from a registered buffer
            /// (`IORING_OP_WRITE_FIXED`) and returns how many bytes were
            /// taken, possibly fewer (`buf.slice(n..)` writes the rest).
            /// See the [`read_fixed`](Self::read_fixed) example; about
            /// `SIGPIPE`, see [`send_zc_fixed`](Self::send_zc_fixed).
            ///
            /// ```
            /// # runtime::block_on(async {
            #[doc = $doc_setup]
            /// let pool = runtime::fixed::FixedBufPool::new(1, 64)?;
            /// let mut buf = pool.get().await;
            /// buf.extend_from_slice(b"hi");
            /// let (res, buf) = a.write_fixed(buf).await;
            /// assert_eq!(res?, 2);
            /// assert_eq!(&buf[..], b"hi"); // the buffer comes back as it was
            /// # Ok::<(), std::io::Error>(())
            /// # }).unwrap();
            /// ```
            pub async fn write_fixed<B: FixedIoBuf>(&self, buf: B) -> BufResult<usize, B> {
                write_fixed(&self.fd, buf).await
            }

            /// Sends once, zero copy, from a registered buffer
            /// (`IORING_OP_SEND_ZC` with `IORING_RECVSEND_FIXED_BUF`, with
            /// `MSG_NOSIGNAL`): like `send_zc`, it completes after the
            /// kernel's notification that it no longer reads the buffer,
            /// and falls back to a plain send where zero copy is not
            /// available (old kernels, Unix sockets). Returns the bytes
            /// sent, possibly fewer than the buffer holds.
            ///
            /// ```
            /// use runtime::buf::IoBuf;
            ///
            /// # runtime::block_on(async {
            #[doc = $doc_setup]
            /// let pool = runtime::fixed::FixedBufPool::new(1, 8192)?;
            /// let mut buf = pool.get().await;
            /// buf.extend_from_slice(&[7u8; 8192]);
            /// let mut sent = 0;
            /// while sent < 8192 {
            ///     let (res, rest) = a.send_zc_fixed(buf.slice(sent..)).await;
            ///     sent += res?;
            ///     buf = rest.into_inner();
            /// }
            /// let (res, got) = b.read_exact(Vec::with_capacity(8192)).await;
            /// res?;
            /// assert!(got.iter().all(|&x| x == 7));
            /// # Ok::<(), std::io::Error>(())
            /// # }).unwrap();
            /// ```
            pub async fn send_zc_fixed<B: FixedIoBuf>(&self, buf: B) -> BufResult<usize, B> {
                crate::send_zc::send_zc_fixed(&self.fd, buf).await
            }
        }
    };
}

fixed_methods!(
    TcpStream,
    "let listener = net::TcpListener::bind(\"127.0.0.1:0\")?;\n\
     let a = net::TcpStream::connect(listener.local_addr()?).await?;\n\
     let (b, _) = listener.accept().await?;"
);
fixed_methods!(UnixStream, "let (a, b) = net::UnixStream::pair()?;");
fixed_methods!(
    DirectStream,
    "let listener = net::TcpListener::bind(\"127.0.0.1:0\")?;\n\
     let a = net::TcpStream::connect(listener.local_addr()?).await?;\n\
     let (b, _) = listener.accept_direct().await?;"
);
