//! UDP: `UdpSocket`, with `sendmsg`/`recvmsg` SQEs.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use runtime::buf::{IoBuf, IoBufMut};
use runtime::op::{Operation, RecvMsg, SendMsg, SharedFd, SockAddrBuf};
use runtime::BufResult;
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use crate::addr::{
    each_addr_now, resolve, resolve_now, to_sock_addr_buf, to_socket_addr, ToSocketAddrs,
};

/// A UDP socket.
///
/// Every datagram call is one SQE (`IORING_OP_SENDMSG` /
/// `IORING_OP_RECVMSG`). A buffer too small for a datagram gets its first
/// bytes; the rest of that datagram is discarded, as with `recv(2)`.
///
/// # Receiving into a buffer with no room
///
/// Unlike a stream or a file read (which returns `Ok(0)` at once when the
/// buffer has no room), [`recv`](Self::recv) and
/// [`recv_from`](Self::recv_from) into a buffer with no room still receive
/// a datagram, as std's `UdpSocket` does: they wait for the next datagram,
/// discard it (truncated to nothing) and return `Ok(0)` (with its sender
/// for `recv_from`). On a datagram socket that is a meaningful operation
/// (skip one datagram, learn who sent it), `0` is not an end of stream (an
/// empty datagram reads as `0` too), and `recv_from` could not name a
/// sender without one.
pub struct UdpSocket {
    fd: SharedFd,
}

impl UdpSocket {
    /// Creates a socket bound to `addr` (each address it names is tried in
    /// turn; a name is resolved on the calling thread).
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        each_addr_now(resolve_now(addr)?, |addr| {
            let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
            socket.bind(&addr.into())?;
            Ok(UdpSocket {
                fd: SharedFd::new(socket.into()),
            })
        })
    }

    /// Takes over a standard-library UDP socket (switched to blocking mode:
    /// io_uring waits for it).
    pub fn from_std(socket: std::net::UdpSocket) -> UdpSocket {
        let _ = socket.set_nonblocking(false);
        UdpSocket {
            fd: SharedFd::new(socket.into()),
        }
    }

    /// Sets the default peer: [`send`](Self::send) goes there and
    /// [`recv`](Self::recv) only takes its datagrams. Names are resolved on
    /// the blocking pool; the first address that works is used.
    pub async fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        let addrs = resolve(addr).await?;
        each_addr_now(addrs, |addr| SockRef::from(&self.fd).connect(&addr.into()))
    }

    /// Sends one datagram to `addr` (numeric, or resolved on the blocking
    /// pool). Returns the number of bytes sent.
    pub async fn send_to<B: IoBuf, A: ToSocketAddrs>(
        &self,
        buf: B,
        addr: A,
    ) -> BufResult<usize, B> {
        let addr = match resolve(addr).await {
            Ok(addrs) => match addrs.into_iter().next() {
                Some(a) => a,
                None => {
                    return (
                        Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "the address resolved to no socket addresses",
                        )),
                        buf,
                    )
                }
            },
            Err(e) => return (Err(e), buf),
        };
        self.sendmsg(buf, Some(to_sock_addr_buf(&SockAddr::from(addr))))
            .await
    }

    /// Sends one datagram to the connected peer.
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.sendmsg(buf, None).await
    }

    /// One `IORING_OP_SENDMSG` (with `MSG_NOSIGNAL`) of `buf`, to `dest`
    /// if given.
    async fn sendmsg<B: IoBuf>(&self, buf: B, dest: Option<SockAddrBuf>) -> BufResult<usize, B> {
        let (res, bufs) = SendMsg::new(&self.fd, vec![buf], dest).submit().await;
        (res, only(bufs))
    }

    /// Receives one datagram and the address it came from. With a buffer
    /// that has no room, the datagram is still taken and discarded (see
    /// [above](UdpSocket#receiving-into-a-buffer-with-no-room)).
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> BufResult<(usize, SocketAddr), B> {
        let (res, buf, addr) = self.recvmsg(buf, true).await;
        let res = res.and_then(|n| {
            let addr = addr.expect("recvmsg was asked for the address");
            Ok((n, to_socket_addr(&addr)?))
        });
        (res, buf)
    }

    /// Receives one datagram from the connected peer. With a buffer that
    /// has no room, the datagram is still taken and discarded (see
    /// [above](UdpSocket#receiving-into-a-buffer-with-no-room)).
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        let (res, buf, _) = self.recvmsg(buf, false).await;
        (res, buf)
    }

    /// One `IORING_OP_RECVMSG` into `buf`, with the sender's address if
    /// `want_addr`.
    async fn recvmsg<B: IoBufMut>(
        &self,
        buf: B,
        want_addr: bool,
    ) -> (io::Result<usize>, B, Option<SockAddrBuf>) {
        let op = if want_addr {
            RecvMsg::with_source(&self.fd, vec![buf])
        } else {
            RecvMsg::new(&self.fd, vec![buf])
        };
        let (res, bufs) = op.submit().await;
        let buf = only(bufs);
        match res {
            Ok((n, addr)) => (Ok(n), buf, addr),
            Err(e) => (Err(e), buf, None),
        }
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        SockRef::from(&self.fd)
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket address"))
    }

    /// The connected peer's address (`NotConnected` if none).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        SockRef::from(&self.fd)
            .peer_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket address"))
    }

    /// Allows or forbids sending to broadcast addresses.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        SockRef::from(&self.fd).set_broadcast(on)
    }
}

/// The one buffer of a datagram operation, handed back.
fn only<B>(bufs: Vec<B>) -> B {
    bufs.into_iter()
        .next()
        .expect("a datagram operation hands back its one buffer")
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.raw()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("fd", &self.fd.raw())
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}
