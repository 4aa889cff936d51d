//! Registered and direct descriptors: streams that use the ring's table of
//! registered files, and [`DirectStream`], the stream of a direct one.
//!
//! Every operation on an ordinary descriptor makes the kernel look the file
//! up in the process's descriptor table (and take and drop a reference on
//! it); an operation that names a slot of the ring's own table
//! (`IOSQE_FIXED_FILE`) skips that. A connected stream uses a slot in one
//! of two ways, one concept with the same methods and signatures:
//!
//! | | registered | direct |
//! | --- | --- | --- |
//! | made by | [`TcpStream::register`], [`UnixStream::register`] | [`TcpListener::accept_direct`], [`incoming_direct`](TcpListener::incoming_direct), [`TcpStream::into_direct`] (and the Unix forms) |
//! | type | `TcpStream` / `UnixStream`, as before | [`DirectStream`], for TCP and Unix |
//! | descriptor number | kept: socket options, `AsRawFd`, addresses work as before | none, only the slot (a connection accepted into the table never has one): no `AsRawFd`, no socket options |
//! | `shutdown(&self, how) -> io::Result<()>` | `shutdown(2)` | `IORING_OP_SHUTDOWN`, through the ring and waited for at once |
//! | `peer_addr(&self) -> io::Result<SocketAddr>` | `getpeername(2)` | the address the accept reported; `NotConnected` if it reported none (multishot accepts, Unix sockets) |
//! | reads, writes, zero copy, registered buffers, buffer rings, send queues | each operation names the slot | the same |
//! | used from another runtime | operations use the descriptor number | operations fail with `EBADF` |
//!
//! Both are the same socket core as every stream (`stream.rs`); only how
//! the descriptor is named differs ([`runtime::op::SharedFd`] holds either
//! form). The table is registered on first use (see
//! [`runtime::op::direct_table`] and [`runtime::Builder::direct_descriptors`]
//! for its size and limits); a slot is freed when its stream and every
//! operation still in flight on it are gone. Socket options of a direct
//! stream are inherited from the listener on Linux (set `TCP_NODELAY` on
//! the listening socket to get it on every connection), or set them before
//! [`TcpStream::into_direct`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use runtime::buf::{IoBuf, IoBufMut};
use runtime::bufring::{BufRing, BufRingChunk};
use runtime::fixed::FixedIoBuf;
use runtime::io::{OwnedRead, OwnedWrite};
use runtime::op::SharedFd;
use runtime::BufResult;

use crate::listener::Accepted;
use crate::stream::Stream;
use crate::{RecvMulti, SendQueue};
#[cfg(doc)]
use crate::{TcpListener, TcpStream, UnixStream};

/// A connected stream socket (TCP or Unix) on a direct descriptor: a slot
/// of the ring's table, with no descriptor number (see the [module
/// docs](self) for registered and direct descriptors).
///
/// It has the read and write methods of [`TcpStream`], each one SQE naming
/// the slot with `IOSQE_FIXED_FILE`, and the same `shutdown` and
/// `peer_addr`. Dropping it frees the slot (`IORING_OP_CLOSE` on the slot)
/// once no operation on it is in flight.
///
/// ```
/// use net::{TcpListener, TcpStream};
///
/// # runtime::block_on(async {
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// let client = runtime::spawn(async move {
///     let s = TcpStream::connect(addr).await?;
///     let (res, _) = s.write_all(b"ping".to_vec()).await;
///     res?;
///     let (res, buf) = s.read(Vec::with_capacity(4)).await;
///     res?;
///     Ok::<_, std::io::Error>(buf)
/// });
/// let (conn, peer) = listener.accept_direct().await?;
/// assert!(conn.slot().unwrap() < runtime::op::direct_table()?);
/// assert_eq!(conn.peer_addr()?, peer);
/// let (res, buf) = conn.read(Vec::with_capacity(16)).await;
/// res?;
/// let (res, _) = conn.write_all(buf).await;
/// res?;
/// conn.shutdown(std::net::Shutdown::Write)?;
/// assert_eq!(client.await.unwrap()?, b"ping");
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
pub struct DirectStream {
    stream: Stream,
    /// The peer's address, as the accept reported it.
    peer: Option<SocketAddr>,
}

