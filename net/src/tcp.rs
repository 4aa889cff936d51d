//! TCP: [`TcpListener`] (accept, multishot [`incoming`](TcpListener::incoming),
//! and their direct-descriptor forms) and [`TcpStream`], each with its
//! whole API here. The stream's operations are those of the socket core
//! (`stream.rs`), shared with `UnixStream` and `DirectStream`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use runtime::buf::{IoBuf, IoBufMut};
use runtime::bufring::{BufRing, BufRingChunk};
use runtime::fixed::FixedIoBuf;
use runtime::io::{OwnedRead, OwnedWrite};
use runtime::op::SharedFd;
use runtime::BufResult;
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use crate::addr::{each_addr, each_addr_now, resolve, resolve_now, to_socket_addr, ToSocketAddrs};
use crate::listener::{AcceptInto, Accepted, Listener, BACKLOG};
use crate::stream::Stream;
use crate::{DirectStream, Incoming, IncomingDirect, RecvMulti, SendQueue};

/// A TCP socket listening for connections.
///
/// Dropping it closes the socket (without blocking; after any accept in
/// flight is over).
pub struct TcpListener {
    listener: Listener,
}

impl TcpListener {
    /// Creates a socket bound to `addr` and listening, with `SO_REUSEADDR`
    /// and a backlog of 4096. If `addr` names several addresses, each is
    /// tried in turn. A name that needs a lookup is resolved on the calling
    /// thread (binding is done before serving; use a numeric address to
    /// avoid the lookup).
    ///
    /// # Errors
    ///
    /// `AddrInUse` if the address is taken, `AddrNotAvailable` if it is not
    /// local, and the other errors of `socket(2)`, `bind(2)`, `listen(2)`.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        each_addr_now(resolve_now(addr)?, |addr| {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            socket.bind(&addr.into())?;
            socket.listen(BACKLOG)?;
            Ok(TcpListener::from_owned(socket.into()))
        })
    }

    /// Like [`bind`](Self::bind), with `SO_REUSEPORT` as well as
    /// `SO_REUSEADDR`: several listeners (one per worker of a
    /// `runtime::Pool`, or one per process) can bind the same address and
    /// port, and the kernel spreads incoming connections among them. Every
    /// listener sharing the port must set `SO_REUSEPORT` and belong to the
    /// same user; a plain [`bind`](Self::bind) on the port fails with
    /// `AddrInUse`, and so does this one if a listener without the option
    /// holds the port.
    ///
    /// With port 0 the kernel picks a free port for the first listener;
    /// bind the others to that listener's
    /// [`local_addr`](Self::local_addr).
    ///
    /// ```
    /// let first = net::TcpListener::bind_reuseport("127.0.0.1:0")?;
    /// let second = net::TcpListener::bind_reuseport(first.local_addr()?)?;
    /// assert_eq!(first.local_addr()?, second.local_addr()?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`bind`](Self::bind); `AddrInUse` if the port is held by a
    /// socket without `SO_REUSEPORT` (or by another user).
    pub fn bind_reuseport<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        each_addr_now(resolve_now(addr)?, |addr| {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.bind(&addr.into())?;
            socket.listen(BACKLOG)?;
            Ok(TcpListener::from_owned(socket.into()))
        })
    }

    fn from_owned(fd: OwnedFd) -> TcpListener {
        TcpListener {
            listener: Listener::new(fd),
        }
    }

    /// Takes over a listening standard-library socket (switched to blocking
    /// mode: io_uring waits for it).
    pub fn from_std(listener: std::net::TcpListener) -> TcpListener {
        let _ = listener.set_nonblocking(false);
        TcpListener::from_owned(listener.into())
    }

    /// Accepts one connection (`IORING_OP_ACCEPT`).
    ///
    /// # Errors
    ///
    /// The errors of `accept4(2)`. After `EMFILE`/`ENFILE` (out of
    /// descriptors) and other out-of-resource errors, the next accept on
    /// this listener waits a little first (1 ms, doubling up to 200 ms,
    /// until one succeeds), so a loop that retries does not spin while the
    /// pending connection waits for a free descriptor.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (fd, addr) = self.listener.accept(AcceptInto::Fd).await?;
        Ok((TcpStream::accepted(fd), to_socket_addr(&addr)?))
    }

    /// Accepts one connection straight into a free slot of the ring's
    /// direct-descriptor table (`IORING_OP_ACCEPT` with
    /// `IORING_FILE_INDEX_ALLOC`; the table is registered first if it is
    /// not yet); see [`DirectStream`] and [registered and direct
    /// descriptors](crate::direct).
    /// Where the kernel has no direct descriptors, or every slot of the
    /// table is held, the connection is accepted on an ordinary descriptor
    /// instead ([`DirectStream::is_direct`] tells). The check counts slots
    /// held by streams: if several direct accepts (or a multishot one) race
    /// for the last free slots, the loser fails with `ENFILE`, and the
    /// kernel closes the connection it took. Errors registering the table
    /// (e.g. a table larger than `RLIMIT_NOFILE`) are returned.
    /// Out-of-resource errors are followed by the same back-off as
    /// [`accept`](Self::accept). The stream's
    /// [`peer_addr`](DirectStream::peer_addr) is the address returned here.
    pub async fn accept_direct(&self) -> io::Result<(DirectStream, SocketAddr)> {
        let (fd, addr) = self.listener.accept(AcceptInto::Direct).await?;
        let addr = to_socket_addr(&addr)?;
        Ok((DirectStream::new(Stream::new(fd), Some(addr)), addr))
    }

    /// A stream of incoming connections on **multishot accept**: one SQE
    /// yields connection after connection, and is re-armed when the kernel
    /// ends it. Errors are yielded too, and the stream goes on after them
    /// (with the same back-off as [`accept`](Self::accept) after
    /// out-of-resource errors). See [`Incoming`].
    pub fn incoming(&self) -> Incoming<'_> {
        self.listener.incoming()
    }

    /// A stream of incoming connections on multishot accept, each in a
    /// slot of the ring's direct-descriptor table (see
    /// [`incoming`](Self::incoming) and [`accept_direct`](Self::accept_direct)).
    /// A multishot accept reports no peer addresses, so the streams'
    /// [`peer_addr`](DirectStream::peer_addr) is an error.
    ///
    /// Whether connections go to the table is decided each time the
    /// multishot accept is armed, as for `accept_direct`. The kernel picks
    /// slots as connections arrive, so if the table fills up while it is
    /// armed, that accept fails with `ENFILE` (the kernel has taken the
    /// connection and closes it): the error is yielded, and the stream
    /// re-arms, on ordinary descriptors if the table is still full. Size
    /// the table ([`runtime::Builder::direct_descriptors`]) for the
    /// connections you expect.
    ///
    /// ```
    /// use net::{TcpListener, TcpStream};
    ///
    /// # runtime::block_on(async {
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let addr = listener.local_addr()?;
    /// let _c1 = TcpStream::connect(addr).await?;
    /// let _c2 = TcpStream::connect(addr).await?;
    /// let mut incoming = listener.incoming_direct();
    /// let a = incoming.next().await.unwrap()?;
    /// let b = incoming.next().await.unwrap()?;
    /// assert_ne!(a.slot(), b.slot());
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn incoming_direct(&self) -> IncomingDirect<'_> {
        self.listener.incoming()
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(SockRef::from(self.listener.fd()).local_addr()?)
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.listener.fd().raw()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("fd", &self.listener.fd().raw())
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// A TCP connection.
///
/// All I/O methods take `&self`, so one task can read while another
/// writes. Dropping the stream closes it without blocking, once no
/// operation on it is in flight any more. It can also use the ring's
/// table of registered descriptors: [`register`](Self::register) keeps it a
/// `TcpStream`, [`into_direct`](Self::into_direct) makes it a
/// [`DirectStream`] (see [registered and direct
/// descriptors](crate::direct)).
pub struct TcpStream {
    stream: Stream,
}

