//! Send rings: a provided-buffer ring whose entries point at the caller's
//! own buffers, for send bundles (`IORING_OP_SEND` with
//! `IOSQE_BUFFER_SELECT` and `IORING_RECVSEND_BUNDLE`, Linux 6.10+).
//!
//! A [`SendRing`] is a queue of owned buffers ([`IoBuf`]s), appended in
//! order. When it is registered with the kernel
//! ([`SendRing::new`]), every queued buffer is also an entry of a buffer
//! ring (`IORING_REGISTER_PBUF_RING`) under [`group_id`](SendRing::group_id),
//! so that one send SQE selecting from that group sends many buffers at
//! once. [`SendRing::without_ring`] keeps the same queue with no kernel
//! ring, for kernels without bundles (the bytes then go out with vectored
//! sends built from [`SendRing::queued_bufs`]). `net`'s `SendQueue` is the
//! user-facing API built on this.
//!
//! # What the kernel does with a send bundle
//!
//! From `io_uring/net.c` (`io_send`, `io_send_select_buffer`,
//! `io_send_finish`, `io_bundle_nbufs`) and `io_uring/kbuf.c`
//! (`io_ring_buffers_peek`, `io_kbuf_commit`), Linux 6.10 to 6.18:
//!
//! - **Selection.** The kernel takes entries in ring order from its head:
//!   as many as are published (the tail), at most 256 per round
//!   (`PEEK_MAX_IMPORT`) and at most `sqe.len` bytes (`0`: `INT_MAX`). An
//!   entry longer than what is left of that byte cap is cut short by the
//!   kernel *writing a smaller `len` into the ring entry*; this module
//!   never lets that happen (entries are at most 1 GiB and no SQE sets a
//!   length). A zero-length entry at the head, or no entry at all, fails
//!   the send with `ENOBUFS`: this module never queues an empty buffer and
//!   never sends with an empty queue. Entries must be in the order the
//!   bytes must go out: the kernel does not look at buffer ids to order
//!   them (the ids here are just ring positions).
//! - **Short sends.** A bundle must go out whole: on a stream socket a
//!   short send is retried inside the kernel (wait for room, send the
//!   rest) until the selected bytes are sent or an error comes, like
//!   `MSG_WAITALL`. The CQE's `res` is the total sent, even when an error
//!   ends it after some bytes (then the error itself is lost).
//! - **Head advance.** On completion the head moves past every entry
//!   that had at least one byte sent: a partially sent entry counts as
//!   consumed and its rest is *not* sent again. When the request went
//!   through io-wq, the whole selection was committed up front, whatever
//!   was sent. So the head tells which entries the kernel will not read
//!   again, and `res` which bytes reached the socket; they can disagree
//!   after an error or a cancellation. (Seen on 6.18: a bundle of 64
//!   buffers of 64 KiB, cancelled while waiting for room, reported 219264
//!   bytes sent and left the head past all 64 entries. The unit test
//!   `cancelled_bundle_resumes_exactly` checks that the rest still goes
//!   out exactly once.)
//! - **CQEs.** The CQE's buffer id is the first entry of the bundle. If
//!   entries are left after a round (more than 256 were published, or some
//!   were added meanwhile), the kernel posts that round's CQE with
//!   `IORING_CQE_F_MORE` and goes on with the next round: one SQE can post
//!   several CQEs; the last has no `F_MORE` (ring empty, a short or failed
//!   send, or a full CQ).
//! - **`MSG_WAITALL`** adds nothing on stream sockets (bundles already
//!   wait for all); without bundles it makes a plain send retry short sends.
//!
//! # How this module keeps count
//!
//! The queue holds the bytes not known to be sent. After an operation's
//! last CQE, the caller reports the bytes it sent ([`SendRing::settle`]):
//! buffers fully sent are dropped, a partly sent one keeps its rest. Then
//! the kernel's head is read (`IORING_REGISTER_PBUF_STATUS`) and, if the
//! ring does not start there with exactly the bytes still queued (a
//! partial entry, or entries consumed but not sent), the entries from that
//! head on are rewritten from the queue. Nothing is sent twice or skipped,
//! whatever the kernel committed.
//!
//! # Memory safety
//!
//! The ring memory and the queued buffers belong to the shared state of
//! the [`SendRing`]; an operation selecting from the ring must keep a clone
//! in its data (the runtime keeps the data of a dropped operation until its
//! last CQE). The operations that read the queue ([`op::SendBundle`](crate::op::SendBundle),
//! and a vectored send of [`queued_bufs`](SendRing::queued_bufs)) hold a
//! send guard while they live, and [`settle`](SendRing::settle), the only
//! place that drops queued buffers or rewrites entries, refuses to run
//! while any guard lives. The state is freed when the last clone goes, after the group
//! is unregistered; if unregistering fails, or the runtime gave up on its
//! operations, the ring and the buffers are leaked, never freed while the
//! kernel may read them.
//!
//! ```
//! use runtime::sendring::SendRing;
//!
//! # runtime::block_on(async {
//! let ring = SendRing::new(8)?;
//! ring.push(b"hello ".to_vec()).unwrap();
//! ring.push(&b"world"[..]).unwrap();
//! assert_eq!((ring.queued(), ring.queued_bytes()), (2, 11));
//! ring.settle(8)?; // as if a send reported 8 bytes
//! assert_eq!((ring.queued(), ring.queued_bytes()), (1, 3));
//! # Ok::<(), std::io::Error>(())
//! # }).unwrap();
//! ```

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::ptr::{self, NonNull};
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};

