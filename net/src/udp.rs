//! UDP: `UdpSocket`, with `sendmsg`/`recvmsg` SQEs.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use runtime::buf::{IoBuf, IoBufMut};
use runtime::op::io_uring::{opcode, types};
use runtime::op::{Op, SharedFd};
use runtime::BufResult;
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use crate::addr::{each_addr_now, resolve, resolve_now, AddrBuf, ToSocketAddrs};

/// A UDP socket.
///
/// Every datagram call is one SQE (`IORING_OP_SENDMSG` /
/// `IORING_OP_RECVMSG`). A buffer too small for a datagram gets its first
/// bytes; the rest of that datagram is discarded, as with `recv(2)`.
pub struct UdpSocket {
    fd: SharedFd,
}

/// The data of a datagram op: buffer, iovec, message header and address,
/// all owned by the op (boxed, so their addresses are stable).
struct Datagram<B> {
    _fd: SharedFd,
    buf: B,
    iov: Box<libc::iovec>,
    msg: Box<libc::msghdr>,
    addr: Option<Box<AddrBuf>>,
    dest: Option<Box<SockAddr>>,
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
        self.sendmsg(buf, Some(Box::new(SockAddr::from(addr))))
            .await
    }

    /// Sends one datagram to the connected peer.
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.sendmsg(buf, None).await
    }

    async fn sendmsg<B: IoBuf>(&self, buf: B, dest: Option<Box<SockAddr>>) -> BufResult<usize, B> {
        let data = Datagram {
            _fd: self.fd.clone(),
            iov: Box::new(libc::iovec {
                iov_base: buf.stable_ptr() as *mut libc::c_void,
                iov_len: buf.bytes_init(),
            }),
            buf,
            msg: zeroed_msghdr(),
            addr: None,
            dest,
        };
        // SAFETY: the msghdr, iovec, destination address and buffer are
        // boxed or heap memory owned by the op data, as is the SharedFd that
        // keeps the socket open.
        let op = unsafe {
            Op::submit(data, |d| {
                d.msg.msg_iov = &mut *d.iov;
                d.msg.msg_iovlen = 1;
                if let Some(dest) = &d.dest {
                    d.msg.msg_name = dest.as_ptr() as *mut libc::c_void;
                    d.msg.msg_namelen = dest.len();
                }
                opcode::SendMsg::new(types::Fd(d._fd.raw()), &*d.msg)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
            })
        };
        let (completion, data) = op.await;
        (completion.result().map(|n| n as usize), data.buf)
    }

    /// Receives one datagram and the address it came from.
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> BufResult<(usize, SocketAddr), B> {
        let (res, buf, addr) = self.recvmsg(buf, true).await;
        let res = res.and_then(|n| {
            let addr = addr.expect("recvmsg was asked for the address");
            Ok((n, addr.to_socket_addr()?))
        });
        (res, buf)
    }

    /// Receives one datagram from the connected peer.
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        let (res, buf, _) = self.recvmsg(buf, false).await;
        (res, buf)
    }

    async fn recvmsg<B: IoBufMut>(
        &self,
        mut buf: B,
        want_addr: bool,
    ) -> (io::Result<usize>, B, Option<Box<AddrBuf>>) {
        let start = buf.read_start();
        let data = Datagram {
            _fd: self.fd.clone(),
            iov: Box::new(libc::iovec {
                // SAFETY: start <= bytes_total, inside the allocation.
                iov_base: unsafe { buf.stable_mut_ptr().add(start) }.cast(),
                iov_len: buf.bytes_total() - start,
            }),
            buf,
            msg: zeroed_msghdr(),
            addr: want_addr.then(AddrBuf::new),
            dest: None,
        };
        // SAFETY: as in `sendmsg`; the kernel writes into the buffer's
        // writable region and the boxed address storage.
        let op = unsafe {
            Op::submit(data, |d| {
                d.msg.msg_iov = &mut *d.iov;
                d.msg.msg_iovlen = 1;
                if let Some(addr) = &mut d.addr {
                    d.msg.msg_name = (&mut addr.storage as *mut libc::sockaddr_storage).cast();
                    d.msg.msg_namelen = addr.len;
                }
                opcode::RecvMsg::new(types::Fd(d._fd.raw()), &mut *d.msg).build()
            })
        };
        let (completion, mut data) = op.await;
        match completion.result() {
            Ok(n) => {
                // SAFETY: the kernel initialised n bytes from `start`.
                unsafe { data.buf.set_init(start + n as usize) };
                if let Some(addr) = &mut data.addr {
                    addr.len = data.msg.msg_namelen;
                }
                (Ok(n as usize), data.buf, data.addr)
            }
            Err(e) => (Err(e), data.buf, None),
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

fn zeroed_msghdr() -> Box<libc::msghdr> {
    // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
    Box::new(unsafe { std::mem::zeroed() })
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
