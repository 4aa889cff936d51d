//! The stream traits that generic code uses: [`OwnedRead`] and
//! [`OwnedWrite`], implemented by `net::TcpStream` and `net::UnixStream`.
//!
//! Like every I/O method of this runtime they take buffers by value and give
//! them back in a [`BufResult`], because the kernel owns a buffer while an
//! operation is in flight.
//!
//! ```no_run
//! use runtime::io::{OwnedRead, OwnedWrite};
//!
//! /// Echoes everything back, on any stream.
//! async fn echo<S: OwnedRead + OwnedWrite>(stream: &S) -> std::io::Result<()> {
//!     let mut buf = Vec::with_capacity(4096);
//!     loop {
//!         let (res, b) = stream.read(buf).await;
//!         if res? == 0 {
//!             return Ok(());
//!         }
//!         let (res, b) = stream.write_all(b).await;
//!         res?;
//!         buf = b;
//!         buf.clear();
//!     }
//! }
//! ```

use std::future::Future;
use std::io;

use crate::buf::{IoBuf, IoBufMut};
use crate::BufResult;

/// Reading into owned buffers.
pub trait OwnedRead {
    /// Reads once into `buf`'s writable region (a `Vec`'s spare capacity)
    /// and returns how many bytes came; `0` means end of stream. A buffer
    /// with no room gives `Ok(0)` at once, without submitting anything.
    fn read<B: IoBufMut>(&self, buf: B) -> impl Future<Output = BufResult<usize, B>>;

    /// Reads once, scattering into several buffers in order; `Ok(0)` at
    /// once if none has room.
    fn readv<B: IoBufMut>(&self, bufs: Vec<B>) -> impl Future<Output = BufResult<usize, Vec<B>>>;

    /// Reads until `buf` is full (a `Vec` up to its capacity), handling
    /// short reads; `UnexpectedEof` if the stream ends first (the bytes
    /// read so far are in the buffer). A buffer with no room gives `Ok(())`
    /// at once.
    fn read_exact<B: IoBufMut>(&self, buf: B) -> impl Future<Output = BufResult<(), B>> {
        async move {
            let total = buf.bytes_total();
            let mut filled = buf.read_start();
            let mut buf = buf;
            while filled < total {
                let (res, slice) = self.read(buf.slice(filled..total)).await;
                buf = slice.into_inner();
                match res {
                    Ok(0) => {
                        return (
                            Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!(
                                    "stream ended after {filled} of {total} bytes in read_exact"
                                ),
                            )),
                            buf,
                        )
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return (Err(e), buf),
                }
            }
            (Ok(()), buf)
        }
    }
}

/// Writing from owned buffers.
pub trait OwnedWrite {
    /// Writes once from `buf`'s initialised bytes and returns how many were
    /// taken (possibly fewer).
    fn write<B: IoBuf>(&self, buf: B) -> impl Future<Output = BufResult<usize, B>>;

    /// Writes once, gathering from several buffers in order.
    fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> impl Future<Output = BufResult<usize, Vec<B>>>;

    /// Writes all of `buf`'s initialised bytes, handling short writes;
    /// `WriteZero` if the stream stops taking bytes.
    fn write_all<B: IoBuf>(&self, buf: B) -> impl Future<Output = BufResult<(), B>> {
        async move {
            let total = buf.bytes_init();
            let mut written = 0;
            let mut buf = buf;
            while written < total {
                let (res, slice) = self.write(buf.slice(written..total)).await;
                buf = slice.into_inner();
                match res {
                    Ok(0) => {
                        return (
                            Err(io::Error::new(
                                io::ErrorKind::WriteZero,
                                format!("stream took no more bytes after {written} of {total}"),
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
    }
}
