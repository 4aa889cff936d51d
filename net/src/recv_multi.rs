//! Receiving into a provided buffer ring ([`runtime::bufring`]): the
//! multishot receive stream [`RecvMulti`] and a one-shot receive, shared by
//! TCP and Unix streams.

use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use runtime::bufring::{BufRing, BufRingChunk};
use runtime::op::{
    Completion, Multishot, MultishotOperation, Operation, PollAdd, RecvMode, RecvRing, SharedFd,
    Submitted,
};

/// A receive selecting from a ring ([`RecvRing`]): every completion it
/// yields has had its buffers turned into chunks, once, and dropping it
/// hands the receive to the ring, which gives back the buffers of the CQEs
/// still to come.
struct RingRecv {
    /// Taken by `drop`.
    op: Option<Multishot<RecvRing>>,
}

impl RingRecv {
    /// Starts a receive on `fd` selecting from `ring`.
    fn start(fd: &SharedFd, ring: &BufRing, mode: RecvMode) -> RingRecv {
        RingRecv {
            op: Some(RecvRing::new(fd, ring, mode).start()),
        }
    }

    /// The next completion, after handing its buffers (in order) to
    /// `each` as chunks; `Ready(None)` once the receive is over.
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        each: impl FnMut(BufRingChunk),
    ) -> Poll<Option<Completion>> {
        match self.op.as_mut() {
            Some(op) => op.poll_chunks(cx, each),
            None => Poll::Ready(None),
        }
    }

    /// Asks the kernel to stop the receive (its last CQE still comes).
    fn cancel(&self) {
        if let Some(op) = &self.op {
            op.cancel();
        }
    }
}

impl Drop for RingRecv {
    fn drop(&mut self) {
        if let Some(op) = self.op.take() {
            op.release();
        }
    }
}

/// The stream of [`TcpStream::recv_multishot`](crate::TcpStream::recv_multishot)
/// and [`UnixStream::recv_multishot`](crate::UnixStream::recv_multishot):
/// chunks of received bytes, in order, each in a buffer of the ring.
///
/// One multishot `IORING_OP_RECV` yields chunk after chunk (as a bundle
/// receive, `IORING_RECVSEND_BUNDLE`, where the kernel has it: Linux 6.10+,
/// one CQE for several buffers; one buffer per CQE otherwise, and if the
/// kernel refuses bundles); when the kernel
/// ends it (its last CQE without `IORING_CQE_F_MORE`), the next poll
/// submits a new one. On kernels without multishot receives (before 6.0,
/// [`runtime::Features::multishot_recv`], or if the kernel refuses one)
/// each chunk is one single-shot receive from the ring instead, re-armed
/// as the stream is polled: the same chunks, one SQE each. The stream ends (`None`) when the peer closes its
/// side; an error ends it after being yielded.
///
/// **An empty pool is not an error.** When the ring has no free buffer (the
/// user holds every chunk, or other streams sharing the ring do), the
/// kernel stops the receive with `ENOBUFS`; the bytes stay in the socket.
/// The stream then waits until a chunk of the ring is dropped, re-arms, and
/// goes on where it stopped: nothing is lost or reordered. A task that
/// holds every chunk of the ring and waits for more data before dropping
/// any waits forever, so size the ring for what the user keeps.
///
/// Dropping the stream cancels the receive; bytes already received into
/// buffers but not yet yielded are dropped (their buffers go back to the
/// ring).
///
/// ```
/// use net::UnixStream;
/// use runtime::bufring::BufRing;
///
/// # runtime::block_on(async {
/// // One small pool can serve many connections.
/// let ring = BufRing::builder().entries(16).buf_size(4096).build()?;
/// let (a, b) = UnixStream::pair()?;
/// let (res, _) = b.write_all(b"hello".to_vec()).await;
/// res?;
/// drop(b);
///
/// let mut chunks = a.recv_multishot(&ring);
/// let mut got = Vec::new();
/// while let Some(chunk) = chunks.next().await {
///     got.extend_from_slice(&chunk?); // the buffer goes back here
/// }
/// assert_eq!(got, b"hello");
///
/// // The one-shot form: `None` at end of stream.
/// assert!(a.recv_from_ring(&ring).await?.is_none());
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
pub struct RecvMulti {
    fd: SharedFd,
    ring: BufRing,
    state: State,
    /// Receive bundles (`IORING_RECVSEND_BUNDLE`, Linux 6.10+): one CQE
    /// for several buffers' worth of bytes.
    bundle: bool,
    /// Multishot receives (`IORING_RECV_MULTISHOT`, 6.0+); without them
    /// each receive is one-shot, re-armed after every chunk.
    multishot: bool,
    /// Chunks of a bundle CQE not yielded yet.
    pending: VecDeque<BufRingChunk>,
    /// An `IORING_OP_POLL_ADD` for the peer's shutdown (`POLLRDHUP`),
    /// armed with the first receive: see `poll_chunk`.
    rdhup: Option<Submitted<PollAdd>>,
}

