//! Unix domain stream sockets: [`UnixListener`] and [`UnixStream`], each
//! with its whole API here. The stream's operations are those of the
//! socket core (`stream.rs`), shared with `TcpStream` and `DirectStream`.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use runtime::buf::{IoBuf, IoBufMut};
use runtime::bufring::{BufRing, BufRingChunk};
use runtime::fixed::FixedIoBuf;
use runtime::io::{OwnedRead, OwnedWrite};
use runtime::op::SharedFd;
use runtime::BufResult;
use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use crate::addr::{to_sock_addr, unix_addr};
use crate::listener::{AcceptInto, Accepted, Listener, BACKLOG};
use crate::stream::Stream;
use crate::{DirectStream, IncomingDirect, RecvMulti, SendQueue, UnixIncoming};
#[cfg(doc)]
use crate::{TcpListener, TcpStream};

/// A Unix domain socket listening for connections.
pub struct UnixListener {
    listener: Listener,
}

impl UnixListener {
    /// Creates a socket bound to the file system path `path` and listening
    /// (backlog 4096). The path must not exist yet (`AddrInUse` otherwise);
    /// removing it afterwards is up to the caller.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.bind(&SockAddr::unix(path)?)?;
        socket.listen(BACKLOG)?;
        Ok(UnixListener {
            listener: Listener::new(socket.into()),
        })
    }

    /// Takes over a standard-library listener (switched to blocking mode).
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> UnixListener {
        let _ = listener.set_nonblocking(false);
        UnixListener {
            listener: Listener::new(listener.into()),
        }
    }

    /// Accepts one connection (`IORING_OP_ACCEPT`), with the peer's address
    /// and the same back-off after out-of-resource errors as
    /// [`TcpListener::accept`].
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (fd, addr) = self.listener.accept(AcceptInto::Fd).await?;
        let addr = unix_addr(&to_sock_addr(&addr))?;
        Ok((UnixStream::accepted(fd), addr))
    }

    /// Accepts one connection straight into a free slot of the ring's
    /// direct-descriptor table (see [`TcpListener::accept_direct`] and
    /// [registered and direct descriptors](crate::direct)). A Unix peer
    /// has no IP address, so the stream's
    /// [`peer_addr`](DirectStream::peer_addr) is an error.
    pub async fn accept_direct(&self) -> io::Result<DirectStream> {
        let (fd, _addr) = self.listener.accept(AcceptInto::Direct).await?;
        Ok(DirectStream::new(Stream::new(fd), None))
    }

    /// A stream of incoming connections on multishot accept (see
    /// [`TcpListener::incoming`] and [`Incoming`](crate::Incoming)).
    pub fn incoming(&self) -> UnixIncoming<'_> {
        self.listener.incoming()
    }

    /// A stream of incoming connections on multishot accept, each in a
    /// slot of the ring's direct-descriptor table (see
    /// [`TcpListener::incoming_direct`]).
    pub fn incoming_direct(&self) -> IncomingDirect<'_> {
        self.listener.incoming()
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        unix_addr(&SockRef::from(self.listener.fd()).local_addr()?)
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.listener.fd().raw()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("fd", &self.listener.fd().raw())
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// A Unix domain stream connection, with the same read/write family as
/// [`TcpStream`] (each method's docs there say more).
pub struct UnixStream {
    stream: Stream,
}

