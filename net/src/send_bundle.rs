//! Send queues: many buffers out with one send SQE (send bundles,
//! `IORING_RECVSEND_BUNDLE` on `IORING_OP_SEND`, Linux 6.10+), on TCP and
//! Unix streams. The ring and its kernel semantics are in
//! [`runtime::sendring`].

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use runtime::buf::IoBuf;
use runtime::op::{
    Multishot, MultishotOperation, Operation, SendBundle, SendMsg, SharedFd, Submitted,
};
use runtime::sendring::{QueuedBuf, SendRing};

#[cfg(doc)]
use crate::{TcpStream, UnixStream};

/// The most iovecs one vectored send takes (`UIO_MAXIOV`).
const MAX_IOVECS: usize = 1024;

/// A per-connection queue of buffers to send, in order, with as few SQEs
/// and CQEs as the kernel allows. Made by
/// [`TcpStream::send_queue`] and [`UnixStream::send_queue`].
///
/// [`push`](Self::push) queues a buffer (owned until its bytes are sent);
/// [`flush`](Self::flush) sends everything queued. With bundles (Linux
/// 6.10+, [`runtime::features`]`().recv_bundle`), the queue is a provided
/// buffer ring whose entries point at the queued buffers, and one
/// `IORING_OP_SEND` with `IOSQE_BUFFER_SELECT` + `IORING_RECVSEND_BUNDLE`
/// sends them all (up to 256 buffers per kernel round; the kernel goes on
/// by itself with the next round). Without bundles, or if the kernel
/// refuses them (`EINVAL`), a flush sends with `IORING_OP_SENDMSG` and
/// `MSG_WAITALL`, up to 1024 buffers per SQE: the same bytes in the same
/// order.
///
/// # Dropping a `flush` future, errors
///
/// The send in flight belongs to the queue, not to the `flush` future: if
/// that future is dropped (a timeout, a `select!`), the send goes on, and
/// the next `flush` first waits for it and counts what it sent; buffers
/// are dropped only once their bytes are known to be sent. Dropping the
/// `SendQueue` cancels a send in flight; the runtime keeps the ring and
/// the buffers alive until the kernel is done with them.
///
/// On an error (the peer closed: `BrokenPipe`, `ConnectionReset`, ...)
/// `flush` returns it; the bytes the kernel reported sent are gone from
/// the queue and the rest stays queued ([`queued_bytes`](Self::queued_bytes)),
/// so nothing is sent twice or skipped if the caller flushes again. The
/// only exception: if the kernel cannot tell where its ring stands
/// (`IORING_REGISTER_PBUF_STATUS` fails), the queue is marked broken and
/// every later `flush` fails with that error.
///
/// ```
/// use net::UnixStream;
///
/// # runtime::block_on(async {
/// let (a, b) = UnixStream::pair()?;
/// let mut q = a.send_queue(64)?;
/// for word in ["one ", "two ", "three"] {
///     q.push(word.as_bytes().to_vec()).expect("room in the queue");
/// }
/// assert_eq!((q.queued(), q.queued_bytes()), (3, 13));
/// assert_eq!(q.flush().await?, 13); // one SQE when bundles are there
/// assert_eq!(q.queued(), 0);
///
/// let (res, got) = b.read(Vec::with_capacity(64)).await;
/// res?;
/// assert_eq!(got, b"one two three");
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
pub struct SendQueue {
    fd: SharedFd,
    ring: SendRing,
    bundles: bool,
    inflight: Option<InFlight>,
    /// Bytes the CQEs of the send in flight reported so far.
    sent: usize,
    /// The last error a CQE of the send in flight reported.
    error: Option<io::Error>,
    /// Set when the queue can no longer tell what was sent.
    broken: Option<io::ErrorKind>,
}

enum InFlight {
    /// A bundle send (`op::SendBundle`): CQEs until one without `F_MORE`.
    Bundle {
        op: Multishot<SendBundle>,
        /// No CQE of it was seen yet.
        first: bool,
    },
    /// A vectored send of the queued bytes with `MSG_WAITALL`.
    Vectored(Submitted<SendMsg<QueuedBuf>>),
}

impl SendQueue {
    /// A queue of `entries` buffers sending on `fd`.
    pub(crate) fn new(fd: &SharedFd, entries: u16) -> io::Result<SendQueue> {
        let bundles = runtime::features().recv_bundle;
        let ring = if bundles {
            SendRing::new(entries as u32)?
        } else {
            SendRing::without_ring(entries as u32)?
        };
        Ok(SendQueue {
            fd: fd.clone(),
            ring,
            bundles,
            inflight: None,
            sent: 0,
            error: None,
            broken: None,
        })
    }

    /// Chooses whether flushes use send bundles. The default is on where
    /// [`runtime::features`] reports `recv_bundle` (send bundles came with
    /// the same kernel, 6.10); asking for them without kernel support is
    /// ignored. Off, each flush sends with `IORING_OP_SENDMSG` (up to 1024
    /// buffers per SQE). Takes effect from the next send submitted. (Also
    /// how the fallback path is tested on kernels that have bundles.)
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let (a, _b) = net::UnixStream::pair()?;
    /// let q = a.send_queue(16)?.bundles(false);
    /// assert!(!q.uses_bundles());
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn bundles(mut self, on: bool) -> SendQueue {
        self.bundles = on && self.ring.group_id().is_some();
        self
    }