use std::alloc::{alloc_zeroed, dealloc, Layout};

use crate::buf::page_size;
use crate::buf::IoBuf;
use crate::driver::resources::GroupKind;
use crate::driver::sys::{BufRingEntry as RawEntry, MAX_BUF_RING_ENTRIES as MAX_ENTRIES};
use crate::scheduler::{expect_current, Core};

/// The longest ring entry: longer buffers take several entries, so that
/// the kernel never shortens an entry to its `INT_MAX` byte cap.
const MAX_ENTRY_LEN: usize = 1 << 30;

/// A queue of owned buffers, and (when registered) the provided-buffer
/// ring whose entries point at them. Cheap to clone: clones share the
/// queue. See the [module docs](self).
#[derive(Clone)]
pub struct SendRing {
    inner: Rc<Inner>,
}

/// The kernel side: the ring memory and its registration.
struct Kernel {
    /// Keeps the runtime's ring open while registered.
    core: Rc<Core>,
    bgid: u16,
    ring: NonNull<RawEntry>,
    layout: Layout,
}

struct Inner {
    kernel: Option<Kernel>,
    /// Capacity in ring entries (a power of two).
    entries: u32,
    state: RefCell<State>,
    /// Send guards alive: operations that may read the queue.
    sending: Cell<u32>,
}

/// One queued buffer: its owner, and its bytes not sent yet.
struct Queued {
    _owner: Box<dyn Any>,
    ptr: *const u8,
    len: usize,
    /// Bytes already sent.
    off: usize,
    /// The offset the buffer's ring entries start at, as last written.
    ring_off: usize,
}

impl Queued {
    fn entries_from(&self, off: usize) -> usize {
        (self.len - off).div_ceil(MAX_ENTRY_LEN)
    }
}

struct State {
    queue: VecDeque<Queued>,
    /// Bytes not sent yet.
    bytes: usize,
    /// Ring entries the queue takes, as written.
    used: usize,
    /// The ring position of the first queued buffer's first entry.
    head: u16,
    /// Our tail: the next free position.
    tail: u16,
}