impl DirectStream {
    /// The direct stream on `stream`, whose peer is `peer` if known.
    pub(crate) fn new(stream: Stream, peer: Option<SocketAddr>) -> DirectStream {
        DirectStream { stream, peer }
    }

    /// Reads once into `buf`'s writable region; `0` means the peer closed
    /// its side. A `buf` with no room gives `Ok(0)` at once, without
    /// submitting anything. See [`TcpStream::read`].
    pub async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        self.stream.read(buf).await
    }

    /// [`read`](Self::read) with a deadline enforced by the kernel, the
    /// buffer back on timeout (`TimedOut`); `Ok(0)` at once for a `buf`
    /// with no room. See [`TcpStream::read_timeout`].
    pub async fn read_timeout<B: IoBufMut>(
        &self,
        buf: B,
        timeout: Duration,
    ) -> BufResult<usize, B> {
        self.stream.read_timeout(buf, timeout).await
    }

    /// Reads until `buf` is full; `UnexpectedEof` if the peer closes first.
    /// A `buf` with no room gives `Ok(())` at once.
    pub async fn read_exact<B: IoBufMut>(&self, buf: B) -> BufResult<(), B> {
        self.stream.read_exact(buf).await
    }

    /// Reads once, scattering into the buffers in order
    /// (`IORING_OP_RECVMSG`); `Ok(0)` at once if no buffer has room.
    pub async fn readv<B: IoBufMut>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        self.stream.readv(bufs).await
    }

    /// Writes once (`IORING_OP_SEND` with `MSG_NOSIGNAL`) and returns how
    /// many bytes were taken. See [`TcpStream::write`].
    pub async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.stream.send(buf).await
    }

    /// Writes all of `buf`'s initialised bytes, handling short writes.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        self.stream.write_all(buf).await
    }

    /// Writes once, gathering from the buffers in order
    /// (`IORING_OP_SENDMSG` with `MSG_NOSIGNAL`).
    pub async fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        self.stream.writev(bufs).await
    }

    /// Sends once; the same as [`write`](Self::write).
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.stream.send(buf).await
    }

    /// Sends once without copying (`IORING_OP_SEND_ZC`), resolved after
    /// the kernel's notification. See [`TcpStream::send_zc`].
    pub async fn send_zc<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.stream.send_zc(buf).await
    }

    /// Sends all of `buf` without copying. See
    /// [`TcpStream::write_all_zc`].
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let listener = net::TcpListener::bind("127.0.0.1:0")?;
    /// let b = net::TcpStream::connect(listener.local_addr()?).await?;
    /// let (a, _) = listener.accept_direct().await?;
    /// let reader = runtime::spawn(async move {
    ///     b.read_exact(Vec::with_capacity(1 << 20)).await
    /// });
    /// let (res, buf) = a.write_all_zc(vec![7u8; 1 << 20]).await;
    /// res?;
    /// assert_eq!(buf.len(), 1 << 20);
    /// let (res, got) = reader.await.unwrap();
    /// res?;
    /// assert!(got.iter().all(|&x| x == 7));
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn write_all_zc<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        self.stream.write_all_zc(buf).await
    }

    /// Reads once into a registered buffer (`IORING_OP_READ_FIXED`); a full
    /// buffer gives `Ok(0)` at once. See [`TcpStream::read_fixed`].
    ///
    /// ```
    /// use runtime::fixed::FixedBufPool;
    ///
    /// # runtime::block_on(async {
    /// let listener = net::TcpListener::bind("127.0.0.1:0")?;
    /// let a = net::TcpStream::connect(listener.local_addr()?).await?;
    /// let (b, _) = listener.accept_direct().await?;
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
    pub async fn read_fixed<B: FixedIoBuf + IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        self.stream.read_fixed(buf).await
    }

    /// Writes once from a registered buffer (`IORING_OP_WRITE_FIXED`). See
    /// [`TcpStream::write_fixed`], also about `SIGPIPE`.
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let listener = net::TcpListener::bind("127.0.0.1:0")?;
    /// let _peer = net::TcpStream::connect(listener.local_addr()?).await?;
    /// let (a, _) = listener.accept_direct().await?;
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
        self.stream.write_fixed(buf).await
    }

    /// Sends once, zero copy, from a registered buffer. See
    /// [`TcpStream::send_zc_fixed`].
    ///
    /// ```
    /// use runtime::buf::IoBuf;
    ///
    /// # runtime::block_on(async {
    /// let listener = net::TcpListener::bind("127.0.0.1:0")?;
    /// let b = net::TcpStream::connect(listener.local_addr()?).await?;
    /// let (a, _) = listener.accept_direct().await?;
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
        self.stream.send_zc_fixed(buf).await
    }

    /// A stream of received chunks on multishot receive into `ring`. See
    /// [`TcpStream::recv_multishot`] and [`RecvMulti`].
    pub fn recv_multishot(&self, ring: &BufRing) -> RecvMulti {
        self.stream.recv_multishot(ring)
    }

    /// Receives once into a buffer the kernel picks from `ring`; `Ok(None)`
    /// once the peer closed its side. See [`TcpStream::recv_from_ring`].
    pub async fn recv_from_ring(&self, ring: &BufRing) -> io::Result<Option<BufRingChunk>> {
        self.stream.recv_from_ring(ring).await
    }

    /// A send queue for this connection holding up to `entries` buffers
    /// (a power of two from 1 to 32768); see [`SendQueue`] and
    /// [`TcpStream::send_queue`].
    ///
    /// # Errors
    ///
    /// As for [`TcpStream::send_queue`].
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub fn send_queue(&self, entries: u16) -> io::Result<SendQueue> {
        self.stream.send_queue(entries)
    }

    /// Shuts down the read side, the write side or both, at once, like
    /// [`TcpStream::shutdown`]. A direct descriptor has no number for
    /// `shutdown(2)`, so this submits `IORING_OP_SHUTDOWN` and waits in the
    /// ring for its completion, which comes at once (a stream that fell
    /// back to an ordinary descriptor, see [`is_direct`](Self::is_direct),
    /// uses `shutdown(2)`).
    ///
    /// # Errors
    ///
    /// The errors of `shutdown(2)`; `EBADF` on a runtime other than the
    /// one that owns the slot.
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.stream.shutdown(how)
    }

    /// The peer's address, as the accept reported it: known after
    /// [`TcpListener::accept_direct`] and [`TcpStream::into_direct`]. A
    /// direct descriptor has no number for `getpeername(2)`, so when the
    /// accept reported none (a multishot accept, a Unix socket) this is a
    /// `NotConnected` error saying so.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.peer.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                "peer address unknown: a direct descriptor has no number for getpeername(2), \
                 and the accept of this stream reported none (multishot accepts and Unix \
                 sockets do not)",
            )
        })
    }

    /// The slot of the ring's direct-descriptor table this stream uses;
    /// `None` if it fell back to an ordinary descriptor (see
    /// [`is_direct`](Self::is_direct)).
    pub fn slot(&self) -> Option<u32> {
        self.stream.slot()
    }

    /// Whether the stream is on a direct descriptor. An accept into the
    /// table falls back to an ordinary descriptor when the kernel has no
    /// direct descriptors ([`runtime::Features::direct_descriptors`]) or
    /// every slot of the table is held; the stream then works the same,
    /// with the per-operation file lookup.
    pub fn is_direct(&self) -> bool {
        self.stream.is_direct()
    }

    /// Frees the slot through the ring and reports the result. If
    /// operations on it are still in flight, it is freed when the last one
    /// finishes, and this returns `Ok(())` at once.
    pub async fn close(self) -> io::Result<()> {
        self.stream.close().await
    }
}

impl Accepted for DirectStream {
    const DIRECT: bool = true;

    /// A multishot accept reports no peer address.
    fn accepted(fd: SharedFd) -> DirectStream {
        DirectStream::new(Stream::new(fd), None)
    }
}

impl OwnedRead for DirectStream {
    async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        self.stream.read(buf).await
    }

    async fn readv<B: IoBufMut>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        self.stream.readv(bufs).await
    }
}

impl OwnedWrite for DirectStream {
    async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.stream.send(buf).await
    }

    async fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        self.stream.writev(bufs).await
    }
}

impl fmt::Debug for DirectStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectStream")
            .field("slot", &self.stream.slot())
            .field("peer", &self.peer)
            .finish()
    }
}
