//! TCP: `TcpListener` (accept, multishot `incoming`) and `TcpStream`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use runtime::op::{
    Accept, AcceptMulti, Connect, Multishot, MultishotOperation, Operation, SharedFd, SockAddrBuf,
};
use runtime::time::Sleep;
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use crate::addr::{
    each_addr, each_addr_now, resolve, resolve_now, to_sock_addr_buf, to_socket_addr, ToSocketAddrs,
};
use crate::backoff::Backoff;
use crate::stream::stream_methods;

/// The listen backlog: deep enough for bursts of connections.
const BACKLOG: i32 = 4096;

/// A TCP socket listening for connections.
///
/// Dropping it closes the socket (without blocking; after any accept in
/// flight is over).
pub struct TcpListener {
    pub(crate) fd: SharedFd,
    pub(crate) backoff: Backoff,
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

    fn from_owned(fd: OwnedFd) -> TcpListener {
        TcpListener {
            fd: SharedFd::new(fd),
            backoff: Backoff::default(),
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
        self.backoff.wait().await;
        let res = accept_once(&self.fd, AcceptInto::Fd).await;
        self.backoff.record(&res);
        let (fd, addr) = res?;
        Ok((TcpStream { fd }, to_socket_addr(&addr)?))
    }

    /// A stream of incoming connections on **multishot accept**: one SQE
    /// yields connection after connection, and is re-armed when the kernel
    /// ends it. Errors are yielded too, and the stream goes on after them
    /// (with the same back-off as [`accept`](Self::accept) after
    /// out-of-resource errors).
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming {
            listener: self,
            op: None,
            sleep: None,
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sock_addr(SockRef::from(&self.fd).local_addr()?)
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("fd", &self.fd.raw())
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// How an accept hands over its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AcceptInto {
    /// An ordinary descriptor (`SOCK_CLOEXEC`).
    Fd,
    /// A slot of the ring's direct-descriptor table that the kernel picks
    /// (`IORING_FILE_INDEX_ALLOC`); the table is registered first if
    /// needed. Falls back to `Fd` where the kernel has no direct
    /// descriptors or every slot is held.
    Direct,
}

impl AcceptInto {
    /// What this accept can do now: `Direct` becomes `Fd` when the kernel
    /// lacks direct descriptors or the table is full.
    fn resolve(self) -> io::Result<AcceptInto> {
        Ok(match self {
            AcceptInto::Direct if !runtime::op::direct_slot_free()? => AcceptInto::Fd,
            other => other,
        })
    }
}

/// One `IORING_OP_ACCEPT` (into the direct-descriptor table if `into` is
/// `Direct` and the table has room), with the peer's address.
pub(crate) async fn accept_once(
    fd: &SharedFd,
    into: AcceptInto,
) -> io::Result<(SharedFd, SockAddrBuf)> {
    let op = match into.resolve()? {
        AcceptInto::Fd => Accept::new(fd),
        AcceptInto::Direct => Accept::direct(fd),
    };
    op.submit().await
}

/// The stream of [`TcpListener::incoming`].
pub struct Incoming<'a> {
    listener: &'a TcpListener,
    op: Option<Multishot<AcceptMulti>>,
    sleep: Option<Sleep>,
}

impl Incoming<'_> {
    /// The next connection (never `None`: a listener keeps accepting).
    pub async fn next(&mut self) -> Option<io::Result<TcpStream>> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<TcpStream>>> {
        poll_multishot_accept(
            &self.listener.fd,
            AcceptInto::Fd,
            &self.listener.backoff,
            &mut self.op,
            &mut AcceptInto::Fd,
            &mut self.sleep,
            cx,
        )
        .map(|res| Some(res.map(|fd| TcpStream { fd })))
    }
}

/// Drives a multishot accept: waits out a back-off, (re-)arms the SQE when
/// needed, and yields its results in order. `wanted` is resolved each time
/// the SQE is armed (see [`AcceptInto::resolve`]) into `mode`, which the
/// results of that SQE are claimed as.
pub(crate) fn poll_multishot_accept(
    fd: &SharedFd,
    wanted: AcceptInto,
    backoff: &Backoff,
    op: &mut Option<Multishot<AcceptMulti>>,
    mode: &mut AcceptInto,
    sleep: &mut Option<Sleep>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<SharedFd>> {
    loop {
        if let Some(s) = sleep {
            if Pin::new(s).poll(cx).is_pending() {
                return Poll::Pending;
            }
            *sleep = None;
        }
        if op.is_none() {
            match wanted.resolve() {
                Ok(into) => *mode = into,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let into = *mode;
        let stream = op.get_or_insert_with(|| {
            match into {
                AcceptInto::Fd => AcceptMulti::new(fd),
                AcceptInto::Direct => AcceptMulti::direct(fd),
            }
            .start()
        });
        match stream.poll_accept(cx) {
            Poll::Pending => return Poll::Pending,
            // The kernel ended the multishot: arm a new one.
            Poll::Ready(None) => *op = None,
            Poll::Ready(Some(res)) => {
                if into == AcceptInto::Direct
                    && res.as_ref().err().and_then(io::Error::raw_os_error) == Some(libc::ENFILE)
                {
                    // The table filled up: re-arm, deciding again.
                    *op = None;
                }
                backoff.record(&res);
                if res.is_err() {
                    if let Some(d) = backoff.pending() {
                        *sleep = Some(runtime::time::sleep(d));
                    }
                }
                return Poll::Ready(res);
            }
        }
    }
}

use std::future::Future;

impl futures_core::Stream for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_accept(cx)
    }
}

impl fmt::Debug for Incoming<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("listener", &self.listener)
            .finish()
    }
}

/// A TCP connection.
///
/// All I/O methods take `&self`, so one task can read while another
/// writes. Dropping the stream closes it without blocking, once no
/// operation on it is in flight any more.
pub struct TcpStream {
    pub(crate) fd: SharedFd,
}

stream_methods!(TcpStream);

impl TcpStream {
    fn from_owned(fd: OwnedFd) -> TcpStream {
        TcpStream {
            fd: SharedFd::new(fd),
        }
    }

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
            let fd = SharedFd::new(socket.into());
            connect_fd(&fd, SockAddr::from(addr)).await?;
            Ok(TcpStream { fd })
        })
        .await
    }

    /// Takes over a connected standard-library stream (switched to blocking
    /// mode: io_uring waits for it).
    pub fn from_std(stream: std::net::TcpStream) -> TcpStream {
        let _ = stream.set_nonblocking(false);
        TcpStream::from_owned(stream.into())
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm) on or off.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        SockRef::from(&self.fd).set_tcp_nodelay(on)
    }

    /// Whether `TCP_NODELAY` is on.
    pub fn nodelay(&self) -> io::Result<bool> {
        SockRef::from(&self.fd).tcp_nodelay()
    }

    /// The address of the peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        sock_addr(SockRef::from(&self.fd).peer_addr()?)
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sock_addr(SockRef::from(&self.fd).local_addr()?)
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("fd", &self.fd.raw())
            .field("local_addr", &self.local_addr().ok())
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}

/// One `IORING_OP_CONNECT` to `addr`.
pub(crate) async fn connect_fd(fd: &SharedFd, addr: SockAddr) -> io::Result<()> {
    Connect::new(fd, to_sock_addr_buf(&addr)).submit().await
}

fn sock_addr(addr: SockAddr) -> io::Result<SocketAddr> {
    addr.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket address"))
}