impl SendRing {
    /// A queue of up to `entries` ring entries (a power of two from 1 to
    /// 32768; each buffer takes one entry per started GiB), registered as
    /// a buffer ring on the runtime running on this thread under a free
    /// group id (shared with [`BufRing`](crate::bufring::BufRing) groups).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad entry count (or, from the kernel, before
    /// Linux 5.19), `OutOfMemory`, `AlreadyExists` when every group id is
    /// taken, and other errors of `io_uring_register(2)`.
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub fn new(entries: u32) -> io::Result<SendRing> {
        let core = expect_current("runtime::sendring::SendRing::new");
        check_entries(entries)?;
        let oom = || io::Error::new(io::ErrorKind::OutOfMemory, "send ring allocation failed");
        let layout = Layout::from_size_align(
            entries as usize * std::mem::size_of::<RawEntry>(),
            page_size(),
        )
        .map_err(|_| oom())?;
        // SAFETY: the layout has a non-zero size (entries >= 1).
        let ring =
            NonNull::new(unsafe { alloc_zeroed(layout) }.cast::<RawEntry>()).ok_or_else(oom)?;
        // SAFETY: the ring memory is page-aligned, entries * 16 bytes, and
        // freed only after the group is unregistered (`Inner::drop`) or, if
        // registration fails, never handed to the kernel.
        let registered = unsafe {
            core.driver.borrow_mut().register_buf_ring(
                ring.as_ptr() as u64,
                entries,
                None,
                GroupKind::Send,
            )
        };
        match registered {
            Ok(bgid) => Ok(SendRing {
                inner: Rc::new(Inner {
                    kernel: Some(Kernel {
                        core,
                        bgid,
                        ring,
                        layout,
                    }),
                    entries,
                    state: RefCell::new(State::new()),
                    sending: Cell::new(0),
                }),
            }),
            Err(e) => {
                // SAFETY: allocated above with this layout; the kernel
                // never got it.
                unsafe { dealloc(ring.as_ptr().cast(), layout) };
                Err(e)
            }
        }
    }

    /// The same queue with no kernel ring (for kernels without send
    /// bundles): the bytes go out through [`queued_bufs`](Self::queued_bufs).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad entry count (as for [`new`](Self::new)).
    pub fn without_ring(entries: u32) -> io::Result<SendRing> {
        check_entries(entries)?;
        Ok(SendRing {
            inner: Rc::new(Inner {
                kernel: None,
                entries,
                state: RefCell::new(State::new()),
                sending: Cell::new(0),
            }),
        })
    }

    /// The buffer group id to select from, if registered.
    pub fn group_id(&self) -> Option<u16> {
        self.inner.kernel.as_ref().map(|k| k.bgid)
    }

    /// The capacity in ring entries.
    pub fn entries(&self) -> u32 {
        self.inner.entries
    }

    /// The number of buffers queued (not fully sent).
    pub fn queued(&self) -> usize {
        self.inner.state.borrow().queue.len()
    }

    /// The number of bytes queued (not sent).
    pub fn queued_bytes(&self) -> usize {
        self.inner.state.borrow().bytes
    }

    /// Appends `buf`'s initialised bytes to the queue (and to the ring,
    /// visible to the kernel at once); `Err(buf)` if it does not fit (each
    /// buffer takes one entry per started GiB). An empty buffer is
    /// accepted and dropped at once: it has nothing to send (and an empty
    /// ring entry would stop a bundle with `ENOBUFS`).
    ///
    /// A send in flight selecting from the ring may pick the new entries
    /// up; that is fine, they go out in order.
    pub fn push<B: IoBuf>(&self, buf: B) -> Result<(), B> {
        let len = buf.bytes_init();
        if len == 0 {
            return Ok(());
        }
        let mut st = self.inner.state.borrow_mut();
        let need = len.div_ceil(MAX_ENTRY_LEN);
        if st.used + need > self.inner.entries as usize {
            return Err(buf);
        }
        let ptr = buf.stable_ptr();
        let q = Queued {
            _owner: Box::new(buf),
            ptr,
            len,
            off: 0,
            ring_off: 0,
        };
        if let Some(k) = &self.inner.kernel {
            let mut tail = st.tail;
            write_entries(k, self.inner.entries, &mut tail, &q, 0);
            st.tail = tail;
            publish_tail(k, tail);
        }
        st.used += need;
        st.bytes += len;
        st.queue.push_back(q);
        Ok(())
    }

