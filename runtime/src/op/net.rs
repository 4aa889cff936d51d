//! Socket operations: `IORING_OP_RECV`, `SEND`, `RECVMSG`, `SENDMSG`,
//! `SEND_ZC`, `ACCEPT` (single and multishot), `CONNECT`, `SOCKET` and
//! `SHUTDOWN`.
//!
//! Every struct holds a [`SharedFd`] clone of the socket it names, so the
//! socket stays open while the kernel may use it; socket addresses and
//! message headers are boxed (their address does not move with the
//! struct), buffers keep their stable memory ([`IoBuf`]'s promise).

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use std::task::{Context, Poll};

use io_uring::{cqueue, opcode, types::DestinationSlot};

use crate::buf::{mark_read, read_iovecs, write_iovecs, IoBuf, IoBufMut};
use crate::driver::lifecycle::{Completion, Creates};
use crate::fixed::FixedIoBuf;
use crate::op::fd::{claim_created, SharedFd};
use crate::op::operation::{syscall_result, MultishotOperation, Operation, Readiness};
use crate::op::submit::Entry;
use crate::op::submit::Multishot;
use crate::BufResult;

/// The most bytes one SQE moves (its length field is a `u32`).
fn clamp_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Storage for a socket address the kernel reads or writes: a
/// `sockaddr_storage` (room for any family) and its length.
#[derive(Clone, Copy)]
pub struct SockAddrBuf {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl SockAddrBuf {
    /// Empty storage for the kernel to fill (accept, recvmsg): its length is
    /// the storage's size.
    pub fn new() -> SockAddrBuf {
        SockAddrBuf {
            // SAFETY: an all-zero sockaddr_storage is valid (AF_UNSPEC).
            storage: unsafe { std::mem::zeroed() },
            len: std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    /// An address of `len` bytes (for connect and sendmsg), as
    /// `socket2::SockAddr` holds it (an IP address converts with `From`).
    /// `len` larger than the storage is clamped.
    pub fn from_storage(storage: libc::sockaddr_storage, len: libc::socklen_t) -> SockAddrBuf {
        let max = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        SockAddrBuf {
            storage,
            len: len.min(max),
        }
    }

    /// The storage, as the kernel left it.
    pub fn storage(&self) -> &libc::sockaddr_storage {
        &self.storage
    }

    /// The address's length in bytes (set by the kernel after an accept or
    /// a receive).
    pub fn len(&self) -> libc::socklen_t {
        self.len
    }

    /// Whether the length is zero (an unnamed Unix socket peer, for one).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn as_mut_ptr(&mut self) -> *mut libc::sockaddr {
        (&mut self.storage as *mut libc::sockaddr_storage).cast()
    }
}

impl From<SocketAddr> for SockAddrBuf {
    /// The `sockaddr_in` or `sockaddr_in6` of an IP socket address.
    fn from(addr: SocketAddr) -> SockAddrBuf {
        let mut buf = SockAddrBuf::new();
        let storage = (&mut buf.storage as *mut libc::sockaddr_storage).cast::<u8>();
        match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: a sockaddr_in fits in the sockaddr_storage (which
                // is designed to hold any address); unaligned write of a
                // plain struct into its bytes.
                unsafe { std::ptr::write_unaligned(storage.cast(), sin) };
                buf.len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo().to_be(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: as above, for a sockaddr_in6.
                unsafe { std::ptr::write_unaligned(storage.cast(), sin6) };
                buf.len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            }
        }
        buf
    }
}

impl SockAddrBuf {
    /// The IP socket address held, if the family is `AF_INET` or
    /// `AF_INET6` and the length is enough for it.
    pub fn to_socket_addr(&self) -> Option<SocketAddr> {
        let storage = (&self.storage as *const libc::sockaddr_storage).cast::<u8>();
        let len = self.len as usize;
        match i32::from(self.storage.ss_family) {
            libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a sockaddr_in,
                // and it fits; unaligned read of a plain struct.
                let sin: libc::sockaddr_in = unsafe { std::ptr::read_unaligned(storage.cast()) };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for a sockaddr_in6.
                let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read_unaligned(storage.cast()) };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    u32::from_be(sin6.sin6_flowinfo),
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

impl Default for SockAddrBuf {
    fn default() -> Self {
        SockAddrBuf::new()
    }
}

impl fmt::Debug for SockAddrBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SockAddrBuf")
            .field("family", &self.storage.ss_family)
            .field("len", &self.len)
            .finish()
    }
}

/// `IORING_OP_RECV`: one receive into `buf[read_start()..bytes_total()]`;
/// the buffer's initialised length grows by the count received.
#[derive(Debug)]
pub struct Recv<B> {
    fd: SharedFd,
    buf: B,
    start: usize,
    len: u32,
    flags: i32,
}

impl<B: IoBufMut> Recv<B> {
    /// A receive on `fd` into `buf`'s writable region.
    pub fn new(fd: &SharedFd, buf: B) -> Recv<B> {
        let start = buf.read_start();
        let len = clamp_len(buf.bytes_total() - start);
        Recv {
            fd: fd.clone(),
            buf,
            start,
            len,
            flags: 0,
        }
    }

