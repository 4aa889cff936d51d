//! Stream sockets on **direct descriptors**: slots of the ring's registered
//! file table instead of entries of the process's descriptor table.
//!
//! Every operation on an ordinary descriptor makes the kernel look the file
//! up in the process's descriptor table (and take and drop a reference on
//! it); an operation on a direct descriptor names a slot of the ring's own
//! table (`IOSQE_FIXED_FILE`) and skips that. An accept can put the new
//! connection straight into a free slot (`IORING_FILE_INDEX_ALLOC`), so the
//! connection never has a descriptor number at all. The table is registered
//! on first use (see [`runtime::op::direct_table`] and
//! [`runtime::Builder::direct_descriptors`] for its size and limits).
//!
//! The price: a direct descriptor is known only to its ring. System calls
//! that need a descriptor number (socket options, `getpeername`,
//! `shutdown(2)`) cannot be used on it, so [`DirectStream`] has no
//! `AsRawFd`, its [`shutdown`](DirectStream::shutdown) goes through the
//! ring (`IORING_OP_SHUTDOWN`, waited for at once), and its peer address is
//! the one the accept reported. Socket options are inherited from the listener on Linux (set
//! `TCP_NODELAY` on the listening socket to get it on every connection), or
//! set them before [`TcpStream::into_direct`]. A direct descriptor belongs
//! to the runtime that created it: used from another runtime, operations
//! fail with `EBADF`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use runtime::op::{Multishot, SharedFd};
use runtime::time::Sleep;

use crate::backoff::Backoff;
use crate::stream::stream_io_methods;
use crate::tcp::{accept_once, poll_multishot_accept, AcceptInto};
use crate::{TcpListener, TcpStream, UnixListener, UnixStream};

/// A connected stream socket (TCP or Unix) on a direct descriptor.
///
/// It has the read and write methods of [`TcpStream`] (`read`,
/// `read_timeout`, `readv`, `write`, `write_all`, `writev`, `send`,
/// `send_zc`, `write_all_zc`, `recv_multishot`, `recv_from_ring`), each
/// one SQE naming the slot with `IOSQE_FIXED_FILE`. Dropping it frees the
/// slot (`IORING_OP_CLOSE` on the slot) once no operation on it is in
/// flight.
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
/// let (conn, _peer) = listener.accept_direct().await?;
/// assert!(conn.slot().unwrap() < runtime::op::direct_table()?);
/// let (res, buf) = conn.read(Vec::with_capacity(16)).await;
/// res?;
/// let (res, _) = conn.write_all(buf).await;
/// res?;
/// assert_eq!(client.await.unwrap()?, b"ping");
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
pub struct DirectStream {
    pub(crate) fd: SharedFd,
    peer: Option<SocketAddr>,
}

stream_io_methods!(DirectStream);

impl DirectStream {
    fn new(fd: SharedFd, peer: Option<SocketAddr>) -> DirectStream {
        DirectStream { fd, peer }
    }

    /// The slot of the ring's direct-descriptor table this stream uses;
    /// `None` if it fell back to an ordinary descriptor (see
    /// [`is_direct`](Self::is_direct)).
    pub fn slot(&self) -> Option<u32> {
        self.fd.direct_slot()
    }

    /// Whether the stream is on a direct descriptor. An accept into the
    /// table falls back to an ordinary descriptor when the kernel has no
    /// direct descriptors ([`runtime::Features::direct_descriptors`]) or
    /// every slot of the table is held; the stream then works the same,
    /// with the per-operation file lookup.
    pub fn is_direct(&self) -> bool {
        self.fd.is_direct()
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

    /// Shuts down the read side, the write side or both, at once, like
    /// [`TcpStream::shutdown`]: a direct descriptor has no number for
    /// `shutdown(2)`, so this submits `IORING_OP_SHUTDOWN` and waits in
    /// the ring for its completion, which comes at once.
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        crate::stream::shutdown(&self.fd, how)
    }

    /// Frees the slot through the ring and reports the result. If
    /// operations on it are still in flight, it is freed when the last one
    /// finishes, and this returns `Ok(())` at once.
    pub async fn close(self) -> io::Result<()> {
        self.fd.close().await
    }
}

impl fmt::Debug for DirectStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectStream")
            .field("slot", &self.fd.direct_slot())
            .field("peer", &self.peer)
            .finish()
    }
}

impl TcpListener {
    /// Accepts one connection straight into a free slot of the ring's
    /// direct-descriptor table (`IORING_OP_ACCEPT` with
    /// `IORING_FILE_INDEX_ALLOC`; the table is registered first if it is
    /// not yet). Where the kernel has no direct descriptors, or every slot
    /// of the table is held, the connection is accepted on an ordinary
    /// descriptor instead ([`DirectStream::is_direct`] tells). The check
    /// counts slots held by streams: if several direct accepts (or a
    /// multishot one) race for the last free slots, the loser fails with
    /// `ENFILE`, and the kernel closes the connection it took. Errors
    /// registering the table (e.g. a table larger than `RLIMIT_NOFILE`)
    /// are returned. Out-of-resource errors are followed by the same
    /// back-off as [`accept`](Self::accept). See [`DirectStream`].
    pub async fn accept_direct(&self) -> io::Result<(DirectStream, SocketAddr)> {
        self.backoff.wait().await;
        let res = accept_once(&self.fd, AcceptInto::Direct).await;
        self.backoff.record(&res);
        let (fd, addr) = res?;
        let addr = crate::addr::to_socket_addr(&addr)?;
        Ok((DirectStream::new(fd, Some(addr)), addr))
    }