    /// A guard that keeps [`settle`](Self::settle) from dropping queued
    /// buffers or rewriting entries while an operation that reads them
    /// lives (held by the operation's data, which the runtime keeps until
    /// the operation's last CQE).
    pub(crate) fn send_guard(&self) -> SendGuard {
        self.inner.sending.set(self.inner.sending.get() + 1);
        SendGuard {
            inner: self.inner.clone(),
        }
    }

    /// The queued bytes as buffers for one vectored send (an
    /// [`op::SendMsg`](crate::op::SendMsg)), in order: at most `max` of
    /// them and about 1 GiB in all (a larger first buffer is cut there), so
    /// that the send's result fits its CQE. While any of them lives,
    /// [`settle`](Self::settle) refuses to run; drop them (the send hands
    /// them back) before reporting what was sent.
    ///
    /// ```
    /// use runtime::op::{Operation, SendMsg, SharedFd};
    /// use runtime::sendring::SendRing;
    ///
    /// # runtime::block_on(async {
    /// let (a, b) = std::os::unix::net::UnixStream::pair()?;
    /// let ring = SendRing::without_ring(4)?;
    /// ring.push(b"one ".to_vec()).unwrap();
    /// ring.push(b"two".to_vec()).unwrap();
    /// let fd = SharedFd::new(a.into());
    /// let (sent, bufs) = SendMsg::new(&fd, ring.queued_bufs(16), None).submit().await;
    /// assert!(ring.settle(0).is_err()); // the buffers are still out
    /// drop(bufs);
    /// ring.settle(sent?)?;
    /// assert_eq!(ring.queued(), 0);
    /// let mut got = [0u8; 7];
    /// std::io::Read::read_exact(&mut &b, &mut got)?;
    /// assert_eq!(&got, b"one two");
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn queued_bufs(&self, max: usize) -> Vec<QueuedBuf> {
        let guard = Rc::new(self.send_guard());
        self.iovecs(max)
            .into_iter()
            .map(|iov| QueuedBuf {
                _guard: guard.clone(),
                iov,
            })
            .collect()
    }

    /// The queued bytes as an iovec array (see
    /// [`queued_bufs`](Self::queued_bufs)).
    fn iovecs(&self, max: usize) -> Vec<libc::iovec> {
        let st = self.inner.state.borrow();
        let mut budget = MAX_ENTRY_LEN;
        let mut out = Vec::new();
        for q in st.queue.iter().take(max) {
            if budget == 0 {
                break;
            }
            let len = (q.len - q.off).min(budget);
            budget -= len;
            out.push(libc::iovec {
                // SAFETY: off < len, inside the buffer's initialised bytes.
                iov_base: unsafe { q.ptr.add(q.off) } as *mut libc::c_void,
                iov_len: len,
            });
        }
        out
    }