impl UnixStream {
    /// Connects to the socket at `path` (`IORING_OP_CONNECT`).
    pub async fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        let addr = SockAddr::unix(path)?;
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        let stream = Stream::connect(socket, &addr).await?;
        Ok(UnixStream { stream })
    }

    /// A pair of connected streams.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        Ok((UnixStream::from_std(a), UnixStream::from_std(b)))
    }

    /// Takes over a standard-library stream (switched to blocking mode).
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> UnixStream {
        let _ = stream.set_nonblocking(false);
        UnixStream::accepted(SharedFd::new(stream.into()))
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

    /// Writes once (`IORING_OP_SEND` with `MSG_NOSIGNAL`: never `SIGPIPE`)
    /// and returns how many bytes were taken.
    pub async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.stream.send(buf).await
    }

    /// Writes all of `buf`'s initialised bytes, handling short writes.
    /// `buf` is owned (a `Vec`, `Box<[u8]>`, `Arc<[u8]>`, ...; it comes
    /// back with the result): a borrowed `&buf[..]` does not compile, see
    /// [`IoBuf`](runtime::buf::IoBuf) for why and what to pass instead.
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

    /// Sends once, asking for zero copy: Unix domain sockets refuse it, so
    /// this is a plain send after one refused SQE. See
    /// [`TcpStream::send_zc`].
    pub async fn send_zc<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.stream.send_zc(buf).await
    }

    /// Sends all of `buf`, asking for zero copy (see
    /// [`send_zc`](Self::send_zc) and [`TcpStream::write_all_zc`]).
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let (a, b) = net::UnixStream::pair()?;
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
    /// let (a, b) = net::UnixStream::pair()?;
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
    /// let (a, b) = net::UnixStream::pair()?;
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

    /// Sends once from a registered buffer, asking for zero copy (a plain
    /// send on Unix sockets, which refuse it). See
    /// [`TcpStream::send_zc_fixed`].
    ///
    /// ```
    /// use runtime::buf::IoBuf;
    ///
    /// # runtime::block_on(async {
    /// let (a, b) = net::UnixStream::pair()?;
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
    /// [`TcpStream::recv_multishot`] and [`RecvMulti`] (which has an
    /// example on a Unix stream).
    pub fn recv_multishot(&self, ring: &BufRing) -> RecvMulti {
        self.stream.recv_multishot(ring)
    }

    /// Receives once into a buffer the kernel picks from `ring`; `Ok(None)`
    /// once the peer closed its side. See [`TcpStream::recv_from_ring`].
    pub async fn recv_from_ring(&self, ring: &BufRing) -> io::Result<Option<BufRingChunk>> {
        self.stream.recv_from_ring(ring).await
    }

    /// A send queue for this connection holding up to `entries` buffers
    /// (a power of two from 1 to 32768); see [`SendQueue`] (it has an
    /// example on a Unix stream). The queue keeps the socket open while it
    /// lives.
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

    /// Shuts down the read side, the write side or both (`shutdown(2)`).
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.stream.shutdown(how)
    }

    /// The address of the peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        unix_addr(&self.stream.sock().peer_addr()?)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        unix_addr(&self.stream.sock().local_addr()?)
    }

    /// Installs the connection in the ring's direct-descriptor table as
    /// well (see [`TcpStream::register`]).
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub fn register(self) -> io::Result<UnixStream> {
        Ok(UnixStream {
            stream: self.stream.register()?,
        })
    }

    /// Whether the stream is registered (see [`register`](Self::register)).
    pub fn is_registered(&self) -> bool {
        self.stream.is_registered()
    }

    /// Moves the connection into a free slot of the ring's
    /// direct-descriptor table (see [`TcpStream::into_direct`]). A Unix
    /// peer has no IP address, so the direct stream's
    /// [`peer_addr`](DirectStream::peer_addr) is an error.
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub fn into_direct(self) -> io::Result<DirectStream> {
        Ok(DirectStream::new(self.stream.into_direct()?, None))
    }
}

impl Accepted for UnixStream {
    const DIRECT: bool = false;

    fn accepted(fd: SharedFd) -> UnixStream {
        UnixStream {
            stream: Stream::new(fd),
        }
    }
}

// The ecosystem's poll-style I/O traits (cargo features `tokio-io`,
// `futures-io`, `hyper`), on the stream core: see `poll_io.rs`.
crate::poll_io::poll_traits!(UnixStream);

impl OwnedRead for UnixStream {
    async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        self.stream.read(buf).await
    }

    async fn readv<B: IoBufMut>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        self.stream.readv(bufs).await
    }
}

impl OwnedWrite for UnixStream {
    async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.stream.send(buf).await
    }

    async fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        self.stream.writev(bufs).await
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.raw()
    }
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("fd", &self.stream.raw())
            .finish()
    }
}