    /// `MSG_*` flags for the receive (none by default).
    pub fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }
}

// SAFETY: the SQE points at `len <= bytes_total - start` bytes from `start`
// of the buffer's stable memory, owned by the struct and untouched until
// `complete`; the SharedFd clone keeps the socket open.
unsafe impl<B: IoBufMut> Operation for Recv<B> {
    type Output = BufResult<usize, B>;

    fn sqe(&mut self) -> Entry {
        // SAFETY: start <= bytes_total: inside the buffer's allocation.
        let ptr = unsafe { self.buf.stable_mut_ptr().add(self.start) };
        let (len, flags) = (self.len, self.flags);
        crate::with_target!(self.fd, |t| opcode::Recv::new(t, ptr, len)
            .flags(flags)
            .build())
    }

    fn complete(self, completion: Completion) -> Self::Output {
        let mut buf = self.buf;
        match completion.result() {
            Ok(n) => {
                // SAFETY: the kernel initialised n <= len bytes from start.
                unsafe { buf.set_init(self.start + n as usize) };
                (Ok(n as usize), buf)
            }
            Err(e) => (Err(e), buf),
        }
    }

    fn readiness(&self) -> Readiness {
        Readiness::Readable(self.fd.raw())
    }

    fn perform(&mut self) -> io::Result<u32> {
        // SAFETY: as in `sqe`.
        let ptr = unsafe { self.buf.stable_mut_ptr().add(self.start) };
        // SAFETY: `len` writable bytes at `ptr`, owned by the struct.
        let ret = unsafe {
            libc::recv(
                self.fd.raw(),
                ptr.cast(),
                self.len as usize,
                self.flags | libc::MSG_DONTWAIT,
            )
        };
        syscall_result(ret)
    }

    fn drained(&self, n: u32) -> bool {
        // Only a plain receive: MSG_PEEK leaves the bytes queued, MSG_OOB
        // and MSG_ERRQUEUE read other queues. 0 is the end of the stream,
        // which stays readable.
        self.flags == 0 && n > 0 && n < self.len
    }
}

/// `IORING_OP_SEND`: one send of `buf[..bytes_init()]`, with
/// `MSG_NOSIGNAL` unless other flags are given.
#[derive(Debug)]
pub struct Send<B> {
    fd: SharedFd,
    buf: B,
    len: u32,
    flags: i32,
}

impl<B: IoBuf> Send<B> {
    /// A send of `buf`'s initialised bytes on `fd` (`MSG_NOSIGNAL`: a
    /// closed peer is `EPIPE`, never `SIGPIPE`).
    pub fn new(fd: &SharedFd, buf: B) -> Send<B> {
        let len = clamp_len(buf.bytes_init());
        Send {
            fd: fd.clone(),
            buf,
            len,
            flags: libc::MSG_NOSIGNAL,
        }
    }