    /// A stream of incoming connections on multishot accept, each in a
    /// slot of the ring's direct-descriptor table (see
    /// [`incoming`](Self::incoming) and [`accept_direct`](Self::accept_direct)).
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
        IncomingDirect::new(&self.fd, &self.backoff)
    }
}

impl UnixListener {
    /// Accepts one connection straight into a free slot of the ring's
    /// direct-descriptor table (see [`TcpListener::accept_direct`]).
    pub async fn accept_direct(&self) -> io::Result<DirectStream> {
        self.backoff.wait().await;
        let res = accept_once(&self.fd, AcceptInto::Direct).await;
        self.backoff.record(&res);
        let (fd, _addr) = res?;
        Ok(DirectStream::new(fd, None))
    }

    /// A stream of incoming connections on multishot accept, each in a
    /// slot of the ring's direct-descriptor table (see
    /// [`TcpListener::incoming_direct`]).
    pub fn incoming_direct(&self) -> IncomingDirect<'_> {
        IncomingDirect::new(&self.fd, &self.backoff)
    }
}

impl TcpStream {
    /// Moves the connection into a free slot of the ring's
    /// direct-descriptor table (see [`runtime::op::SharedFd::into_direct`])
    /// and closes its ordinary descriptor, e.g.
    /// for a client connection that is used heavily. Set socket options
    /// first: afterwards there is no descriptor number to set them on. On
    /// error the stream is dropped (and closed).
    pub fn into_direct(self) -> io::Result<DirectStream> {
        let peer = self.peer_addr().ok();
        Ok(DirectStream::new(self.fd.into_direct()?, peer))
    }
}

impl TcpStream {
    /// Installs the connection in the ring's direct-descriptor table as
    /// well and returns the stream that uses it: its reads and writes on
    /// this runtime name the slot (`IOSQE_FIXED_FILE`: no per-operation
    /// file lookup in the kernel), while it keeps its descriptor, so socket
    /// options, addresses, `shutdown` and `AsRawFd` work as before (unlike
    /// [`into_direct`](Self::into_direct)). Registering a registered stream
    /// returns it unchanged.
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
    pub fn register(self) -> io::Result<TcpStream> {
        Ok(TcpStream {
            fd: self.fd.register()?,
        })
    }

    /// Whether the stream is registered (see [`register`](Self::register)).
    pub fn is_registered(&self) -> bool {
        self.fd.is_registered()
    }
}

impl UnixStream {
    /// Installs the connection in the ring's direct-descriptor table as
    /// well (see [`TcpStream::register`]).
    pub fn register(self) -> io::Result<UnixStream> {
        Ok(UnixStream {
            fd: self.fd.register()?,
        })
    }

    /// Whether the stream is registered (see [`register`](Self::register)).
    pub fn is_registered(&self) -> bool {
        self.fd.is_registered()
    }

    /// Moves the connection into a free slot of the ring's
    /// direct-descriptor table (see [`TcpStream::into_direct`]).
    pub fn into_direct(self) -> io::Result<DirectStream> {
        Ok(DirectStream::new(self.fd.into_direct()?, None))
    }
}

/// The stream of [`TcpListener::incoming_direct`] and
/// [`UnixListener::incoming_direct`].
pub struct IncomingDirect<'a> {
    fd: &'a SharedFd,
    backoff: &'a Backoff,
    op: Option<Multishot<runtime::op::AcceptMulti>>,
    /// How the armed multishot accept hands over connections.
    mode: AcceptInto,
    sleep: Option<Sleep>,
}

impl<'a> IncomingDirect<'a> {
    fn new(fd: &'a SharedFd, backoff: &'a Backoff) -> Self {
        IncomingDirect {
            fd,
            backoff,
            op: None,
            mode: AcceptInto::Direct,
            sleep: None,
        }
    }

    /// The next connection (never `None`: a listener keeps accepting).
    pub async fn next(&mut self) -> Option<io::Result<DirectStream>> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<DirectStream>>> {
        poll_multishot_accept(
            self.fd,
            AcceptInto::Direct,
            self.backoff,
            &mut self.op,
            &mut self.mode,
            &mut self.sleep,
            cx,
        )
        .map(|res| Some(res.map(|fd| DirectStream::new(fd, None))))
    }
}

impl futures_core::Stream for IncomingDirect<'_> {
    type Item = io::Result<DirectStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_accept(cx)
    }
}

impl fmt::Debug for IncomingDirect<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingDirect")
            .field("listener", &self.fd)
            .finish()
    }
}