    /// Reports that the operation sending from this queue is over and sent
    /// `sent` bytes (from the front): drops the buffers fully sent, and
    /// brings the ring back in line with the kernel's head (see the
    /// [module docs](self)).
    ///
    /// # Errors
    ///
    /// `ResourceBusy` while an operation that may read the queue lives (a
    /// [`SendBundle`](crate::op::SendBundle) or the buffers of
    /// [`queued_bufs`](Self::queued_bufs)): nothing changes. `InvalidData`
    /// if `sent` is more than is queued (nothing changes); the errors of
    /// `IORING_REGISTER_PBUF_STATUS` (the bytes are still accounted for,
    /// but the ring may be out of line: do not send from it again).
    pub fn settle(&self, sent: usize) -> io::Result<()> {
        if self.inner.sending.get() > 0 {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                "send ring: an operation that reads the queue is still alive; settle once it \
                 is over",
            ));
        }
        let mut st = self.inner.state.borrow_mut();
        if sent > st.bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "send ring: {sent} bytes reported sent, only {} queued",
                    st.bytes
                ),
            ));
        }
        // Drop what was sent; `head` follows the entries as written.
        let mut left = sent;
        st.bytes -= sent;
        while left > 0 {
            let front = st.queue.front_mut().expect("sent <= queued bytes");
            let rest = front.len - front.off;
            if left >= rest {
                left -= rest;
                let entries = front.entries_from(front.ring_off);
                st.head = st.head.wrapping_add(entries as u16);
                st.used -= entries;
                st.queue.pop_front();
            } else {
                front.off += left;
                left = 0;
            }
        }
        let Some(k) = &self.inner.kernel else {
            return Ok(());
        };
        let head = kernel_head(k)?;
        let in_line = head == st.head && st.queue.front().is_none_or(|q| q.off == q.ring_off);
        if !in_line {
            // Rewrite from the kernel's head: nothing reads the ring now
            // (no send guard lives).
            let mut tail = head;
            let mut used = 0;
            for q in st.queue.iter_mut() {
                used += write_entries(k, self.inner.entries, &mut tail, q, q.off);
                q.ring_off = q.off;
            }
            st.head = head;
            st.tail = tail;
            st.used = used;
            publish_tail(k, tail);
        }
        Ok(())
    }

    /// The kernel's head of the ring (`IORING_REGISTER_PBUF_STATUS`), for
    /// tests; `None` without a ring.
    #[doc(hidden)]
    pub fn kernel_head(&self) -> Option<io::Result<u16>> {
        self.inner.kernel.as_ref().map(kernel_head)
    }
}

impl fmt::Debug for SendRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.borrow();
        f.debug_struct("SendRing")
            .field("group_id", &self.group_id())
            .field("entries", &self.inner.entries)
            .field("queued", &st.queue.len())
            .field("queued_bytes", &st.bytes)
            .finish()
    }
}

impl State {
    fn new() -> State {
        State {
            queue: VecDeque::new(),
            bytes: 0,
            used: 0,
            head: 0,
            tail: 0,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let Some(k) = &self.kernel else {
            return;
        };
        // No operation selecting from the ring is in flight (each keeps a
        // clone), so once unregistered the kernel is done with the memory.
        let unregistered = match k.core.driver.try_borrow() {
            Ok(d) => !d.is_abandoned() && d.unregister_buf_ring(k.bgid).is_ok(),
            Err(_) => false,
        };
        if !unregistered {
            // The kernel may still read the ring and the buffers: leak.
            let state = std::mem::replace(self.state.get_mut(), State::new());
            std::mem::forget(state);
            return;
        }
        // SAFETY: allocated in `new` with this layout; unregistered.
        unsafe { dealloc(k.ring.as_ptr().cast(), k.layout) };
    }
}

fn check_entries(entries: u32) -> io::Result<()> {
    if entries.is_power_of_two() && entries <= MAX_ENTRIES {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "send ring entries must be a power of two from 1 to {MAX_ENTRIES}, got {entries}"
            ),
        ))
    }
}

