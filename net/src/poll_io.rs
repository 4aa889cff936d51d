//! Poll-style I/O on a stream, the engine behind the ecosystem's I/O traits
//! (tokio's `AsyncRead`/`AsyncWrite`, the futures traits, hyper's
//! `rt::Read`/`rt::Write`; cargo features `tokio-io`, `futures-io`,
//! `hyper`).
//!
//! # The mechanism: readiness through the ring
//!
//! A poll-style read lends the kernel nothing: the caller's buffer is only
//! borrowed for the duration of one `poll_read`, so it cannot be the target
//! of an SQE (the kernel could write into it after the borrow ends).
//! Instead each `poll_read` tries a non-blocking `recv(2)` (`MSG_DONTWAIT`)
//! straight into the caller's buffer; only when the socket has nothing
//! (`EAGAIN`) does it arm an `IORING_OP_POLL_ADD` for `POLLIN` on the ring
//! and return `Pending`, and the poll's completion wakes the task. Writes
//! are the same with `send(2)` (`MSG_DONTWAIT | MSG_NOSIGNAL`) and
//! `POLLOUT`.
//!
//! Why this way (the other candidate being a ring receive into a buffer
//! owned by the stream, copied out):
//!
//! - **No byte is ever lost or reordered.** Bytes leave the socket only in
//!   the `poll_read` call that returns them, so a read that returns
//!   `Pending`, or whose caller gives up (a timeout, a `select!`), took
//!   nothing. A write that returns `Ready(Ok(n))` handed exactly those `n`
//!   bytes to the kernel; one that returned `Pending` took nothing, so a
//!   re-poll with different bytes (as h2 does) sends only those.
//! - **No copy**, and **no memory per idle connection** beyond one poll
//!   operation's slot: nothing is allocated for a connection that waits.
//! - `poll_flush` has nothing to do (every byte a write accepted is in the
//!   kernel already) and `poll_shutdown` is a `shutdown(2)` of the write
//!   side.
//!
//! The price is one system call per read or write that finds data or
//! room (as with epoll). Measured against the other candidate (the
//! `ecosystem` scenario of the benchmark suite, hyper on both, a fixed
//! offered rate): it was not cheaper per request beyond the noise floor
//! (0.96x over HTTP/1.1, 1.06x over HTTP/2), and an idle connection cost
//! 1.36x the memory (15.3 against 11.2 KiB), so only readiness is left.
//! See `bench/BENCHMARKS.md` for what it costs against tokio.
//!
//! # Skipping the system call that would find nothing
//!
//! A request/response server reads a request, answers it and reads again;
//! that second read nearly always finds the socket empty, and the `recv`
//! that says so (`EAGAIN`) is pure cost. So a read that filled less than
//! the caller's buffer marks the direction *drained* (a stream socket's
//! `recv` stops short only when its receive queue is empty), and the next
//! read waits for readiness without asking first; a write the kernel took
//! only in part marks the send side full the same way.
//!
//! # A readiness subscription for reads
//!
//! The read side waits on a multishot `IORING_OP_POLL_ADD`
//! (`IORING_POLL_ADD_MULTI`), armed the first time a read finds the socket
//! empty and kept for the life of the stream, as an epoll registration is:
//! the kernel posts a completion each time bytes arrive, and no SQE is
//! spent per request. A completion clears the *drained* mark. This is
//! edge-triggered, which is why the mark may only be set by a read that
//! saw the queue empty: bytes that arrive after that read wake the poll
//! again. A hang-up or an error is a state that is reported once, so after
//! the subscription reports one every read asks the socket. Writes, which
//! rarely wait, use a single-shot poll, which checks the socket when it is
//! armed (so a stale *full* mark costs one wake-up, never a lost one). On a
//! kernel without multishot polls (before 5.13, which answers `EINVAL`)
//! reads fall back to single-shot polls too.
//!
//! Direct descriptors (no number for a system call) do not take part: the
//! traits are implemented for [`TcpStream`](crate::TcpStream) and
//! [`UnixStream`](crate::UnixStream), whose descriptors always have a
//! number (also when registered).

// Without any of the three features nothing calls into this file.
#![cfg_attr(
    not(any(feature = "tokio-io", feature = "futures-io", feature = "hyper")),
    allow(dead_code)
)]

use std::future::Future;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use runtime::op::{
    Multishot, MultishotOperation, Operation, PollAdd, PollMulti, SharedFd, Submitted,
};
use socket2::SockRef;

/// The readiness waits in flight for one stream: at most one per
/// direction.
#[derive(Default)]
pub(crate) struct PollState {
    /// The read side's readiness subscription (a multishot poll), armed
    /// the first time a read finds the socket empty, kept while it runs.
    read_events: Option<Multishot<PollMulti>>,
    /// The kernel has no multishot polls: single-shot ones (`read`).
    no_multishot: bool,
    /// The subscription reported a hang-up or an error, which it will not
    /// report again: reads no longer wait for it.
    read_final: bool,
    read: Option<Submitted<PollAdd>>,
    write: Option<Submitted<PollAdd>>,
    /// The last read stopped short: the socket had nothing more then.
    read_drained: bool,
    /// The last write was taken only in part: the send buffer was full.
    write_full: bool,
}

