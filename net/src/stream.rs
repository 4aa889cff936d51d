//! The read and write operations shared by every stream socket (TCP and
//! Unix), each one SQE whose data owns the buffers and a handle on the
//! descriptor.

use std::io;
use std::time::Duration;

use runtime::buf::{IoBuf, IoBufMut};
use runtime::op::{self, Operation, Recv, RecvMsg, SendMsg, SharedFd};
use runtime::BufResult;
use socket2::SockRef;

/// One `IORING_OP_RECV` into `buf`'s writable region.
pub(crate) async fn read<B: IoBufMut>(fd: &SharedFd, buf: B) -> BufResult<usize, B> {
    Recv::new(fd, buf).submit().await
}

/// [`read`] with a deadline enforced by the kernel: the `IORING_OP_RECV`
/// goes out linked to an `IORING_OP_LINK_TIMEOUT` (one chain, no runtime
/// timer). On timeout: `ErrorKind::TimedOut`, the buffer back unchanged.
pub(crate) async fn read_timeout<B: IoBufMut>(
    fd: &SharedFd,
    buf: B,
    timeout: Duration,
) -> BufResult<usize, B> {
    Recv::new(fd, buf).submit_with_timeout(timeout).await
}

/// One `IORING_OP_SEND` with `MSG_NOSIGNAL` of `buf`'s initialised bytes.
pub(crate) async fn send<B: IoBuf>(fd: &SharedFd, buf: B) -> BufResult<usize, B> {
    op::Send::new(fd, buf).submit().await
}

/// One `IORING_OP_RECVMSG` scattering into `bufs` in order.
pub(crate) async fn readv<B: IoBufMut>(fd: &SharedFd, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
    let (res, bufs) = RecvMsg::new(fd, bufs).submit().await;
    (res.map(|(n, _)| n), bufs)
}

/// One `IORING_OP_SENDMSG` with `MSG_NOSIGNAL` gathering from `bufs`.
pub(crate) async fn writev<B: IoBuf>(fd: &SharedFd, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
    SendMsg::new(fd, bufs, None).submit().await
}

/// Shuts down the read side, the write side or both: `shutdown(2)` on a
/// descriptor with a number; on a direct descriptor, which has none,
/// `IORING_OP_SHUTDOWN` through the ring, waited for here (it completes at
/// once). Never blocks.
///
/// # Panics
///
/// For a direct descriptor, if no runtime is running on this thread.
pub(crate) fn shutdown(fd: &SharedFd, how: std::net::Shutdown) -> io::Result<()> {
    match fd.borrow_fd() {
        Some(number) => SockRef::from(&number).shutdown(how),
        None => op::submit_and_wait(op::Shutdown::new(fd, how)),
    }
}

/// Generates, for a stream socket type with a `fd: SharedFd` field, the
/// read/write method family and the `runtime::io` trait impls, plus
/// `shutdown` and `AsRawFd` (for types holding an ordinary descriptor).
macro_rules! stream_methods {
    ($ty:ident) => {
        crate::stream::stream_io_methods!($ty);

        impl $ty {
            /// Shuts down the read side, the write side or both.
            pub fn shutdown(&self, how: std::net::Shutdown) -> std::io::Result<()> {
                crate::stream::shutdown(&self.fd, how)
            }
        }

        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.fd.raw()
            }
        }
    };
}