impl TcpStream {
    /// Connects to `addr` (`IORING_OP_CONNECT`), trying each address it
    /// names in turn. Names that need a lookup are resolved on the blocking
    /// pool, never on the ring's thread.
    ///
    /// # Errors
    ///
    /// `ConnectionRefused` if nobody listens there, and the other errors of
    /// `connect(2)` or of the lookup.
    pub async fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        let addrs = resolve(addr).await?;
        each_addr(addrs, |addr| async move {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            let stream = Stream::connect(socket, &SockAddr::from(addr)).await?;
            Ok(TcpStream { stream })
        })
        .await
    }

    /// Takes over a connected standard-library stream (switched to blocking
    /// mode: io_uring waits for it).
    pub fn from_std(stream: std::net::TcpStream) -> TcpStream {
        let _ = stream.set_nonblocking(false);
        TcpStream::accepted(SharedFd::new(stream.into()))
    }

    /// Reads once into `buf`'s writable region (a `Vec`'s spare capacity,
    /// which it then extends) and returns the number of bytes read (one
    /// `IORING_OP_RECV`); `0` means the peer closed its side. A `buf` with
    /// no room (an empty or full `Vec`, an empty `Box<[u8]>`) gives `Ok(0)`
    /// at once, without submitting anything, as std's `read` does.
    ///
    /// Giving the read up (dropping its future, e.g. under
    /// [`runtime::time::timeout`] or in a `select!`) cancels the receive and
    /// drops `buf` once the kernel is done with it; if bytes arrived in the
    /// meantime the cancel lost the race and they are gone with the buffer.
    /// To give up a read without that risk, use
    /// [`read_timeout`](Self::read_timeout) (the buffer comes back) or the
    /// poll-style `AsyncRead` (feature `tokio-io`), which takes no byte
    /// unless it returns it.
    pub async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        self.stream.read(buf).await
    }

    /// Like [`read`](Self::read), with a deadline: if nothing arrives
    /// within `timeout`, the read is cancelled and this returns
    /// `ErrorKind::TimedOut` with `buf` back unchanged. The error's message
    /// names the deadline ("read timed out after 5ms
    /// (IORING_OP_LINK_TIMEOUT)"); being an error with a message, it has no
    /// `raw_os_error()`, and its `source()` is the kernel's `ETIMEDOUT` (an
    /// `io::Error` that has it). An `ETIMEDOUT` of the connection itself
    /// (the kernel gave up on the peer) stays a plain OS error, so the two
    /// can be told apart. The deadline is the
    /// kernel's (`IORING_OP_LINK_TIMEOUT` linked to the receive, no runtime
    /// timer; every kernel this runtime runs on has it). Unlike wrapping
    /// `read` in [`runtime::time::timeout`], which drops the read and its
    /// buffer when the time is up, this gives the buffer back. A `buf` with
    /// no room gives `Ok(0)` at once, as for `read`. It is not
    /// cheaper: the kernel arms and cancels a timer per read, where the
    /// runtime's timers are a map in user space (measured in the benchmark
    /// suite: `bench/BENCHMARKS.md`, section "Link timeout"), so prefer
    /// `time::timeout` unless the buffer must come back.
    pub async fn read_timeout<B: IoBufMut>(
        &self,
        buf: B,
        timeout: Duration,
    ) -> BufResult<usize, B> {
        self.stream.read_timeout(buf, timeout).await
    }

    /// Reads until `buf` is full (a `Vec` up to its capacity), handling
    /// short reads. `UnexpectedEof` if the peer closes first; the bytes
    /// read so far are in the buffer. A `buf` that is already full (or
    /// empty with no capacity) gives `Ok(())` at once.
    pub async fn read_exact<B: IoBufMut>(&self, buf: B) -> BufResult<(), B> {
        self.stream.read_exact(buf).await
    }

    /// Reads once, scattering into the buffers in order
    /// (`IORING_OP_RECVMSG`). If no buffer has room, `Ok(0)` at once.
    pub async fn readv<B: IoBufMut>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        self.stream.readv(bufs).await
    }

    /// Writes once from `buf`'s initialised bytes and returns how many were
    /// taken, possibly fewer (`IORING_OP_SEND` with `MSG_NOSIGNAL`). Never
    /// raises `SIGPIPE`: a closed peer is a `BrokenPipe` error.
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

    /// Sends once (`IORING_OP_SEND` with `MSG_NOSIGNAL`); the same as
    /// [`write`](Self::write).
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.stream.send(buf).await
    }

    /// Sends once **without copying** `buf` into the kernel
    /// (`IORING_OP_SEND_ZC` with `MSG_NOSIGNAL`) and returns how many bytes
    /// were taken, possibly fewer than offered.
    ///
    /// The future resolves only after the kernel's notification that it no
    /// longer reads the buffer (on TCP, once the data is acknowledged), so
    /// the buffer comes back free to reuse; it is owned by the operation
    /// until then, even if the future is dropped. Zero copy pays for large
    /// buffers only: each send waits for its notification, which on
    /// loopback comes only once the reader consumed the data, so on
    /// loopback it loses to `write_all` at 64 KiB writes and breaks even
    /// around 1 MiB (the figures: `bench/BENCHMARKS.md`, section
    /// "SEND_ZC", from `bench/run --only uring`); on a real network device
    /// the break-even is lower, and keeping several sends in flight hides
    /// the wait. Falls back to a plain
    /// [`send`](Self::send) when the kernel lacks `SEND_ZC`
    /// ([`runtime::features`]) or the socket refuses it (Unix domain
    /// sockets do, at the price of one extra SQE).
    pub async fn send_zc<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.stream.send_zc(buf).await
    }

    /// Sends all of `buf`'s initialised bytes without copying them
    /// (`IORING_OP_SEND_ZC` with `MSG_NOSIGNAL | MSG_WAITALL`, so a whole
    /// buffer is usually one operation), handling short sends. Resolves
    /// only after the kernel's last notification: see
    /// [`send_zc`](Self::send_zc) for when zero copy pays and for the
    /// fallback.
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
    pub async fn write_all_zc<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        self.stream.write_all_zc(buf).await
    }

    /// Reads once into a registered buffer ([`runtime::fixed`],
    /// `IORING_OP_READ_FIXED`): the bytes go after the buffer's length, up
    /// to its capacity, and the length grows by the count returned; `0`
    /// means the peer closed its side (a full buffer gives `Ok(0)` at once,
    /// without submitting anything). Takes a
    /// [`FixedBuf`](runtime::fixed::FixedBuf) or a slice of one; with a
    /// buffer that is not registered on this runtime (its pool degraded to
    /// plain memory), a plain `IORING_OP_READ`.
    ///
    /// ```
    /// use runtime::fixed::FixedBufPool;
    ///
    /// # runtime::block_on(async {
    /// let listener = net::TcpListener::bind("127.0.0.1:0")?;
    /// let a = net::TcpStream::connect(listener.local_addr()?).await?;
    /// let (b, _) = listener.accept().await?;
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

    /// Writes once from a registered buffer (`IORING_OP_WRITE_FIXED`) and
    /// returns how many bytes were taken, possibly fewer (`buf.slice(n..)`
    /// writes the rest); with a buffer that is not registered on this
    /// runtime, a plain `IORING_OP_SEND` with `MSG_NOSIGNAL`. See the
    /// [`read_fixed`](Self::read_fixed) example.
    ///
    /// On a socket `WRITE_FIXED` is a `write(2)`, which has no
    /// `MSG_NOSIGNAL`: writing to a socket whose peer is gone raises
    /// `SIGPIPE`, which Rust programs ignore by default (the write then
    /// fails with `BrokenPipe`); a program that installs a `SIGPIPE`
    /// handler should use [`send_zc_fixed`](Self::send_zc_fixed), which
    /// never raises it.
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let listener = net::TcpListener::bind("127.0.0.1:0")?;
    /// let a = net::TcpStream::connect(listener.local_addr()?).await?;
    /// let (b, _) = listener.accept().await?;
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

    /// Sends once, zero copy, from a registered buffer
    /// (`IORING_OP_SEND_ZC` with `IORING_RECVSEND_FIXED_BUF`, with
    /// `MSG_NOSIGNAL`: the kernel skips pinning the pages): like
    /// [`send_zc`](Self::send_zc), it completes after the kernel's
    /// notification that it no longer reads the buffer, and falls back to
    /// a plain send where zero copy is not available (old kernels, Unix
    /// sockets); a buffer not registered on this runtime goes out as an
    /// ordinary zero-copy send. Returns the bytes sent, possibly fewer than
    /// the buffer holds.
    ///
    /// ```
    /// use runtime::buf::IoBuf;
    ///
    /// # runtime::block_on(async {
    /// let listener = net::TcpListener::bind("127.0.0.1:0")?;
    /// let a = net::TcpStream::connect(listener.local_addr()?).await?;
    /// let (b, _) = listener.accept().await?;
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

    /// A stream of received chunks on **multishot receive** into the
    /// provided buffer ring `ring`: a buffer is taken from the ring only
    /// when bytes arrive, so an idle connection holds none. Each chunk's
    /// buffer goes back to the ring when it is dropped. An empty ring
    /// pauses the stream until a chunk is dropped (no error, nothing
    /// lost); see [`RecvMulti`].
    pub fn recv_multishot(&self, ring: &BufRing) -> RecvMulti {
        self.stream.recv_multishot(ring)
    }

    /// Receives once into a buffer the kernel picks from `ring`; `Ok(None)`
    /// once the peer closed its side. Waits for a buffer to be returned if
    /// the ring is empty.
    pub async fn recv_from_ring(&self, ring: &BufRing) -> io::Result<Option<BufRingChunk>> {
        self.stream.recv_from_ring(ring).await
    }

    /// A send queue for this connection holding up to `entries` buffers (a
    /// power of two from 1 to 32768); see [`SendQueue`]. The queue keeps
    /// the socket open while it lives.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad `entries`; registering the buffer ring can
    /// fail (`OutOfMemory`, `AlreadyExists` when every buffer group id of
    /// the runtime's ring is taken).
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

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm) on or off.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.stream.sock().set_tcp_nodelay(on)
    }

    /// Whether `TCP_NODELAY` is on.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.stream.sock().tcp_nodelay()
    }

    /// The address of the peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(self.stream.sock().peer_addr()?)
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(self.stream.sock().local_addr()?)
    }

    /// Installs the connection in the ring's direct-descriptor table as
    /// well and returns the stream that uses it: its reads and writes on
    /// this runtime name the slot (`IOSQE_FIXED_FILE`: no per-operation
    /// file lookup in the kernel), while it keeps its descriptor, so socket
    /// options, addresses, `shutdown` and `AsRawFd` work as before (unlike
    /// [`into_direct`](Self::into_direct); see [registered and direct
    /// descriptors](crate::direct)).
    /// Registering a registered stream returns it unchanged. `ENFILE` when
    /// the part of the table the runtime hands out is full.
    ///
    /// ```
    /// use net::{TcpListener, TcpStream};
    ///
    /// # runtime::block_on(async {
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let c = TcpStream::connect(listener.local_addr()?).await?.register()?;
    /// assert!(c.is_registered());
    /// c.set_nodelay(true)?;
    /// let (s, _) = listener.accept().await?;
    /// let (res, _) = c.write_all(b"hi".to_vec()).await;
    /// res?;
    /// let (res, buf) = s.read(Vec::with_capacity(2)).await;
    /// assert_eq!((res?, &buf[..]), (2, &b"hi"[..]));
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub fn register(self) -> io::Result<TcpStream> {
        Ok(TcpStream {
            stream: self.stream.register()?,
        })
    }

    /// Whether the stream is registered (see [`register`](Self::register)).
    pub fn is_registered(&self) -> bool {
        self.stream.is_registered()
    }

    /// Moves the connection into a free slot of the ring's
    /// direct-descriptor table (see [`runtime::op::SharedFd::into_direct`])
    /// and closes its ordinary descriptor, e.g. for a client connection
    /// that is used heavily. Set socket options first: afterwards there is
    /// no descriptor number to set them on. The direct stream's
    /// [`peer_addr`](DirectStream::peer_addr) is this stream's. On error
    /// the stream is dropped (and closed).
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub fn into_direct(self) -> io::Result<DirectStream> {
        let peer = self.peer_addr().ok();
        Ok(DirectStream::new(self.stream.into_direct()?, peer))
    }
}

impl Accepted for TcpStream {
    const DIRECT: bool = false;

    fn accepted(fd: SharedFd) -> TcpStream {
        TcpStream {
            stream: Stream::new(fd),
        }
    }
}

// The ecosystem's poll-style I/O traits (cargo features `tokio-io`,
// `futures-io`, `hyper`), on the stream core: see `poll_io.rs`.
crate::poll_io::poll_traits!(TcpStream);

impl OwnedRead for TcpStream {
    async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        self.stream.read(buf).await
    }

    async fn readv<B: IoBufMut>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        self.stream.readv(bufs).await
    }
}

impl OwnedWrite for TcpStream {
    async fn write<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.stream.send(buf).await
    }

    async fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        self.stream.writev(bufs).await
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.raw()
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("fd", &self.stream.raw())
            .field("local_addr", &self.local_addr().ok())
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}

/// An IP socket address out of socket2's.
fn ip_addr(addr: SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket address"))
}