impl std::fmt::Debug for PollState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollState")
            .field("read_armed", &self.read.is_some())
            .field("read_subscribed", &self.read_events.is_some())
            .field("write_armed", &self.write.is_some())
            .field("read_drained", &self.read_drained)
            .field("write_full", &self.write_full)
            .finish()
    }
}

/// One direction's readiness: the wait in flight (at most one) and the
/// hint that the last system call exhausted the socket.
struct Direction<'a> {
    wait: &'a mut Option<Submitted<PollAdd>>,
    /// Set when the last call moved fewer bytes than asked: the next call
    /// would most likely say "not ready", so the wait is armed first.
    exhausted: &'a mut bool,
    events: i16,
}

/// Runs `attempt` (a non-blocking system call returning a byte count, of
/// `asked` bytes) until it does not say "not ready"; when it does, or when
/// the previous call exhausted the socket, waits for `events` on `fd`
/// through the ring (the poll armed at most once at a time) and returns
/// `Pending`.
fn poll_io(
    fd: &SharedFd,
    dir: Direction<'_>,
    asked: usize,
    cx: &mut Context<'_>,
    mut attempt: impl FnMut() -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        if let Some(poll) = dir.wait.as_mut() {
            match Pin::new(poll).poll(cx) {
                Poll::Pending => return Poll::Pending,
                // Ready (or failed: the system call below says how).
                Poll::Ready(_) => *dir.wait = None,
            }
        } else if *dir.exhausted {
            // Skip the call that would find nothing; the poll completes at
            // once if the socket became ready since (it checks when armed).
            *dir.exhausted = false;
            *dir.wait = Some(PollAdd::new(fd, dir.events as u32).submit());
            continue;
        }
        match attempt() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // POLLERR and POLLHUP are always reported, so a reset or a
                // closed peer wakes the wait too.
                *dir.wait = Some(PollAdd::new(fd, dir.events as u32).submit());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            res => {
                // 0 is the end of the stream (reads): nothing to wait for.
                *dir.exhausted = matches!(res, Ok(n) if n > 0 && n < asked);
                return Poll::Ready(res);
            }
        }
    }
}

/// One stream's poll-style I/O: its descriptor and its waits.
pub(crate) struct PollIo<'a> {
    pub(crate) fd: &'a SharedFd,
    pub(crate) state: &'a mut PollState,
}

impl PollIo<'_> {
    fn read_dir(&mut self) -> Direction<'_> {
        Direction {
            wait: &mut self.state.read,
            exhausted: &mut self.state.read_drained,
            events: libc::POLLIN,
        }
    }

    fn write_dir(&mut self) -> Direction<'_> {
        Direction {
            wait: &mut self.state.write,
            exhausted: &mut self.state.write_full,
            events: libc::POLLOUT,
        }
    }

    /// Reads into `buf` (uninitialised memory is fine: the kernel only
    /// writes into it) and returns how many bytes it filled, `0` at end of
    /// stream or when `buf` is empty.
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if !self.state.no_multishot {
            return self.poll_read_subscribed(cx, buf);
        }
        let (fd, len) = (self.fd, buf.len());
        let sock = SockRef::from(fd);
        poll_io(fd, self.read_dir(), len, cx, || {
            sock.recv_with_flags(buf, libc::MSG_DONTWAIT)
        })
    }

    /// [`poll_read`](Self::poll_read) with a multishot poll as the read
    /// side's readiness: `read_drained` clear means "try the socket".
    fn poll_read_subscribed(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        let fd = self.fd;
        let st = &mut *self.state;
        let sock = SockRef::from(fd);
        loop {
            // Take in what the kernel posted since the last call.
            if let Some(events) = st.read_events.as_mut() {
                loop {
                    match events.poll_next(cx) {
                        Poll::Ready(Some(c)) => {
                            if c.raw_result() == -libc::EINVAL
                                || c.raw_result() == -libc::EOPNOTSUPP
                            {
                                // No multishot polls on this kernel (or on
                                // the epoll driver).
                                st.no_multishot = true;
                                st.read_events = None;
                                st.read_drained = false;
                                return self.poll_read(cx, buf);
                            }
                            // A hang-up or an error is a state, not an
                            // event: no further wake-up will say it again,
                            // so from now on every read asks the socket.
                            let hup = (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) as i32;
                            if c.raw_result() < 0 || c.raw_result() & hup != 0 {
                                st.read_final = true;
                            }
                            st.read_drained = false;
                        }
                        Poll::Ready(None) => {
                            // Ended by the kernel: try the socket, and
                            // subscribe again if it is empty.
                            st.read_events = None;
                            st.read_drained = false;
                            break;
                        }
                        Poll::Pending => break,
                    }
                }
            }
            if st.read_drained {
                if st.read_events.is_none() {
                    if runtime::features().driver == runtime::DriverKind::Epoll {
                        // Multishot polls are io_uring's: single-shot
                        // polls (readiness waits of the epoll driver).
                        st.no_multishot = true;
                        st.read_drained = false;
                        return self.poll_read(cx, buf);
                    }
                    st.read_events = Some(PollMulti::new(fd, libc::POLLIN as u32).start());
                    continue;
                }
                return Poll::Pending;
            }
            match sock.recv_with_flags(buf, libc::MSG_DONTWAIT) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => st.read_drained = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                res => {
                    st.read_drained =
                        !st.read_final && matches!(res, Ok(n) if n > 0 && n < buf.len());
                    return Poll::Ready(res);
                }
            }
        }
    }

    /// Writes from `buf` and returns how many bytes the kernel took.
    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let fd = self.fd;
        let sock = SockRef::from(fd);
        poll_io(fd, self.write_dir(), buf.len(), cx, || {
            sock.send_with_flags(buf, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        })
    }

    /// Writes from `bufs`, in order, and returns how many bytes the kernel
    /// took.
    pub(crate) fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        let fd = self.fd;
        let sock = SockRef::from(fd);
        let len = bufs.iter().map(|b| b.len()).sum();
        poll_io(fd, self.write_dir(), len, cx, || {
            sock.send_vectored_with_flags(bufs, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        })
    }

    /// Shuts down the write side. Nothing is buffered, so there is nothing
    /// to flush first.
    pub(crate) fn poll_shutdown(&mut self) -> Poll<io::Result<()>> {
        Poll::Ready(SockRef::from(self.fd).shutdown(std::net::Shutdown::Write))
    }
}