/// Writes `q`'s bytes from `off` on as entries at `*tail` (not yet
/// published) and advances it; returns the number of entries.
fn write_entries(k: &Kernel, entries: u32, tail: &mut u16, q: &Queued, off: usize) -> usize {
    let mask = (entries - 1) as u16;
    let mut at = off;
    let mut n = 0;
    while at < q.len {
        let len = (q.len - at).min(MAX_ENTRY_LEN);
        let idx = *tail & mask;
        // SAFETY: idx < entries, inside the ring allocation. The entry is
        // past the published tail (or, during a resync, nothing reads the
        // ring), so the kernel does not read it now. Fields are written
        // one by one so entry 0's `resv` (the tail) is left alone. The
        // address is inside the buffer's initialised bytes, which the ring
        // owns until they are settled.
        unsafe {
            let e = k.ring.as_ptr().add(idx as usize);
            ptr::addr_of_mut!((*e).addr).write(q.ptr.add(at) as u64);
            ptr::addr_of_mut!((*e).len).write(len as u32);
            ptr::addr_of_mut!((*e).bid).write(idx);
        }
        *tail = tail.wrapping_add(1);
        at += len;
        n += 1;
    }
    n
}

/// Makes the entries written so far visible to the kernel.
fn publish_tail(k: &Kernel, tail: u16) {
    // SAFETY: the tail is entry 0's `resv`, an aligned u16 inside the
    // page-aligned ring allocation; the kernel reads it with acquire
    // ordering, so this release store publishes the entries before it.
    let t = unsafe { AtomicU16::from_ptr(ptr::addr_of_mut!((*k.ring.as_ptr()).resv)) };
    t.store(tail, Ordering::Release);
}

fn kernel_head(k: &Kernel) -> io::Result<u16> {
    k.core.driver.borrow().buf_ring_head(k.bgid)
}

/// Keeps [`SendRing::settle`] from running while an operation that reads
/// the queue lives (see [`SendRing::send_guard`]).
pub(crate) struct SendGuard {
    inner: Rc<Inner>,
}

impl Drop for SendGuard {
    fn drop(&mut self) {
        self.inner.sending.set(self.inner.sending.get() - 1);
    }
}

impl fmt::Debug for SendGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendGuard").finish_non_exhaustive()
    }
}

/// Queued bytes of a [`SendRing`], lent to one vectored send (see
/// [`SendRing::queued_bufs`]).
#[derive(Debug)]
pub struct QueuedBuf {
    _guard: Rc<SendGuard>,
    iov: libc::iovec,
}