    /// Replaces the `MSG_*` flags (keep `MSG_NOSIGNAL` unless `SIGPIPE` is
    /// wanted).
    pub fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }
}

// SAFETY: the SQE points at `len <= bytes_init` initialised bytes of the
// buffer's stable memory, owned by the struct (the kernel only reads them);
// the SharedFd clone keeps the socket open.
unsafe impl<B: IoBuf> Operation for Send<B> {
    type Output = BufResult<usize, B>;

    fn sqe(&mut self) -> Entry {
        let (ptr, len, flags) = (self.buf.stable_ptr(), self.len, self.flags);
        crate::with_target!(self.fd, |t| opcode::Send::new(t, ptr, len)
            .flags(flags)
            .build())
    }

    fn complete(self, completion: Completion) -> Self::Output {
        (completion.result().map(|n| n as usize), self.buf)
    }

    fn readiness(&self) -> Readiness {
        Readiness::Writable(self.fd.raw())
    }

    fn perform(&mut self) -> io::Result<u32> {
        // SAFETY: `len` initialised bytes owned by the struct.
        let ret = unsafe {
            libc::send(
                self.fd.raw(),
                self.buf.stable_ptr().cast(),
                self.len as usize,
                self.flags | libc::MSG_DONTWAIT,
            )
        };
        syscall_result(ret)
    }
}

/// A message header and what it points at, boxed or in Vecs so that
/// nothing moves with the struct that owns it.
struct Msg {
    iovecs: Vec<libc::iovec>,
    hdr: Box<libc::msghdr>,
    addr: Option<Box<SockAddrBuf>>,
}

impl Msg {
    fn new(iovecs: Vec<libc::iovec>, addr: Option<Box<SockAddrBuf>>) -> Msg {
        // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
        let hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        let mut msg = Msg { iovecs, hdr, addr };
        msg.hdr.msg_iov = msg.iovecs.as_mut_ptr();
        msg.hdr.msg_iovlen = msg.iovecs.len();
        if let Some(addr) = &mut msg.addr {
            msg.hdr.msg_namelen = addr.len;
            msg.hdr.msg_name = addr.as_mut_ptr().cast();
        }
        msg
    }
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Msg")
            .field("iovecs", &self.iovecs.len())
            .field("addr", &self.addr)
            .finish()
    }
}

/// `IORING_OP_RECVMSG`: one receive scattering into each buffer's writable
/// region in order, optionally with the sender's address.
#[derive(Debug)]
pub struct RecvMsg<B> {
    fd: SharedFd,
    bufs: Vec<B>,
    msg: Msg,
}

impl<B: IoBufMut> RecvMsg<B> {
    /// A receive on `fd` into `bufs`.
    pub fn new(fd: &SharedFd, mut bufs: Vec<B>) -> RecvMsg<B> {
        let iovecs = read_iovecs(&mut bufs);
        RecvMsg {
            fd: fd.clone(),
            bufs,
            msg: Msg::new(iovecs, None),
        }
    }

    /// The same, also asking for the sender's address (datagram sockets).
    pub fn with_source(fd: &SharedFd, mut bufs: Vec<B>) -> RecvMsg<B> {
        let iovecs = read_iovecs(&mut bufs);
        RecvMsg {
            fd: fd.clone(),
            bufs,
            msg: Msg::new(iovecs, Some(Box::new(SockAddrBuf::new()))),
        }
    }
}

// SAFETY: the msghdr is boxed and points at the iovec array (a Vec's heap
// memory) and the boxed address storage; the iovecs point at the writable
// regions of buffers the struct owns (made by `read_iovecs`). All of it is
// owned by the struct and untouched until `complete`; the SharedFd clone
// keeps the socket open.
unsafe impl<B: IoBufMut> Operation for RecvMsg<B> {
    /// The count received and, if asked for, the sender's address.
    type Output = BufResult<(usize, Option<SockAddrBuf>), Vec<B>>;