/// Reads into an initialised buffer (the futures traits' `&mut [u8]`).
#[cfg(feature = "futures-io")]
pub(crate) fn poll_read_init(
    io: &mut PollIo<'_>,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and the
    // read only writes initialised bytes into it (the kernel copies bytes),
    // so `buf` stays initialised.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
    io.poll_read(cx, uninit)
}

/// The poll-style traits of the ecosystem (cargo features `tokio-io`,
/// `futures-io`, `hyper`): readiness through the ring and a non-blocking
/// system call straight into the caller's buffer. A read that returns
/// `Pending` or is given up takes no bytes; a write that returns
/// `Ready(Ok(n))` handed those `n` bytes to the kernel, and one that returns
/// `Pending` took none; flushing has nothing to wait for; shutting down
/// shuts the write side. See the crate docs' "Poll-style I/O".
macro_rules! poll_traits {
    ($ty:ident) => {
        #[cfg(feature = "tokio-io")]
        impl tokio::io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                // SAFETY: `unfilled_mut` hands out the unfilled part; the
                // read writes only initialised bytes into it, and exactly
                // `n` of them, which are marked initialised and filled.
                let unfilled = unsafe { buf.unfilled_mut() };
                let n = std::task::ready!(self.get_mut().stream.poll_io().poll_read(cx, unfilled))?;
                // SAFETY: the read initialised the first `n` unfilled bytes.
                unsafe { buf.assume_init(n) };
                buf.advance(n);
                std::task::Poll::Ready(Ok(()))
            }
        }

        #[cfg(feature = "tokio-io")]
        impl tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.get_mut().stream.poll_io().poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.get_mut()
                    .stream
                    .poll_io()
                    .poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.get_mut().stream.poll_io().poll_shutdown()
            }
        }

        #[cfg(feature = "futures-io")]
        impl futures_io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                crate::poll_io::poll_read_init(&mut self.get_mut().stream.poll_io(), cx, buf)
            }
        }

        #[cfg(feature = "futures-io")]
        impl futures_io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.get_mut().stream.poll_io().poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.get_mut()
                    .stream
                    .poll_io()
                    .poll_write_vectored(cx, bufs)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.get_mut().stream.poll_io().poll_shutdown()
            }
        }

        #[cfg(feature = "hyper")]
        impl hyper::rt::Read for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                mut buf: hyper::rt::ReadBufCursor<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                // SAFETY: the read writes only initialised bytes into the
                // cursor's unfilled part.
                let unfilled = unsafe { buf.as_mut() };
                let n = std::task::ready!(self.get_mut().stream.poll_io().poll_read(cx, unfilled))?;
                // SAFETY: the read initialised the first `n` bytes.
                unsafe { buf.advance(n) };
                std::task::Poll::Ready(Ok(()))
            }
        }

        #[cfg(feature = "hyper")]
        impl hyper::rt::Write for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.get_mut().stream.poll_io().poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                self.get_mut()
                    .stream
                    .poll_io()
                    .poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                self.get_mut().stream.poll_io().poll_shutdown()
            }
        }
    };
}

pub(crate) use poll_traits;