// SAFETY: the iovec names initialised bytes of a buffer queued in the ring,
// which the ring owns (boxed) at a fixed address; the ring drops queued
// buffers only in `settle`, which refuses to run while the guard held here
// lives, and nothing else mutates them.
unsafe impl IoBuf for QueuedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.iov.iov_base as *const u8
    }

    fn bytes_init(&self) -> usize {
        self.iov.iov_len
    }

    fn bytes_total(&self) -> usize {
        self.iov.iov_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_settle_accounting() {
        // Send rings are io_uring's: on io_uring whatever RUNTIME_DRIVER says.
        let rt = crate::Builder::new()
            .driver(crate::DriverKind::IoUring)
            .build()
            .unwrap();
        rt.block_on(async {
            let ring = SendRing::new(4).unwrap();
            assert!(ring.group_id().is_some());
            ring.push(vec![1u8; 10]).unwrap();
            ring.push(Vec::<u8>::new()).unwrap(); // empty: not queued
            ring.push(vec![2u8; 5]).unwrap();
            ring.push(vec![3u8; 5]).unwrap();
            ring.push(vec![4u8; 5]).unwrap();
            let back = ring.push(vec![5u8; 7]).unwrap_err();
            assert_eq!(back, vec![5u8; 7]);
            assert_eq!((ring.queued(), ring.queued_bytes()), (4, 25));
            ring.settle(12).unwrap();
            assert_eq!((ring.queued(), ring.queued_bytes()), (3, 13));
            let iov = ring.iovecs(8);
            assert_eq!(iov.iter().map(|v| v.iov_len).collect::<Vec<_>>(), [3, 5, 5]);
            // The kernel's head did not move (nothing was sent from the
            // ring), so the entries were rewritten from it: room for one.
            assert_eq!(ring.kernel_head().unwrap().unwrap(), 0);
            ring.push(vec![6u8; 1]).unwrap();
            assert!(ring.push(vec![7u8; 1]).is_err());
            // SAFETY: as above.
            assert!(ring.settle(100).is_err());
            // SAFETY: as above.
            ring.settle(14).unwrap();
            assert_eq!((ring.queued(), ring.queued_bytes()), (0, 0));
        });
    }

    #[test]
    fn without_ring_and_bad_entries() {
        crate::block_on(async {
            assert!(SendRing::new(3).is_err());
            assert!(SendRing::without_ring(0).is_err());
            let q = SendRing::without_ring(2).unwrap();
            assert_eq!(q.group_id(), None);
            q.push(&b"ab"[..]).unwrap();
            q.push(&b"cd"[..]).unwrap();
            assert!(q.push(&b"ef"[..]).is_err());
            q.settle(3).unwrap();
            assert_eq!(q.queued_bytes(), 1);
        });
    }

    /// Sends from `ring` with one bundle SQE, cancelling it after `cancel`
    /// (if given); returns the bytes its CQEs reported and how many CQEs.
    async fn bundle_send(
        ring: &SendRing,
        fd: std::os::fd::RawFd,
        cancel: Option<std::time::Duration>,
    ) -> (usize, usize) {
        use crate::op::io_uring::{opcode, types};
        let bgid = ring.group_id().unwrap();
        // SAFETY: the SQE names no memory (entries of the ring, which the
        // clone in the op data keeps alive); `fd` outlives the op.
        let mut op = unsafe {
            crate::op::Multishot::submit(ring.clone(), |_| {
                opcode::SendBundle::new(types::Fd(fd), bgid)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            })
        };
        if let Some(d) = cancel {
            crate::time::sleep(d).await;
            op.cancel();
        }
        let (mut sent, mut cqes) = (0, 0);
        while let Some(c) = op.next().await {
            cqes += 1;
            if c.raw_result() > 0 {
                sent += c.raw_result() as usize;
            }
        }
        (sent, cqes)
    }

    #[test]
    fn cancelled_bundle_resumes_exactly() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        crate::block_on(async {
            if !crate::features().recv_bundle {
                return;
            }
            let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
            let ring = SendRing::new(64).unwrap();
            let mut all = Vec::new();
            for i in 0..64u32 {
                let buf: Vec<u8> = (0..64 * 1024u32)
                    .map(|j| (i * 7 + j * 13 % 251) as u8)
                    .collect();
                all.extend_from_slice(&buf);
                ring.push(buf).unwrap();
            }
            // The peer does not read: the bundle fills the socket and
            // waits; cancel it there.
            let (sent, _) = bundle_send(
                &ring,
                a.as_raw_fd(),
                Some(std::time::Duration::from_millis(20)),
            )
            .await;
            assert!(sent > 0 && sent < all.len(), "sent {sent}");
            let head_before = ring.kernel_head().unwrap().unwrap();
            ring.settle(sent).unwrap();
            assert_eq!(ring.queued_bytes(), all.len() - sent);
            // The kernel consumed the partly sent buffer (at least): the
            // ring was rewritten from its head.
            assert!(head_before as usize >= sent.div_ceil(64 * 1024));
            let reader = std::thread::spawn(move || {
                let mut got = Vec::new();
                b.read_to_end(&mut got).unwrap();
                got
            });
            let mut rounds = 0;
            while ring.queued_bytes() > 0 {
                let (sent, _) = bundle_send(&ring, a.as_raw_fd(), None).await;
                ring.settle(sent).unwrap();
                rounds += 1;
                assert!(rounds < 100);
            }
            drop(a);
            let got = reader.join().unwrap();
            assert_eq!(got.len(), all.len());
            assert!(got == all, "bytes resent, skipped or reordered");
        });
    }
}