    fn sqe(&mut self) -> Entry {
        let hdr: *mut libc::msghdr = &mut *self.msg.hdr;
        crate::with_target!(self.fd, |t| opcode::RecvMsg::new(t, hdr).build())
    }

    fn complete(self, completion: Completion) -> Self::Output {
        let RecvMsg { mut bufs, msg, .. } = self;
        match completion.result() {
            Ok(n) => {
                // SAFETY: the kernel filled n bytes through the iovecs made
                // from these buffers by `read_iovecs`.
                unsafe { mark_read(&mut bufs, n as usize) };
                let addr = msg.addr.map(|mut a| {
                    a.len = msg.hdr.msg_namelen;
                    *a
                });
                (Ok((n as usize, addr)), bufs)
            }
            Err(e) => (Err(e), bufs),
        }
    }

    fn readiness(&self) -> Readiness {
        Readiness::Readable(self.fd.raw())
    }

    fn perform(&mut self) -> io::Result<u32> {
        // SAFETY: the header and what it points at are owned by the struct.
        let ret = unsafe { libc::recvmsg(self.fd.raw(), &mut *self.msg.hdr, libc::MSG_DONTWAIT) };
        syscall_result(ret)
    }
}

/// `IORING_OP_SENDMSG`: one send gathering each buffer's initialised bytes
/// in order, optionally to an address (datagram sockets), with
/// `MSG_NOSIGNAL` unless other flags are given.
#[derive(Debug)]
pub struct SendMsg<B> {
    fd: SharedFd,
    bufs: Vec<B>,
    msg: Msg,
    flags: u32,
}

impl<B: IoBuf> SendMsg<B> {
    /// A send of `bufs` on `fd`, to `dest` if given.
    pub fn new(fd: &SharedFd, bufs: Vec<B>, dest: Option<SockAddrBuf>) -> SendMsg<B> {
        let iovecs = write_iovecs(&bufs);
        SendMsg {
            fd: fd.clone(),
            bufs,
            msg: Msg::new(iovecs, dest.map(Box::new)),
            flags: libc::MSG_NOSIGNAL as u32,
        }
    }

    /// Replaces the `MSG_*` flags (keep `MSG_NOSIGNAL` unless `SIGPIPE` is
    /// wanted).
    pub fn flags(mut self, flags: i32) -> Self {
        self.flags = flags as u32;
        self
    }
}

// SAFETY: the boxed msghdr points at the iovec array (a Vec's heap memory)
// and the boxed destination; the iovecs point at initialised bytes of
// buffers the struct owns (the kernel only reads them); the SharedFd clone
// keeps the socket open.
unsafe impl<B: IoBuf> Operation for SendMsg<B> {
    type Output = BufResult<usize, Vec<B>>;

    fn sqe(&mut self) -> Entry {
        let (hdr, flags): (*const libc::msghdr, u32) = (&*self.msg.hdr, self.flags);
        crate::with_target!(self.fd, |t| opcode::SendMsg::new(t, hdr)
            .flags(flags)
            .build())
    }

    fn complete(self, completion: Completion) -> Self::Output {
        (completion.result().map(|n| n as usize), self.bufs)
    }

    fn readiness(&self) -> Readiness {
        Readiness::Writable(self.fd.raw())
    }

    fn perform(&mut self) -> io::Result<u32> {
        let flags = self.flags as i32 | libc::MSG_DONTWAIT;
        // SAFETY: the header and what it points at are owned by the struct.
        let ret = unsafe { libc::sendmsg(self.fd.raw(), &*self.msg.hdr, flags) };
        syscall_result(ret)
    }
}

