//! The socket core of every connected stream: [`Stream`] holds the
//! descriptor and performs every operation on it, each one typed operation
//! of [`runtime::op`] (or a few, for zero-copy sends, buffer rings and send
//! queues, whose files say how).
//!
//! [`TcpStream`](crate::TcpStream), [`UnixStream`](crate::UnixStream) and
//! [`DirectStream`](crate::DirectStream) each hold one `Stream` and
//! delegate to it, so the three behave the same by construction; what
//! differs between them (addresses, socket options, how they are made) is
//! in their own files, which show each type's whole API. The descriptor may
//! be ordinary, registered in the ring's table as well, or direct (a slot
//! of the table only): the typed operations name the slot where there is
//! one (see [`crate::direct`] for the concept).

use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use runtime::buf::{IoBuf, IoBufMut};
use runtime::bufring::{BufRing, BufRingChunk};
use runtime::fixed::FixedIoBuf;
use runtime::io::{OwnedRead, OwnedWrite};
use runtime::op::{self, Connect, Operation, Read, Recv, RecvMsg, SendMsg, SharedFd, Write};
use runtime::BufResult;
use socket2::{SockAddr, SockRef, Socket};

use crate::addr::to_sock_addr_buf;
use crate::poll_io::{PollIo, PollState};
use crate::recv_multi::{self, RecvMulti};
use crate::send_bundle::SendQueue;
use crate::send_zc;

/// The position of a read or write on a stream: none (`-1`).
const NO_OFFSET: u64 = u64::MAX;

/// A connected stream socket: its descriptor and every operation on it.
pub(crate) struct Stream {
    fd: SharedFd,
    /// The readiness waits of the poll-style traits (see `poll_io.rs`).
    poll: PollState,
}

impl Stream {
    /// The stream on `fd`.
    pub(crate) fn new(fd: SharedFd) -> Stream {
        Stream {
            fd,
            poll: PollState::default(),
        }
    }

    /// Connects `socket` to `addr` (`IORING_OP_CONNECT`).
    pub(crate) async fn connect(socket: Socket, addr: &SockAddr) -> io::Result<Stream> {
        let fd = SharedFd::new(socket.into());
        Connect::new(&fd, to_sock_addr_buf(addr)).submit().await?;
        Ok(Stream::new(fd))
    }

