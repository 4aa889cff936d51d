//! The listening core of [`TcpListener`](crate::TcpListener) and
//! [`UnixListener`](crate::UnixListener): one accept with back-off
//! ([`Listener::accept`]), and the one stream of incoming connections on
//! multishot accept, [`Incoming`], generic over the kind of stream it
//! yields (`TcpStream`, `UnixStream`, or `DirectStream` for the
//! `incoming_direct` forms).

use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use runtime::op::{
    Accept, AcceptMulti, Multishot, MultishotOperation, Operation, SharedFd, SockAddrBuf,
};
use runtime::time::Sleep;

use crate::backoff::Backoff;
use crate::{DirectStream, TcpStream, UnixStream};

/// The listen backlog: deep enough for bursts of connections.
pub(crate) const BACKLOG: i32 = 4096;

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

/// A listening socket and the back-off of its accepts.
pub(crate) struct Listener {
    fd: SharedFd,
    backoff: Backoff,
}

impl Listener {
    /// The listener on `fd` (bound and listening).
    pub(crate) fn new(fd: OwnedFd) -> Listener {
        Listener {
            fd: SharedFd::new(fd),
            backoff: Backoff::default(),
        }
    }

    /// The listening descriptor.
    pub(crate) fn fd(&self) -> &SharedFd {
        &self.fd
    }

    /// One `IORING_OP_ACCEPT`, after waiting out the back-off of an earlier
    /// out-of-resource error: the connection (into the direct-descriptor
    /// table if `into` is `Direct` and the table has room) and the peer's
    /// address.
    pub(crate) async fn accept(&self, into: AcceptInto) -> io::Result<(SharedFd, SockAddrBuf)> {
        self.backoff.wait().await;
        let res = match into.resolve() {
            Ok(AcceptInto::Fd) => Accept::new(&self.fd).submit().await,
            Ok(AcceptInto::Direct) => Accept::direct(&self.fd).submit().await,
            Err(e) => Err(e),
        };
        self.backoff.record(&res);
        res
    }

    /// The stream of incoming connections of kind `S`.
    pub(crate) fn incoming<S: Accepted>(&self) -> Incoming<'_, S> {
        Incoming {
            listener: self,
            op: None,
            mode: AcceptInto::Fd,
            sleep: None,
            kind: PhantomData,
        }
    }
}

/// The kinds of stream an [`Incoming`] yields: made from an accepted
/// descriptor. (Sealed: implemented by this crate's stream types only.)
pub trait Accepted: Sized {
    /// Whether connections go into the ring's direct-descriptor table.
    const DIRECT: bool;

    /// The stream on an accepted connection.
    fn accepted(fd: SharedFd) -> Self;
}

/// A stream of incoming connections on **multishot accept**, made by
/// [`TcpListener::incoming`](crate::TcpListener::incoming) (the default,
/// `S = TcpStream`), [`UnixListener::incoming`](crate::UnixListener::incoming)
/// ([`UnixIncoming`]) and the `incoming_direct` forms ([`IncomingDirect`]).
///
/// One SQE yields connection after connection, and is re-armed when the
/// kernel ends it. Errors are yielded too, and the stream goes on after
/// them; after out-of-resource errors (`EMFILE`, `ENFILE`, `ENOBUFS`,
/// `ENOMEM`) it waits a little before the next accept (1 ms, doubling up to
/// 200 ms, until one succeeds), so a loop that retries does not spin. It
/// never ends (`None`): a listener keeps accepting. It implements
/// [`futures_core::Stream`]; [`next`](Self::next) awaits the next
/// connection without that trait.
///
/// For direct descriptors, whether connections go to the table is decided
/// each time the multishot accept is armed; if the table fills up while it
/// is armed, that accept fails with `ENFILE` (the kernel has taken the
/// connection and closes it): the error is yielded, and the stream re-arms,
/// on ordinary descriptors if the table is still full.
pub struct Incoming<'a, S = TcpStream> {
    listener: &'a Listener,
    op: Option<Multishot<AcceptMulti>>,
    /// How the armed multishot accept hands over connections.
    mode: AcceptInto,
    sleep: Option<Sleep>,
    kind: PhantomData<fn() -> S>,
}

/// The stream of [`UnixListener::incoming`](crate::UnixListener::incoming).
pub type UnixIncoming<'a> = Incoming<'a, UnixStream>;

/// The stream of [`TcpListener::incoming_direct`](crate::TcpListener::incoming_direct)
/// and [`UnixListener::incoming_direct`](crate::UnixListener::incoming_direct).
pub type IncomingDirect<'a> = Incoming<'a, DirectStream>;

impl<S: Accepted> Incoming<'_, S> {
    /// The next connection (never `None`: a listener keeps accepting).
    pub async fn next(&mut self) -> Option<io::Result<S>> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Waits out a back-off, (re-)arms the multishot accept when needed,
    /// and yields its results in order.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<S>>> {
        let wanted = if S::DIRECT {
            AcceptInto::Direct
        } else {
            AcceptInto::Fd
        };
        loop {
            if let Some(s) = &mut self.sleep {
                if Pin::new(s).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            if self.op.is_none() {
                match wanted.resolve() {
                    Ok(into) => self.mode = into,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                }
            }
            let (fd, mode) = (&self.listener.fd, self.mode);
            let op = self.op.get_or_insert_with(|| {
                match mode {
                    AcceptInto::Fd => AcceptMulti::new(fd),
                    AcceptInto::Direct => AcceptMulti::direct(fd),
                }
                .start()
            });
            match op.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                // The kernel ended the multishot: arm a new one.
                Poll::Ready(None) => self.op = None,
                Poll::Ready(Some(res)) => {
                    if mode == AcceptInto::Direct
                        && res.as_ref().err().and_then(io::Error::raw_os_error)
                            == Some(libc::ENFILE)
                    {
                        // The table filled up: re-arm, deciding again.
                        self.op = None;
                    }
                    let backoff = &self.listener.backoff;
                    backoff.record(&res);
                    if res.is_err() {
                        if let Some(d) = backoff.pending() {
                            self.sleep = Some(runtime::time::sleep(d));
                        }
                    }
                    return Poll::Ready(Some(res.map(S::accepted)));
                }
            }
        }
    }
}

impl<S: Accepted> futures_core::Stream for Incoming<'_, S> {
    type Item = io::Result<S>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_accept(cx)
    }
}

impl<S> fmt::Debug for Incoming<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("listener", &self.listener.fd)
            .field("armed", &self.op.is_some())
            .field("into", &self.mode)
            .finish()
    }
}