/// Generates, for a stream socket type with a `fd: SharedFd` field (an
/// ordinary or a direct descriptor), the read/write method family and the
/// `runtime::io` trait impls.
macro_rules! stream_io_methods {
    ($ty:ident) => {
        impl $ty {
            /// Reads once into `buf`'s writable region (a `Vec`'s spare
            /// capacity, which it then extends) and returns the number of
            /// bytes read; `0` means the peer closed its side (or `buf` has
            /// no room).
            pub async fn read<B: runtime::buf::IoBufMut>(
                &self,
                buf: B,
            ) -> runtime::BufResult<usize, B> {
                crate::stream::read(&self.fd, buf).await
            }

            /// Like [`read`](Self::read), with a deadline: if nothing
            /// arrives within `timeout`, the read is cancelled and this
            /// returns `ErrorKind::TimedOut` with `buf` back unchanged. The
            /// deadline is the kernel's (`IORING_OP_LINK_TIMEOUT` linked to
            /// the receive, no runtime timer; every kernel this runtime runs
            /// on has it). Unlike wrapping `read` in
            /// [`runtime::time::timeout`], which drops the read and its
            /// buffer when the time is up, this gives the buffer back. It
            /// is not cheaper: the kernel arms and cancels a timer per read,
            /// where the runtime's timers are a map in user space (the
            /// `timeout_read` benchmark measured 114k vs 141k one-byte round
            /// trips per second), so prefer `time::timeout` unless the
            /// buffer must come back.
            pub async fn read_timeout<B: runtime::buf::IoBufMut>(
                &self,
                buf: B,
                timeout: std::time::Duration,
            ) -> runtime::BufResult<usize, B> {
                crate::stream::read_timeout(&self.fd, buf, timeout).await
            }

            /// Reads until `buf` is full (a `Vec` up to its capacity),
            /// handling short reads. `UnexpectedEof` if the peer closes
            /// first; the bytes read so far are in the buffer.
            pub async fn read_exact<B: runtime::buf::IoBufMut>(
                &self,
                buf: B,
            ) -> runtime::BufResult<(), B> {
                <Self as runtime::io::OwnedRead>::read_exact(self, buf).await
            }

            /// Reads once, scattering into the buffers in order
            /// (`IORING_OP_RECVMSG`).
            pub async fn readv<B: runtime::buf::IoBufMut>(
                &self,
                bufs: Vec<B>,
            ) -> runtime::BufResult<usize, Vec<B>> {
                crate::stream::readv(&self.fd, bufs).await
            }

            /// Writes once from `buf`'s initialised bytes and returns how
            /// many were taken, possibly fewer. Never raises `SIGPIPE`: a
            /// closed peer is a `BrokenPipe` error.
            pub async fn write<B: runtime::buf::IoBuf>(
                &self,
                buf: B,
            ) -> runtime::BufResult<usize, B> {
                crate::stream::send(&self.fd, buf).await
            }

            /// Writes all of `buf`'s initialised bytes, handling short
            /// writes.
            pub async fn write_all<B: runtime::buf::IoBuf>(
                &self,
                buf: B,
            ) -> runtime::BufResult<(), B> {
                <Self as runtime::io::OwnedWrite>::write_all(self, buf).await
            }

            /// Writes once, gathering from the buffers in order
            /// (`IORING_OP_SENDMSG` with `MSG_NOSIGNAL`).
            pub async fn writev<B: runtime::buf::IoBuf>(
                &self,
                bufs: Vec<B>,
            ) -> runtime::BufResult<usize, Vec<B>> {
                crate::stream::writev(&self.fd, bufs).await
            }

            /// Sends once (`IORING_OP_SEND` with `MSG_NOSIGNAL`); the same
            /// as [`write`](Self::write).
            pub async fn send<B: runtime::buf::IoBuf>(
                &self,
                buf: B,
            ) -> runtime::BufResult<usize, B> {
                crate::stream::send(&self.fd, buf).await
            }

            /// Sends once **without copying** `buf` into the kernel
            /// (`IORING_OP_SEND_ZC` with `MSG_NOSIGNAL`) and returns how
            /// many bytes were taken, possibly fewer than offered.
            ///
            /// The future resolves only after the kernel's notification
            /// that it no longer reads the buffer (on TCP, once the data is
            /// acknowledged), so the buffer comes back free to reuse; it is
            /// owned by the operation until then, even if the future is
            /// dropped. Zero copy pays for large buffers only: the
            /// benchmark suite (`bench/run --only uring`, loopback TCP, one
            /// send in flight) measured `write_all_zc` at 0.42x the
            /// throughput of `write_all` with 64 KiB writes (each send
            /// waits for its notification, which on loopback comes only
            /// once the reader consumed the data) and 1.04x–1.39x, noisy,
            /// with 1 MiB writes; on a real network device the break-even
            /// is lower, and keeping several sends in flight hides the
            /// wait. Falls back to a plain
            /// [`send`](Self::send) when the kernel lacks
            /// `SEND_ZC` ([`runtime::features`]) or the socket refuses it
            /// (Unix domain sockets do, at the price of one extra SQE).
            pub async fn send_zc<B: runtime::buf::IoBuf>(
                &self,
                buf: B,
            ) -> runtime::BufResult<usize, B> {
                crate::send_zc::send_zc(&self.fd, buf).await
            }

            /// Sends all of `buf`'s initialised bytes without copying them
            /// (`IORING_OP_SEND_ZC` with `MSG_NOSIGNAL | MSG_WAITALL`, so
            /// a whole buffer is usually one operation), handling short
            /// sends. Resolves only after the kernel's last notification:
            /// see [`send_zc`](Self::send_zc) for when zero copy pays and
            /// for the fallback.
            ///
            /// ```
            /// # runtime::block_on(async {
            /// let listener = net::TcpListener::bind("127.0.0.1:0")?;
            /// let a = net::TcpStream::connect(listener.local_addr()?).await?;
            /// let (b, _) = listener.accept().await?;
            /// // The notification comes once the data left the socket, so
            /// // somebody must be reading.
            /// let reader = runtime::spawn(async move {
            ///     b.read_exact(Vec::with_capacity(1 << 20)).await
            /// });
            /// let (res, buf) = a.write_all_zc(vec![7u8; 1 << 20]).await;
            /// res?;
            /// // The buffer is back and the kernel is done with it.
            /// assert_eq!(buf.len(), 1 << 20);
            /// let (res, got) = reader.await.unwrap();
            /// res?;
            /// assert!(got.iter().all(|&x| x == 7));
            /// # Ok::<(), std::io::Error>(())
            /// # }).unwrap();
            /// ```
            pub async fn write_all_zc<B: runtime::buf::IoBuf>(
                &self,
                buf: B,
            ) -> runtime::BufResult<(), B> {
                crate::send_zc::write_all_zc(&self.fd, buf).await
            }

            /// A stream of received chunks on **multishot receive** into
            /// the provided buffer ring `ring`: a buffer is taken from the
            /// ring only when bytes arrive, so an idle connection holds none.
            /// Each chunk's buffer goes back to the ring when it is dropped.
            /// An empty ring pauses the stream until a chunk is dropped (no
            /// error, nothing lost); see [`RecvMulti`](crate::RecvMulti).
            pub fn recv_multishot(&self, ring: &runtime::bufring::BufRing) -> crate::RecvMulti {
                crate::recv_multi::RecvMulti::new(&self.fd, ring)
            }

            /// Receives once into a buffer the kernel picks from `ring`;
            /// `Ok(None)` once the peer closed its side. Waits for a
            /// buffer to be returned if the ring is empty.
            pub async fn recv_from_ring(
                &self,
                ring: &runtime::bufring::BufRing,
            ) -> std::io::Result<Option<runtime::bufring::BufRingChunk>> {
                crate::recv_multi::recv_from_ring(&self.fd, ring).await
            }
        }

        impl runtime::io::OwnedRead for $ty {
            fn read<B: runtime::buf::IoBufMut>(
                &self,
                buf: B,
            ) -> impl std::future::Future<Output = runtime::BufResult<usize, B>> {
                crate::stream::read(&self.fd, buf)
            }

            fn readv<B: runtime::buf::IoBufMut>(
                &self,
                bufs: Vec<B>,
            ) -> impl std::future::Future<Output = runtime::BufResult<usize, Vec<B>>> {
                crate::stream::readv(&self.fd, bufs)
            }
        }

        impl runtime::io::OwnedWrite for $ty {
            fn write<B: runtime::buf::IoBuf>(
                &self,
                buf: B,
            ) -> impl std::future::Future<Output = runtime::BufResult<usize, B>> {
                crate::stream::send(&self.fd, buf)
            }

            fn writev<B: runtime::buf::IoBuf>(
                &self,
                bufs: Vec<B>,
            ) -> impl std::future::Future<Output = runtime::BufResult<usize, Vec<B>>> {
                crate::stream::writev(&self.fd, bufs)
            }
        }
    };
}

pub(crate) use stream_io_methods;
pub(crate) use stream_methods;