enum State {
    /// No receive in flight: submit one at the next poll.
    Idle,
    /// A receive is in flight; `returned` is the ring's return count when
    /// it was submitted.
    Armed {
        recv: RingRecv,
        returned: u64,
        /// No CQE of this receive was seen yet.
        first: bool,
        /// We cancelled it to re-arm (see `poll_chunk`): its `ECANCELED`
        /// ends it quietly.
        rearm: bool,
    },
    /// The last receive found no buffer: wait until one is returned after
    /// the count `since`.
    Starved { since: u64 },
    /// End of stream, or after an error.
    Done,
}

impl RecvMulti {
    pub(crate) fn new(fd: &SharedFd, ring: &BufRing) -> RecvMulti {
        RecvMulti {
            fd: fd.clone(),
            ring: ring.clone(),
            state: State::Idle,
            bundle: runtime::features().recv_bundle,
            multishot: runtime::features().multishot_recv,
            pending: VecDeque::new(),
            rdhup: None,
        }
    }

    /// Chooses whether receives use bundles (`IORING_RECVSEND_BUNDLE`:
    /// one CQE for several buffers' worth of bytes, Linux 6.10+). The
    /// default is on where [`runtime::features`] reports `recv_bundle`;
    /// asking for bundles on a kernel without them is ignored. Takes
    /// effect from the next receive submitted (the first poll, if called
    /// before any).
    ///
    /// ```
    /// # runtime::block_on(async {
    /// use runtime::bufring::BufRing;
    /// let ring = BufRing::builder().entries(16).buf_size(4096).build()?;
    /// let (a, _b) = net::UnixStream::pair()?;
    /// let rx = a.recv_multishot(&ring).bundles(false);
    /// assert!(!rx.uses_bundles());
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn bundles(mut self, on: bool) -> RecvMulti {
        self.bundle = on && runtime::features().recv_bundle;
        self
    }

    /// Whether receives use bundles (see [`bundles`](Self::bundles)).
    pub fn uses_bundles(&self) -> bool {
        self.bundle
    }

    /// The ring this stream receives into.
    pub fn ring(&self) -> &BufRing {
        &self.ring
    }