    /// The socket, for system calls (options, addresses).
    ///
    /// # Panics
    ///
    /// On a direct descriptor, which has no number (only
    /// [`DirectStream`](crate::DirectStream) holds one, and it never calls
    /// this).
    pub(crate) fn sock(&self) -> SockRef<'_> {
        SockRef::from(&self.fd)
    }

    /// The poll-style I/O of the ecosystem traits on this stream.
    #[cfg_attr(
        not(any(feature = "tokio-io", feature = "futures-io", feature = "hyper")),
        allow(dead_code)
    )]
    pub(crate) fn poll_io(&mut self) -> PollIo<'_> {
        PollIo {
            fd: &self.fd,
            state: &mut self.poll,
        }
    }

    /// The descriptor number; `-1` for a direct descriptor.
    pub(crate) fn raw(&self) -> RawFd {
        self.fd.raw()
    }

    /// One `IORING_OP_RECV` into `buf`'s writable region; `Ok(0)` at once,
    /// with nothing submitted, if it has no room.
    pub(crate) async fn read<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        if buf.bytes_room() == 0 {
            return (Ok(0), buf);
        }
        Recv::new(&self.fd, buf).submit().await
    }

    /// [`read`](Self::read) with a deadline enforced by the kernel: the
    /// `IORING_OP_RECV` goes out linked to an `IORING_OP_LINK_TIMEOUT` (one
    /// chain, no runtime timer). On timeout: `ErrorKind::TimedOut` naming
    /// the deadline (see `crate::timeout`), the buffer back unchanged.
    pub(crate) async fn read_timeout<B: IoBufMut>(
        &self,
        buf: B,
        timeout: Duration,
    ) -> BufResult<usize, B> {
        if buf.bytes_room() == 0 {
            return (Ok(0), buf);
        }
        let mut read = std::pin::pin!(Recv::new(&self.fd, buf).submit_with_timeout(timeout));
        let (res, buf) = read.as_mut().await;
        if read.timed_out() {
            return (Err(crate::timeout::read_timed_out(timeout)), buf);
        }
        (res, buf)
    }

    /// One `IORING_OP_RECVMSG` scattering into `bufs` in order; `Ok(0)` at
    /// once if no buffer has room.
    pub(crate) async fn readv<B: IoBufMut>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        if bufs.iter().all(|b| b.bytes_room() == 0) {
            return (Ok(0), bufs);
        }
        let (res, bufs) = RecvMsg::new(&self.fd, bufs).submit().await;
        (res.map(|(n, _)| n), bufs)
    }

    /// One `IORING_OP_SEND` with `MSG_NOSIGNAL` of `buf`'s initialised
    /// bytes (what `write` and `send` are).
    pub(crate) async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        op::Send::new(&self.fd, buf).submit().await
    }

    /// One `IORING_OP_SENDMSG` with `MSG_NOSIGNAL` gathering from `bufs`.
    pub(crate) async fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        SendMsg::new(&self.fd, bufs, None).submit().await
    }

    /// One zero-copy send, or a plain one where zero copy is unavailable
    /// (see [`send_zc`](crate::send_zc)).
    pub(crate) async fn send_zc<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        send_zc::send_zc(&self.fd, buf).await
    }

    /// All of `buf` with zero-copy sends (`MSG_WAITALL`).
    pub(crate) async fn write_all_zc<B: IoBuf>(&self, buf: B) -> BufResult<(), B> {
        send_zc::write_all_zc(&self.fd, buf).await
    }

    /// One zero-copy send from a registered buffer.
    pub(crate) async fn send_zc_fixed<B: FixedIoBuf>(&self, buf: B) -> BufResult<usize, B> {
        send_zc::send_zc_fixed(&self.fd, buf).await
    }

    /// One `IORING_OP_READ_FIXED` into a registered buffer (a plain
    /// receive if it has no slot on this runtime, as on the epoll driver).
    pub(crate) async fn read_fixed<B: FixedIoBuf + IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        if buf.bytes_room() == 0 {
            return (Ok(0), buf);
        }
        if buf.fixed_index().is_none() {
            return self.read(buf).await;
        }
        Read::fixed(&self.fd, buf, NO_OFFSET).submit().await
    }

    /// One `IORING_OP_WRITE_FIXED` from a registered buffer; a plain send
    /// (with `MSG_NOSIGNAL`) if it has no slot on this runtime.
    /// `WRITE_FIXED` is a `write(2)`: no `MSG_NOSIGNAL` (the public docs
    /// say what that means).
    pub(crate) async fn write_fixed<B: FixedIoBuf>(&self, buf: B) -> BufResult<usize, B> {
        if buf.fixed_index().is_none() {
            return self.send(buf).await;
        }
        Write::fixed(&self.fd, buf, NO_OFFSET).submit().await
    }

    /// The multishot receive stream into `ring`.
    pub(crate) fn recv_multishot(&self, ring: &BufRing) -> RecvMulti {
        RecvMulti::new(&self.fd, ring)
    }

    /// One receive into a buffer of `ring`.
    pub(crate) async fn recv_from_ring(&self, ring: &BufRing) -> io::Result<Option<BufRingChunk>> {
        recv_multi::recv_from_ring(&self.fd, ring).await
    }

    /// A send queue of `entries` buffers on this stream.
    pub(crate) fn send_queue(&self, entries: u16) -> io::Result<SendQueue> {
        SendQueue::new(&self.fd, entries)
    }

    /// Shuts down the read side, the write side or both: `shutdown(2)` on
    /// a descriptor with a number; on a direct descriptor, which has none,
    /// `IORING_OP_SHUTDOWN` through the ring, waited for here (it completes
    /// at once). Never blocks.
    ///
    /// # Panics
    ///
    /// For a direct descriptor, if no runtime is running on this thread.
    pub(crate) fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        match self.fd.borrow_fd() {
            Some(number) => SockRef::from(&number).shutdown(how),
            None => op::submit_and_wait(op::Shutdown::new(&self.fd, how)),
        }
    }

    /// Installs the descriptor in the ring's table as well (see
    /// [`SharedFd::register`]).
    pub(crate) fn register(self) -> io::Result<Stream> {
        Ok(Stream::new(self.fd.register()?))
    }

    /// Moves the connection into a slot of the ring's table, closing its
    /// descriptor (see [`SharedFd::into_direct`]).
    pub(crate) fn into_direct(self) -> io::Result<Stream> {
        Ok(Stream::new(self.fd.into_direct()?))
    }

    /// Whether the descriptor is also in the ring's table.
    pub(crate) fn is_registered(&self) -> bool {
        self.fd.is_registered()
    }

    /// Whether the descriptor is a slot of the ring's table only.
    pub(crate) fn is_direct(&self) -> bool {
        self.fd.is_direct()
    }

    /// The slot of the ring's table the descriptor is (or is also) in.
    pub(crate) fn slot(&self) -> Option<u32> {
        self.fd.direct_slot()
    }

    /// Closes the descriptor through the ring and reports the result.
    pub(crate) async fn close(self) -> io::Result<()> {
        self.fd.close().await
    }
}

impl OwnedRead for Stream {
    fn read<B: IoBufMut>(&self, buf: B) -> impl Future<Output = BufResult<usize, B>> {
        Stream::read(self, buf)
    }

    fn readv<B: IoBufMut>(&self, bufs: Vec<B>) -> impl Future<Output = BufResult<usize, Vec<B>>> {
        Stream::readv(self, bufs)
    }
}

impl OwnedWrite for Stream {
    fn write<B: IoBuf>(&self, buf: B) -> impl Future<Output = BufResult<usize, B>> {
        Stream::send(self, buf)
    }

    fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> impl Future<Output = BufResult<usize, Vec<B>>> {
        Stream::writev(self, bufs)
    }
}