/// `IORING_OP_SEND_ZC`: a send **without copying** `buf[..bytes_init()]`
/// into the kernel, optionally from a registered buffer slot. Two CQEs:
/// the result, then (unless the send failed early) the notification that
/// the kernel no longer reads the buffer; [`SendZc::finish`] awaits both
/// and hands the buffer back. io_uring only.
#[derive(Debug)]
pub struct SendZc<B> {
    fd: SharedFd,
    buf: B,
    len: u32,
    flags: i32,
    /// `FixedIoBuf::fixed_index` of a registered buffer, asked when the SQE
    /// is built (on the runtime that submits it).
    index_of: Option<fn(&B) -> Option<u16>>,
}

impl<B: IoBuf> SendZc<B> {
    /// A zero-copy send of `buf` on `fd` with `flags` (`MSG_*`).
    pub fn new(fd: &SharedFd, buf: B, flags: i32) -> SendZc<B> {
        let len = clamp_len(buf.bytes_init());
        SendZc {
            fd: fd.clone(),
            buf,
            len,
            flags,
            index_of: None,
        }
    }

    /// A zero-copy send of a registered buffer ([`FixedBuf`](crate::fixed::FixedBuf)):
    /// the SQE names its slot (`IORING_RECVSEND_FIXED_BUF`) when the buffer
    /// is registered on the runtime that submits it, and is a plain
    /// zero-copy send otherwise.
    pub fn fixed(fd: &SharedFd, buf: B, flags: i32) -> SendZc<B>
    where
        B: FixedIoBuf,
    {
        SendZc {
            index_of: Some(<B as FixedIoBuf>::fixed_index),
            ..SendZc::new(fd, buf, flags)
        }
    }

    /// Submits the send and waits for its last CQE: the count sent (or the
    /// error) and the buffer, free to reuse.
    pub async fn finish(self) -> BufResult<usize, B> {
        let mut op = self.start();
        let mut result = None;
        while let Some(completion) = op.next().await {
            // The notification carries no byte count; the result is the
            // other CQE (the first one).
            if !cqueue::notif(completion.flags()) && result.is_none() {
                result = Some(completion.result().map(|n| n as usize));
            }
        }
        let this = match op.into_inner() {
            Ok(this) => this,
            // `next` gave None: the stream has ended and the data is free.
            Err(_) => unreachable!("send_zc stream ended but kept its data"),
        };
        let result = result.unwrap_or_else(|| {
            Err(io::Error::other(
                "IORING_OP_SEND_ZC ended without a result CQE",
            ))
        });
        (result, this.buf)
    }
}

// SAFETY: the SQE points at `len <= bytes_init` initialised bytes of the
// buffer's stable memory, owned by the struct until the operation's last
// CQE (the notification that the kernel is done reading them); with an
// index, inside that registered slot of the runtime building the SQE
// (FixedIoBuf's promise, the index being asked of the buffer now, on that
// runtime). The SharedFd clone keeps the socket open.
unsafe impl<B: IoBuf> MultishotOperation for SendZc<B> {
    fn sqe(&mut self) -> Entry {
        let index = self.index_of.and_then(|index_of| index_of(&self.buf));
        let (ptr, len, flags) = (self.buf.stable_ptr(), self.len, self.flags);
        crate::with_target!(self.fd, |t| opcode::SendZc::new(t, ptr, len)
            .buf_index(index)
            .flags(flags)
            .build())
    }
}

/// Where an accept puts the new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Into {
    /// An ordinary descriptor (`SOCK_CLOEXEC`).
    Fd,
    /// A slot of the runtime's direct-descriptor table the kernel picks.
    Direct,
}

/// `IORING_OP_ACCEPT`: one connection from a listening socket, with the
/// peer's address.
#[derive(Debug)]
pub struct Accept {
    fd: SharedFd,
    addr: Box<SockAddrBuf>,
    into: Into,
}

impl Accept {
    /// An accept on `fd` whose connection is an ordinary descriptor
    /// (`SOCK_CLOEXEC`).
    pub fn new(fd: &SharedFd) -> Accept {
        Accept {
            fd: fd.clone(),
            addr: Box::new(SockAddrBuf::new()),
            into: Into::Fd,
        }
    }