    /// Whether flushes use send bundles (see [`bundles`](Self::bundles)).
    pub fn uses_bundles(&self) -> bool {
        self.bundles
    }

    /// Queues `buf`'s initialised bytes after those already queued; the
    /// queue owns `buf` until they are sent. `Err(buf)` gives it back when
    /// the queue is full (the `entries` it was made with: one per buffer,
    /// one per started GiB for larger ones). An empty buffer is accepted
    /// and dropped at once.
    ///
    /// Nothing is sent until [`flush`](Self::flush) (or, after a dropped
    /// `flush`, by the send still in flight, which may pick new buffers
    /// up: they go out in order either way).
    pub fn push<B: IoBuf>(&mut self, buf: B) -> Result<(), B> {
        self.ring.push(buf)
    }

    /// The number of buffers queued and not fully sent.
    pub fn queued(&self) -> usize {
        self.ring.queued()
    }

    /// The number of bytes queued and not sent.
    pub fn queued_bytes(&self) -> usize {
        self.ring.queued_bytes()
    }

    /// Sends everything queued, in order, and returns the number of bytes
    /// that were queued when it was called (all of them are sent when it
    /// returns `Ok`; a send left in flight by a dropped `flush` is waited
    /// for first). Buffers are dropped once the kernel is done with them.
    ///
    /// # Errors
    ///
    /// The socket's errors (`BrokenPipe` or `ConnectionReset` once the
    /// peer is gone, ...): the bytes sent before the error are no longer
    /// queued, the rest is. `WriteZero` if the kernel sends nothing
    /// without an error. See the [type docs](Self) for a broken queue.
    pub async fn flush(&mut self) -> io::Result<usize> {
        let total = self.ring.queued_bytes();
        loop {
            if let Some(kind) = self.broken {
                return Err(io::Error::new(
                    kind,
                    "send queue is broken: an earlier send left it in an unknown state",
                ));
            }
            if self.inflight.is_none() {
                if self.ring.queued_bytes() == 0 {
                    return Ok(total);
                }
                self.submit();
            }
            poll_fn(|cx| self.poll_inflight(cx)).await?;
        }
    }

    /// Submits one send of what is queued.
    fn submit(&mut self) {
        self.sent = 0;
        self.error = None;
        if self.bundles {
            let op = SendBundle::new(&self.fd, &self.ring).expect("bundles need a ring");
            self.inflight = Some(InFlight::Bundle {
                op: op.start(),
                first: true,
            });
        } else {
            let op = SendMsg::new(&self.fd, self.ring.queued_bufs(MAX_IOVECS), None)
                .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
                .submit();
            self.inflight = Some(InFlight::Vectored(op));
        }
    }

    /// Waits for the send in flight to end, settles what it sent, and
    /// gives its error, if any.
    fn poll_inflight(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut refused = false;
        match self.inflight.as_mut() {
            None => return Poll::Ready(Ok(())),
            Some(InFlight::Bundle { op, first }) => {
                while let Some(c) = ready!(op.poll_next(cx)) {
                    let was_first = std::mem::replace(first, false);
                    match c.raw_result() {
                        n if n > 0 => self.sent += n as usize,
                        0 => {}
                        e => {
                            refused = was_first && !c.has_more() && -e == libc::EINVAL;
                            self.error = Some(io::Error::from_raw_os_error(-e));
                        }
                    }
                    if !c.has_more() {
                        break;
                    }
                }
            }
            Some(InFlight::Vectored(op)) => {
                let (res, pieces) = ready!(Pin::new(op).poll(cx));
                // Before `settle` below, which may drop their bytes.
                drop(pieces);
                match res {
                    Ok(n) => self.sent = n,
                    Err(e) => self.error = Some(e),
                }
            }
        }
        // The send is over: the kernel no longer reads the queue.
        self.inflight = None;
        let sent = std::mem::take(&mut self.sent);
        // No send from this queue is alive now (the one above ended with
        // its last CQE and its buffers were dropped; a queue has at most
        // one), so the ring settles.
        if let Err(e) = self.ring.settle(sent) {
            self.broken = Some(e.kind());
            return Poll::Ready(Err(e));
        }
        let error = self.error.take();
        if refused && sent == 0 {
            // The kernel has no send bundles after all: vectored sends.
            self.bundles = false;
            return Poll::Ready(Ok(()));
        }
        match error {
            Some(e) => Poll::Ready(Err(e)),
            None if sent == 0 => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the kernel sent nothing from the send queue",
            ))),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl fmt::Debug for SendQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendQueue")
            .field("fd", &self.fd.raw())
            .field("ring", &self.ring)
            .field("bundles", &self.bundles)
            .field("in_flight", &self.inflight.is_some())
            .finish()
    }
}
