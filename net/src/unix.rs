//! Unix domain stream sockets: `UnixListener` and `UnixStream`.

use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use runtime::op::{Multishot, SharedFd};
use runtime::time::Sleep;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::backoff::Backoff;
use crate::stream::stream_methods;
use crate::tcp::{accept_once, connect_fd, poll_multishot_accept, AcceptInto};

/// A Unix domain socket listening for connections.
pub struct UnixListener {
    pub(crate) fd: SharedFd,
    pub(crate) backoff: Backoff,
}

impl UnixListener {
    /// Creates a socket bound to the file system path `path` and listening
    /// (backlog 4096). The path must not exist yet (`AddrInUse` otherwise);
    /// removing it afterwards is up to the caller.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.bind(&SockAddr::unix(path)?)?;
        socket.listen(4096)?;
        Ok(UnixListener {
            fd: SharedFd::new(socket.into()),
            backoff: Backoff::default(),
        })
    }

    /// Takes over a standard-library listener (switched to blocking mode).
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> UnixListener {
        let _ = listener.set_nonblocking(false);
        UnixListener {
            fd: SharedFd::new(listener.into()),
            backoff: Backoff::default(),
        }
    }

    /// Accepts one connection (`IORING_OP_ACCEPT`), with the same back-off
    /// after out-of-resource errors as
    /// [`TcpListener::accept`](crate::TcpListener::accept).
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        self.backoff.wait().await;
        let res = accept_once(&self.fd, AcceptInto::Fd).await;
        self.backoff.record(&res);
        let (fd, _) = res?;
        let stream = UnixStream { fd };
        let addr = stream.peer_addr()?;
        Ok((stream, addr))
    }

    /// A stream of incoming connections on multishot accept (see
    /// [`TcpListener::incoming`](crate::TcpListener::incoming)).
    pub fn incoming(&self) -> UnixIncoming<'_> {
        UnixIncoming {
            listener: self,
            op: None,
            sleep: None,
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        with_std_listener(&self.fd, |l| l.local_addr())
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("fd", &self.fd.raw())
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// The stream of [`UnixListener::incoming`].
pub struct UnixIncoming<'a> {
    listener: &'a UnixListener,
    op: Option<Multishot<runtime::op::AcceptMulti>>,
    sleep: Option<Sleep>,
}

impl UnixIncoming<'_> {
    /// The next connection (never `None`).
    pub async fn next(&mut self) -> Option<io::Result<UnixStream>> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<UnixStream>>> {
        poll_multishot_accept(
            &self.listener.fd,
            AcceptInto::Fd,
            &self.listener.backoff,
            &mut self.op,
            &mut AcceptInto::Fd,
            &mut self.sleep,
            cx,
        )
        .map(|res| Some(res.map(|fd| UnixStream { fd })))
    }
}

impl futures_core::Stream for UnixIncoming<'_> {
    type Item = io::Result<UnixStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_accept(cx)
    }
}

impl fmt::Debug for UnixIncoming<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixIncoming")
            .field("listener", &self.listener)
            .finish()
    }
}

/// A Unix domain stream connection, with the same read/write family as
/// [`TcpStream`](crate::TcpStream).
pub struct UnixStream {
    pub(crate) fd: SharedFd,
}

stream_methods!(UnixStream);

impl UnixStream {
    /// Connects to the socket at `path` (`IORING_OP_CONNECT`).
    pub async fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        let addr = SockAddr::unix(path)?;
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        let fd = SharedFd::new(socket.into());
        connect_fd(&fd, addr).await?;
        Ok(UnixStream { fd })
    }

    /// A pair of connected streams.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        Ok((UnixStream::from_std(a), UnixStream::from_std(b)))
    }

    /// Takes over a standard-library stream (switched to blocking mode).
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> UnixStream {
        let _ = stream.set_nonblocking(false);
        UnixStream {
            fd: SharedFd::new(stream.into()),
        }
    }

    /// The address of the peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        with_std_stream(&self.fd, |s| s.peer_addr())
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        with_std_stream(&self.fd, |s| s.local_addr())
    }
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("fd", &self.fd.raw())
            .finish()
    }
}

/// Runs `f` on a std view of the descriptor (for address queries, which
/// std can turn into its `SocketAddr`), without taking ownership.
fn with_std_stream<R>(fd: &SharedFd, f: impl FnOnce(&std::os::unix::net::UnixStream) -> R) -> R {
    // SAFETY: the view is never dropped (ManuallyDrop), so the descriptor
    // stays owned by the SharedFd, which outlives this call.
    let view = ManuallyDrop::new(unsafe {
        std::os::unix::net::UnixStream::from(OwnedFd::from_raw_fd(fd.raw()))
    });
    f(&view)
}

fn with_std_listener<R>(
    fd: &SharedFd,
    f: impl FnOnce(&std::os::unix::net::UnixListener) -> R,
) -> R {
    // SAFETY: as in `with_std_stream`.
    let view = ManuallyDrop::new(unsafe {
        std::os::unix::net::UnixListener::from(OwnedFd::from_raw_fd(fd.raw()))
    });
    f(&view)
}