    /// An accept whose connection is a direct descriptor: a slot of the
    /// current runtime's table that the kernel picks
    /// (`IORING_FILE_INDEX_ALLOC`; the table must be registered, see
    /// [`direct_table`](crate::op::direct_table)). io_uring only.
    pub fn direct(fd: &SharedFd) -> Accept {
        Accept {
            into: Into::Direct,
            ..Accept::new(fd)
        }
    }
}

// SAFETY: the SQE points at the boxed address storage and its length, both
// owned by the struct; the SharedFd clone keeps the listener open. A
// descriptor created after the future is gone is closed by the runtime
// (`creates`).
unsafe impl Operation for Accept {
    /// The connection and the peer's address.
    type Output = io::Result<(SharedFd, SockAddrBuf)>;

    fn sqe(&mut self) -> Entry {
        let addr = &mut *self.addr;
        let (storage, len) = (addr.as_mut_ptr(), &mut addr.len as *mut libc::socklen_t);
        let accept = crate::with_target!(self.fd, |t| opcode::Accept::new(t, storage, len));
        match self.into {
            Into::Fd => accept.flags(libc::SOCK_CLOEXEC).build(),
            // Direct descriptors take no O_CLOEXEC (the kernel refuses it:
            // they are not in the process's descriptor table).
            Into::Direct => accept
                .file_index(Some(DestinationSlot::auto_target()))
                .build(),
        }
    }

    fn creates(&self) -> Creates {
        match self.into {
            Into::Fd => Creates::Fd,
            Into::Direct => Creates::Direct,
        }
    }

    fn complete(self, completion: Completion) -> Self::Output {
        let fd = claim_created(completion.result()?, self.into == Into::Direct);
        Ok((fd, *self.addr))
    }

    fn readiness(&self) -> Readiness {
        match self.into {
            Into::Fd => Readiness::Readable(self.fd.raw()),
            Into::Direct => Readiness::Unsupported,
        }
    }

    fn perform(&mut self) -> io::Result<u32> {
        let addr = &mut *self.addr;
        let storage = addr.as_mut_ptr();
        // SAFETY: the address storage and its length are owned by the
        // struct.
        let ret = unsafe {
            libc::accept4(
                self.fd.raw(),
                storage,
                &mut addr.len,
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        };
        syscall_result(ret as isize)
    }
}

/// `IORING_OP_ACCEPT` with `IORING_ACCEPT_MULTISHOT`: one SQE, a
/// connection per CQE, without peer addresses. Start it with
/// [`MultishotOperation::start`] and take connections with
/// [`Multishot::poll_accept`](crate::op::Multishot::poll_accept).
#[derive(Debug)]
pub struct AcceptMulti {
    fd: SharedFd,
    into: Into,
}

impl AcceptMulti {
    /// A multishot accept on `fd` of ordinary descriptors (`SOCK_CLOEXEC`).
    pub fn new(fd: &SharedFd) -> AcceptMulti {
        AcceptMulti {
            fd: fd.clone(),
            into: Into::Fd,
        }
    }

    /// A multishot accept into slots of the current runtime's
    /// direct-descriptor table the kernel picks. io_uring only.
    pub fn direct(fd: &SharedFd) -> AcceptMulti {
        AcceptMulti {
            fd: fd.clone(),
            into: Into::Direct,
        }
    }
}

// SAFETY: the SQE points at no memory; the SharedFd clone keeps the
// listener open while CQEs may come. Descriptors nobody takes are closed by
// the runtime (`creates`).
unsafe impl MultishotOperation for AcceptMulti {
    fn sqe(&mut self) -> Entry {
        let accept = crate::with_target!(self.fd, |t| opcode::AcceptMulti::new(t));
        match self.into {
            Into::Fd => accept.flags(libc::SOCK_CLOEXEC).build(),
            Into::Direct => accept.allocate_file_index(true).build(),
        }
    }