    /// The next chunk; `None` once the peer closed its side (or after an
    /// error).
    pub async fn next(&mut self) -> Option<io::Result<BufRingChunk>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// Polls for the next chunk (see [`next`](Self::next)).
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<BufRingChunk>>> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(chunk)));
            }
            match &mut self.state {
                State::Done => return Poll::Ready(None),
                State::Idle => {
                    if self.rdhup.is_none() && self.multishot {
                        self.rdhup = Some(
                            PollAdd::new(&self.fd, (libc::POLLRDHUP | libc::POLLHUP) as u32)
                                .submit(),
                        );
                    }
                    let returned = self.ring.returned();
                    let mode = if !self.multishot {
                        // One receive per chunk: a single-shot SQE posts
                        // one CQE without F_MORE, which ends it, and the
                        // stream re-arms.
                        RecvMode::Single
                    } else if self.bundle {
                        RecvMode::Bundle
                    } else {
                        RecvMode::Multishot
                    };
                    self.state = State::Armed {
                        recv: RingRecv::start(&self.fd, &self.ring, mode),
                        returned,
                        first: true,
                        rearm: false,
                    };
                }
                State::Starved { since } => {
                    ready!(self.ring.poll_returned(*since, cx));
                    self.state = State::Idle;
                }
                State::Armed {
                    recv,
                    returned,
                    first,
                    rearm,
                } => {
                    let pending = &mut self.pending;
                    let c = match recv.poll_next(cx, |chunk| pending.push_back(chunk)) {
                        Poll::Ready(Some(c)) => c,
                        Poll::Ready(None) => {
                            // Ended without a last result: re-arm.
                            self.state = State::Idle;
                            continue;
                        }
                        Poll::Pending => {
                            // When the peer shuts down while bytes are
                            // still queued, a multishot receive can drain
                            // the bytes and then wait for a socket event
                            // that already happened, never posting the end
                            // of the stream (seen on 6.18 without bundles).
                            // The POLLRDHUP poll says the peer is done:
                            // cancel the multishot and finish with
                            // single-shot receives, which always see it.
                            let peer_done = match self.rdhup.as_mut() {
                                Some(p) => Pin::new(p).poll(cx).is_ready(),
                                None => false,
                            };
                            if peer_done {
                                self.rdhup = None;
                                self.multishot = false;
                                if !*rearm {
                                    *rearm = true;
                                    recv.cancel();
                                }
                            }
                            return Poll::Pending;
                        }
                    };
                    let returned = *returned;
                    let was_first = std::mem::replace(first, false);
                    let rearming = *rearm;
                    let more = c.has_more();
                    if !more {
                        // The receive is over (its slot is freed).
                        self.state = State::Idle;
                    }
                    match c.result() {
                        Ok(0) => {
                            self.pending.clear();
                            self.finish();
                            return Poll::Ready(None);
                        }
                        Ok(_) => {
                            if self.pending.is_empty() {
                                self.finish();
                                return Poll::Ready(Some(Err(io::Error::other(
                                    "multishot recv result without a buffer",
                                ))));
                            }
                        }
                        Err(e)
                            if self.bundle
                                && was_first
                                && !more
                                && e.raw_os_error() == Some(libc::EINVAL) =>
                        {
                            // The kernel refuses bundles after all: fall
                            // back to one buffer per CQE.
                            self.pending.clear();
                            self.bundle = false;
                        }
                        Err(e)
                            if self.multishot
                                && was_first
                                && !more
                                && e.raw_os_error() == Some(libc::EINVAL) =>
                        {
                            // The kernel refuses multishot receives after
                            // all: fall back to one receive per chunk.
                            self.pending.clear();
                            self.multishot = false;
                        }
                        Err(e)
                            if rearming && !more && e.raw_os_error() == Some(libc::ECANCELED) =>
                        {
                            // Our own cancel (see above): re-arm.
                            self.pending.clear();
                            self.state = State::Idle;
                        }
                        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                            self.pending.clear();
                            if !more {
                                self.state = State::Starved { since: returned };
                            }
                        }
                        Err(e) => {
                            self.pending.clear();
                            self.finish();
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream, handing a receive still in flight to the ring
    /// (dropping its [`RingRecv`] does).
    fn finish(&mut self) {
        // Dropping the poll cancels it.
        self.rdhup = None;
        self.state = State::Done;
    }
}

impl futures_core::Stream for RecvMulti {
    type Item = io::Result<BufRingChunk>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_chunk(cx)
    }
}

impl fmt::Debug for RecvMulti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Idle => "idle",
            State::Armed { .. } => "armed",
            State::Starved { .. } => "waiting for a buffer",
            State::Done => "done",
        };
        f.debug_struct("RecvMulti")
            .field("fd", &self.fd.raw())
            .field("ring", &self.ring)
            .field("state", &state)
            .finish()
    }
}

/// One `IORING_OP_RECV` with `IOSQE_BUFFER_SELECT`: `None` at end of
/// stream; waits for a returned buffer and retries when the pool is empty.
pub(crate) async fn recv_from_ring(
    fd: &SharedFd,
    ring: &BufRing,
) -> io::Result<Option<BufRingChunk>> {
    loop {
        let returned = ring.returned();
        // A single-shot receive posts one CQE (without F_MORE), which ends
        // it; as a `RingRecv`, a dropped future cancels it and its buffer
        // goes back to the ring.
        let mut recv = RingRecv::start(fd, ring, RecvMode::Single);
        let mut chunk = None;
        let c = poll_fn(|cx| {
            recv.poll_next(cx, |c| {
                // One buffer per CQE here; any other goes back at once.
                if chunk.is_none() {
                    chunk = Some(c);
                }
            })
        })
        .await;
        drop(recv);
        let Some(c) = c else {
            // Cannot happen (one CQE always comes); try again.
            continue;
        };
        match c.result() {
            Ok(0) => return Ok(None),
            Ok(_) => {
                return chunk
                    .map(Some)
                    .ok_or_else(|| io::Error::other("recv result without a buffer"))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                drop(chunk);
                ring.wait_returned(returned).await;
            }
            Err(e) => return Err(e),
        }
    }
}