    fn creates(&self) -> Creates {
        match self.into {
            Into::Fd => Creates::Fd,
            Into::Direct => Creates::Direct,
        }
    }

    fn readiness(&self) -> Readiness {
        match self.into {
            Into::Fd => Readiness::Readable(self.fd.raw()),
            Into::Direct => Readiness::Unsupported,
        }
    }

    /// One non-blocking `accept4(2)` (`SOCK_CLOEXEC | SOCK_NONBLOCK`),
    /// without the peer's address.
    fn perform(&mut self) -> io::Result<u32> {
        if self.into == Into::Direct {
            return Err(crate::op::operation::unsupported_on_readiness());
        }
        // SAFETY: plain system call on a listener the struct keeps open;
        // no address is asked for.
        let ret = unsafe {
            libc::accept4(
                self.fd.raw(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        };
        syscall_result(ret as isize)
    }
}

impl Multishot<AcceptMulti> {
    /// The next connection: `Ready(None)` once the kernel ended the
    /// multishot (start a new one), `Ready(Some(Err))` for a failed accept
    /// (the kernel's errno, e.g. `ENFILE` when a direct table is full).
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<SharedFd>>> {
        let direct = self.get_ref().is_some_and(|op| op.into == Into::Direct);
        self.poll_next(cx)
            .map(|c| c.map(|c| c.result().map(|raw| claim_created(raw, direct))))
    }
}

/// `IORING_OP_CONNECT`: connects a socket to an address.
#[derive(Debug)]
pub struct Connect {
    fd: SharedFd,
    addr: Box<SockAddrBuf>,
    started: bool,
}

impl Connect {
    /// A connect of `fd` to `addr`.
    pub fn new(fd: &SharedFd, addr: SockAddrBuf) -> Connect {
        Connect {
            fd: fd.clone(),
            addr: Box::new(addr),
            started: false,
        }
    }
}

// SAFETY: the SQE points at the boxed address, owned by the struct; the
// SharedFd clone keeps the socket open.
unsafe impl Operation for Connect {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> Entry {
        let (ptr, len) = (self.addr.as_mut_ptr().cast_const(), self.addr.len);
        crate::with_target!(self.fd, |t| opcode::Connect::new(t, ptr, len).build())
    }

    fn complete(self, completion: Completion) -> Self::Output {
        completion.result().map(drop)
    }

    fn readiness(&self) -> Readiness {
        Readiness::Writable(self.fd.raw())
    }

    /// A non-blocking `connect(2)` the first time (`EINPROGRESS` becomes
    /// `EAGAIN`: wait until writable), `SO_ERROR` after that; a connect
    /// refused with `EAGAIN` (a full Unix backlog) is tried again.
    fn perform(&mut self) -> io::Result<u32> {
        let fd = self.fd.raw();
        if !self.started {
            self.started = true;
            let (ptr, len) = (self.addr.as_mut_ptr().cast_const(), self.addr.len);
            // SAFETY: the address is owned by the struct.
            if unsafe { libc::connect(fd, ptr, len) } == 0 {
                return Ok(0);
            }
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EINPROGRESS) => Err(io::Error::from_raw_os_error(libc::EAGAIN)),
                Some(libc::EAGAIN) => {
                    // A Unix socket whose listener's backlog is full: the
                    // connect did not start; try it again when ready.
                    self.started = false;
                    Err(err)
                }
                _ => Err(err),
            };
        }
        let mut error: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes an int and its length into locals.
        let ret = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut error as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        match error {
            0 => Ok(0),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// `IORING_OP_SOCKET` (Linux 5.19): a new socket, `SOCK_CLOEXEC`.
#[derive(Debug)]
pub struct Socket {
    domain: i32,
    ty: i32,
    protocol: i32,
}

impl Socket {
    /// A socket of `domain` (`AF_*`), `ty` (`SOCK_*`) and `protocol`.
    pub fn new(domain: i32, ty: i32, protocol: i32) -> Socket {
        Socket {
            domain,
            ty: ty | libc::SOCK_CLOEXEC,
            protocol,
        }
    }
}

// SAFETY: the SQE points at no memory and names no descriptor. The new
// descriptor is closed by the runtime if nobody takes it (`creates`).
unsafe impl Operation for Socket {
    type Output = io::Result<SharedFd>;

    fn sqe(&mut self) -> Entry {
        opcode::Socket::new(self.domain, self.ty, self.protocol).build()
    }

    fn creates(&self) -> Creates {
        Creates::Fd
    }

    fn complete(self, completion: Completion) -> Self::Output {
        completion.result().map(|fd| claim_created(fd, false))
    }

    fn readiness(&self) -> Readiness {
        Readiness::Now
    }

    fn perform(&mut self) -> io::Result<u32> {
        // SAFETY: plain system call.
        let ret = unsafe { libc::socket(self.domain, self.ty, self.protocol) };
        syscall_result(ret as isize)
    }
}

/// `IORING_OP_SHUTDOWN`: shuts down the read side, the write side or both
/// of a socket (the form direct descriptors need: they have no number for
/// `shutdown(2)`).
#[derive(Debug)]
pub struct Shutdown {
    fd: SharedFd,
    how: i32,
}

impl Shutdown {
    /// A shutdown of `fd`'s `how` side(s).
    pub fn new(fd: &SharedFd, how: std::net::Shutdown) -> Shutdown {
        let how = match how {
            std::net::Shutdown::Read => libc::SHUT_RD,
            std::net::Shutdown::Write => libc::SHUT_WR,
            std::net::Shutdown::Both => libc::SHUT_RDWR,
        };
        Shutdown {
            fd: fd.clone(),
            how,
        }
    }
}

// SAFETY: the SQE points at no memory; the SharedFd clone keeps the socket
// open.
unsafe impl Operation for Shutdown {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> Entry {
        let how = self.how;
        crate::with_target!(self.fd, |t| opcode::Shutdown::new(t, how).build())
    }

    fn complete(self, completion: Completion) -> Self::Output {
        completion.result().map(drop)
    }

    fn readiness(&self) -> Readiness {
        Readiness::Now
    }

    fn perform(&mut self) -> io::Result<u32> {
        // SAFETY: plain system call on a descriptor the struct keeps open.
        let ret = unsafe { libc::shutdown(self.fd.raw(), self.how) };
        syscall_result(ret as isize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addresses_round_trip() {
        for text in [
            "127.0.0.1:80",
            "[::1]:443",
            "[fe80::1%2]:8080",
            "10.1.2.3:65535",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            let buf = SockAddrBuf::from(addr);
            assert_eq!(buf.to_socket_addr(), Some(addr), "{text}");
        }
        let v4 = SockAddrBuf::from("1.2.3.4:5".parse::<SocketAddr>().unwrap());
        assert_eq!(v4.storage().ss_family as i32, libc::AF_INET);
        assert_eq!(v4.len() as usize, std::mem::size_of::<libc::sockaddr_in>());
        // A short length or another family is not an IP address.
        let short = SockAddrBuf::from_storage(*v4.storage(), 4);
        assert_eq!(short.to_socket_addr(), None);
        assert_eq!(SockAddrBuf::new().to_socket_addr(), None);
    }

    #[test]
    fn only_a_plain_short_receive_says_drained() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = SharedFd::new(a.into());
        let recv = Recv::new(&fd, Vec::with_capacity(8));
        assert!(recv.drained(3));
        // Filled: more may be queued; 0: the end of the stream.
        assert!(!recv.drained(8));
        assert!(!recv.drained(0));
        let peek = Recv::new(&fd, Vec::with_capacity(8)).flags(libc::MSG_PEEK);
        assert!(!peek.drained(3));
        // Other operations never say so.
        assert!(!Send::new(&fd, b"x".to_vec()).drained(0));
    }
}
