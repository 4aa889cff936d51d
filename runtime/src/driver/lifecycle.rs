//! The op lifecycle: one slab slot per operation in flight.
//!
//! A slot is created when an operation's SQE is pushed and freed when the
//! operation's **last** CQE has been seen *and* nobody needs its result any
//! more. The states:
//!
//! ```text
//!   submit ──► Pending ──CQE──► Done(result) ──future takes it──► freed
//!                │  (waker stored by each poll)
//!                └─future dropped──► Ignored(resources) ──last CQE──► freed,
//!                                    + async cancel        resources dropped
//!
//!   multishot: Pending ──CQE(F_MORE)──► results queued in order ...
//!              ──CQE without F_MORE──► finished; freed when the stream has
//!              handed out every queued result (or was dropped)
//! ```
//!
//! While a slot lives, whatever the kernel may read or write for the
//! operation lives too: either inside the owning future, which cannot be
//! freed without passing through [`Lifecycle::ignore`], or parked in the slot
//! as `Ignored`.

use std::any::Any;
use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use slab::Slab;

use std::fmt;
use std::io;

/// One CQE of an operation: its result and flags.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    result: i32,
    flags: u32,
}

impl Completion {
    pub(crate) fn new(result: i32, flags: u32) -> Self {
        Completion { result, flags }
    }

    /// The completion a CQE would carry for the result of a system call
    /// that did the operation instead (no flags): the value, or the
    /// negative errno (`EIO` for an error without one).
    ///
    /// ```
    /// use runtime::op::Completion;
    /// let c = Completion::from_io(Err(std::io::Error::from_raw_os_error(libc::EAGAIN)));
    /// assert_eq!(c.raw_result(), -libc::EAGAIN);
    /// assert_eq!(Completion::from_io(Ok(7)).result().unwrap(), 7);
    /// ```
    pub fn from_io(result: io::Result<u32>) -> Self {
        let result = match result {
            Ok(n) => n.min(i32::MAX as u32) as i32,
            Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
        };
        Completion { result, flags: 0 }
    }

    /// The result: a non-negative value on success, or the kernel's error
    /// (`raw_os_error()` is the errno).
    pub fn result(&self) -> io::Result<u32> {
        if self.result < 0 {
            Err(io::Error::from_raw_os_error(-self.result))
        } else {
            Ok(self.result as u32)
        }
    }

    /// The raw `res` field: negative errno on failure.
    pub fn raw_result(&self) -> i32 {
        self.result
    }

    /// The raw `flags` field (`IORING_CQE_F_*`).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Whether more CQEs follow for this operation (`IORING_CQE_F_MORE`).
    pub fn has_more(&self) -> bool {
        io_uring::cqueue::more(self.flags)
    }

    /// The provided buffer the kernel picked, if any
    /// (`IORING_CQE_F_BUFFER`).
    pub fn buffer_id(&self) -> Option<u16> {
        io_uring::cqueue::buffer_select(self.flags)
    }
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("result", &self.result)
            .field("flags", &format_args!("{:#x}", self.flags))
            .finish()
    }
}

/// Bit 63 of `user_data` marks the runtime's internal operations (cancels,
/// the wake-up eventfd read); their low bits say which one.
pub(crate) const INTERNAL: u64 = 1 << 63;
/// `user_data` of async-cancel SQEs.
pub(crate) const CANCEL_UD: u64 = INTERNAL | 1;
/// `user_data` of the eventfd read that wakes a parked ring.
pub(crate) const WAKE_UD: u64 = INTERNAL | 2;
/// `user_data` of the close SQEs for descriptors nobody claimed.
pub(crate) const CLOSE_UD: u64 = INTERNAL | 3;
/// `user_data` of `IORING_OP_LINK_TIMEOUT` SQEs: they own no memory once
/// the kernel has read them (the timespec is copied at submission), so they
/// need no slot; their CQE (`-ETIME` or `-ECANCELED`, or none with
/// `IOSQE_CQE_SKIP_SUCCESS`) is consumed and dropped.
pub(crate) const LINK_TIMEOUT_UD: u64 = INTERNAL | 4;
/// `user_data` of the CQE that another runtime's `IORING_OP_MSG_RING`
/// posts into this ring to wake it: nothing to do but look at the remote
/// queue, which the run loop does after every turn.
pub(crate) const MSG_WAKE_UD: u64 = INTERNAL | 5;
/// Bit 62 (with bit 63) marks this ring's own `IORING_OP_MSG_RING` SQEs;
/// their CQE comes only on failure (`IOSQE_CQE_SKIP_SUCCESS`). The low 32
/// bits are the index of the target in the batch sent with one turn, bits
/// 32 to 47 that batch's number.
pub(crate) const MSG_SEND_UD: u64 = INTERNAL | (1 << 62);

/// Resources parked in a slot after their future was dropped.
pub(crate) type Parked = Box<dyn Any>;

enum State {
    /// In the kernel; no result yet.
    Pending,
    /// A single-shot operation completed; its result waits for the future.
    Done(Completion),
    /// A multishot operation: results in arrival order; `finished` once a
    /// CQE without `IORING_CQE_F_MORE` arrived.
    Multi {
        queue: VecDeque<Completion>,
        finished: bool,
    },
    /// The future is gone; the resources wait here for the last CQE.
    Ignored(Option<Parked>),
}

struct Slot {
    /// The full `user_data` the SQE carried: key in the low 32 bits, a
    /// generation in bits 32..63 so that a late cancel never hits a newer
    /// operation that reused the key.
    user_data: u64,
    waker: Option<Waker>,
    state: State,
    /// Whether the result of a successful CQE is a new descriptor (accept,
    /// open, socket), which the runtime closes if nobody takes it.
    creates: Creates,
    /// A cancel was asked for: a multishot op that keeps posting CQEs with
    /// `IORING_CQE_F_MORE` gets cancelled again (a cancel can miss it, e.g.
    /// a repeating timeout between two shots answers `ENOENT`).
    cancel_requested: bool,
}

/// The slab of operations in flight.
pub(crate) struct Lifecycle {
    slots: Slab<Slot>,
    generation: u32,
    /// Descriptors created by operations whose results nobody will take;
    /// the driver closes them.
    orphan_fds: Vec<Orphan>,
}

/// What a successful result of an operation is: whether the runtime must
/// close it if nobody takes it (see [`Operation::creates`](crate::op::Operation::creates)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Creates {
    /// Not a descriptor (a byte count, zero, ...).
    Nothing,
    /// A new ordinary file descriptor (accept, openat, socket).
    Fd,
    /// A slot of the ring's direct-descriptor table that the kernel picked
    /// (`IORING_FILE_INDEX_ALLOC`).
    Direct,
}

/// A descriptor nobody claimed, for the driver to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Orphan {
    /// An ordinary file descriptor.
    Fd(i32),
    /// A direct-descriptor table slot.
    Direct(u32),
}

impl Creates {
    /// The orphan a successful `result` of such an operation leaves.
    fn orphan(self, result: i32) -> Option<Orphan> {
        match self {
            _ if result < 0 => None,
            Creates::Nothing => None,
            Creates::Fd => Some(Orphan::Fd(result)),
            Creates::Direct => Some(Orphan::Direct(result as u32)),
        }
    }
}

/// What the driver must do after handing a CQE to the lifecycle.
pub(crate) enum CqeOutcome {
    /// Nothing more.
    Stored,
    /// A cancel was asked for but the operation goes on: cancel it again.
    Recancel,
    /// The operation was ignored and is finished: drop these resources
    /// (outside any borrow of the driver).
    Release(Option<Parked>),
}

impl Lifecycle {
    pub(crate) fn new() -> Self {
        Lifecycle {
            slots: Slab::new(),
            generation: 0,
            orphan_fds: Vec::new(),
        }
    }

    /// Reserves a slot for an operation about to be pushed and returns its
    /// `user_data`.
    pub(crate) fn insert(&mut self, multishot: bool, creates: Creates) -> (usize, u64) {
        let entry = self.slots.vacant_entry();
        let key = entry.key();
        assert!(
            key <= u32::MAX as usize,
            "more than 2^32 io_uring operations in flight"
        );
        self.generation = (self.generation + 1) & 0x7fff_ffff;
        let user_data = (u64::from(self.generation) << 32) | key as u64;
        let state = if multishot {
            State::Multi {
                queue: VecDeque::new(),
                finished: false,
            }
        } else {
            State::Pending
        };
        entry.insert(Slot {
            user_data,
            waker: None,
            state,
            creates,
            cancel_requested: false,
        });
        (key, user_data)
    }

    /// Reserves a slot for a fire-and-forget operation (a close): nobody
    /// waits for it, its slot goes with its CQE.
    pub(crate) fn insert_detached(&mut self) -> u64 {
        let (key, user_data) = self.insert(false, Creates::Nothing);
        self.slots[key].state = State::Ignored(None);
        user_data
    }

    /// The number of slots alive (operations in flight or with results not
    /// yet taken).
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Stores one CQE in its slot; the waiting task's waker, if any, is
    /// moved to `wake` (woken by the caller once it released its borrows).
    pub(crate) fn complete(
        &mut self,
        user_data: u64,
        result: i32,
        flags: u32,
        wake: &mut Vec<Waker>,
    ) -> CqeOutcome {
        let key = (user_data & 0xffff_ffff) as usize;
        let Some(slot) = self.slots.get_mut(key) else {
            debug_assert!(false, "CQE for user_data {user_data:#x} has no live slot");
            return CqeOutcome::Stored;
        };
        if slot.user_data != user_data {
            debug_assert!(
                false,
                "CQE for user_data {user_data:#x} found slot of {:#x}",
                slot.user_data
            );
            return CqeOutcome::Stored;
        }
        let completion = Completion::new(result, flags);
        let more = io_uring::cqueue::more(flags);
        match &mut slot.state {
            State::Pending => {
                slot.state = State::Done(completion);
            }
            State::Multi { queue, finished } => {
                debug_assert!(!*finished, "CQE after the final multishot CQE");
                queue.push_back(completion);
                *finished = !more;
                if more && slot.cancel_requested {
                    if let Some(waker) = slot.waker.take() {
                        wake.push(waker);
                    }
                    return CqeOutcome::Recancel;
                }
            }
            State::Ignored(parked) => {
                self.orphan_fds.extend(slot.creates.orphan(result));
                if more {
                    return CqeOutcome::Recancel;
                }
                let parked = parked.take();
                self.slots.remove(key);
                return CqeOutcome::Release(parked);
            }
            State::Done(_) => {
                debug_assert!(false, "second CQE for single-shot user_data {user_data:#x}");
                return CqeOutcome::Stored;
            }
        }
        if let Some(waker) = slot.waker.take() {
            wake.push(waker);
        }
        CqeOutcome::Stored
    }

    /// Polls a single-shot operation: its result once the CQE is in, which
    /// frees the slot.
    pub(crate) fn poll_single(&mut self, key: usize, cx: &mut Context<'_>) -> Poll<Completion> {
        let slot = &mut self.slots[key];
        match slot.state {
            State::Done(completion) => {
                self.slots.remove(key);
                Poll::Ready(completion)
            }
            State::Pending => {
                store_waker(&mut slot.waker, cx.waker());
                Poll::Pending
            }
            State::Multi { .. } | State::Ignored(_) => {
                unreachable!("single-shot poll of a multishot or ignored slot")
            }
        }
    }

    /// Polls a multishot operation: the next queued result and whether it is
    /// the last one (the slot is then freed at once), or `None` if the
    /// operation ended without results left.
    pub(crate) fn poll_multi(
        &mut self,
        key: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(Completion, bool)>> {
        let slot = &mut self.slots[key];
        let State::Multi { queue, finished } = &mut slot.state else {
            unreachable!("multishot poll of a single-shot or ignored slot")
        };
        if let Some(c) = queue.pop_front() {
            let last = *finished && queue.is_empty();
            if last {
                self.slots.remove(key);
            }
            return Poll::Ready(Some((c, last)));
        }
        if *finished {
            self.slots.remove(key);
            return Poll::Ready(None);
        }
        store_waker(&mut slot.waker, cx.waker());
        Poll::Pending
    }

    /// Whether the operation behind `key` will produce no more CQEs.
    pub(crate) fn is_finished(&self, key: usize) -> bool {
        match &self.slots[key].state {
            State::Pending => false,
            State::Done(_) => true,
            State::Multi { finished, .. } => *finished,
            State::Ignored(_) => false,
        }
    }

    /// The future owning `key` is gone. If the kernel is done with the
    /// operation the slot is freed and the resources are handed back to be
    /// dropped; otherwise they are parked in the slot until the last CQE and
    /// `Err(user_data)` says which operation to cancel.
    pub(crate) fn ignore(&mut self, key: usize, resources: Parked) -> Result<Parked, u64> {
        let finished = self.is_finished(key);
        let slot = &mut self.slots[key];
        // Results nobody will take: descriptors among them are closed.
        match &mut slot.state {
            State::Done(c) => {
                self.orphan_fds.extend(slot.creates.orphan(c.raw_result()));
            }
            State::Multi { queue, .. } => {
                for c in queue.drain(..) {
                    self.orphan_fds.extend(slot.creates.orphan(c.raw_result()));
                }
            }
            _ => {}
        }
        if finished {
            self.slots.remove(key);
            return Ok(resources);
        }
        slot.waker = None;
        slot.cancel_requested = true;
        slot.state = State::Ignored(Some(resources));
        Err(slot.user_data)
    }

    /// Whether the future of the operation behind `key` was dropped (its
    /// resources are parked here).
    pub(crate) fn is_ignored(&self, key: usize) -> bool {
        matches!(self.slots[key].state, State::Ignored(_))
    }

    /// Marks the operation as one whose cancel was asked for; returns its
    /// `user_data` if it may still post CQEs.
    pub(crate) fn request_cancel(&mut self, key: usize) -> Option<u64> {
        if self.is_finished(key) {
            return None;
        }
        let slot = &mut self.slots[key];
        slot.cancel_requested = true;
        Some(slot.user_data)
    }

    /// Whether [`take_orphan_fds`](Self::take_orphan_fds) has anything to
    /// give.
    pub(crate) fn has_orphan_fds(&self) -> bool {
        !self.orphan_fds.is_empty()
    }

    /// Descriptors to close, created by operations nobody will claim.
    pub(crate) fn take_orphan_fds(&mut self, out: &mut Vec<Orphan>) {
        out.append(&mut self.orphan_fds);
    }

    /// The `user_data` of every operation that may still produce CQEs.
    pub(crate) fn unfinished(&self) -> Vec<u64> {
        self.slots
            .iter()
            .filter(|(key, _)| !self.is_finished(*key))
            .map(|(_, slot)| slot.user_data)
            .collect()
    }

    /// Leaks everything parked here: used only when the kernel could not be
    /// made to finish its operations, so their memory must never be freed.
    pub(crate) fn leak_parked(&mut self) {
        for (_, slot) in self.slots.iter_mut() {
            if let State::Ignored(parked) = &mut slot.state {
                if let Some(p) = parked.take() {
                    std::mem::forget(p);
                }
            }
        }
    }
}

fn store_waker(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(w) if w.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use crate::test_util::CountWake;

    /// `IORING_CQE_F_MORE`.
    const F_MORE: u32 = 1 << 1;

    #[test]
    fn single_shot_result_before_poll_frees_on_take() {
        let mut lc = Lifecycle::new();
        let (key, ud) = lc.insert(false, Creates::Nothing);
        assert!(matches!(
            lc.complete(ud, 7, 0, &mut Vec::new()),
            CqeOutcome::Stored
        ));
        let w = Arc::new(CountWake(AtomicUsize::new(0)));
        let waker = Waker::from(w.clone());
        let mut cx = Context::from_waker(&waker);
        match lc.poll_single(key, &mut cx) {
            Poll::Ready(c) => assert_eq!(c.result().unwrap(), 7),
            Poll::Pending => panic!("result was stored before the poll"),
        }
        assert_eq!(lc.len(), 0);
    }

    #[test]
    fn waker_is_woken_by_completion() {
        let mut lc = Lifecycle::new();
        let (key, ud) = lc.insert(false, Creates::Nothing);
        let w = Arc::new(CountWake(AtomicUsize::new(0)));
        let waker = Waker::from(w.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(lc.poll_single(key, &mut cx).is_pending());
        let mut wake = Vec::new();
        lc.complete(ud, -libc::ECANCELED, 0, &mut wake);
        assert_eq!(wake.len(), 1);
        wake.drain(..).for_each(Waker::wake);
        assert_eq!(w.0.load(Ordering::SeqCst), 1);
        let Poll::Ready(c) = lc.poll_single(key, &mut cx) else {
            panic!()
        };
        assert_eq!(
            c.result().unwrap_err().raw_os_error(),
            Some(libc::ECANCELED)
        );
    }

    #[test]
    fn multishot_results_in_order_and_freed_after_last() {
        let mut lc = Lifecycle::new();
        let (key, ud) = lc.insert(true, Creates::Nothing);
        for i in 0..5 {
            lc.complete(ud, i, F_MORE, &mut Vec::new());
        }
        lc.complete(ud, 5, 0, &mut Vec::new());
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        for i in 0..6 {
            match lc.poll_multi(key, &mut cx) {
                Poll::Ready(Some((c, last))) => {
                    assert_eq!(c.result().unwrap(), i);
                    assert_eq!(last, i == 5);
                }
                other => panic!("expected result {i}, got {:?}", other.map(|o| o.is_some())),
            }
            // The slot goes with the last result.
            assert_eq!(lc.len(), if i == 5 { 0 } else { 1 });
        }
    }

    #[test]
    fn ignored_resources_released_on_last_cqe_only() {
        let mut lc = Lifecycle::new();
        let (key, ud) = lc.insert(true, Creates::Nothing);
        let Err(cancel) = lc.ignore(key, Box::new(vec![1u8, 2, 3])) else {
            panic!("an unfinished op must be cancelled")
        };
        assert_eq!(cancel, ud);
        // A multishot op that goes on after its future was dropped is
        // cancelled again.
        assert!(matches!(
            lc.complete(ud, 1, F_MORE, &mut Vec::new()),
            CqeOutcome::Recancel
        ));
        assert_eq!(lc.len(), 1);
        match lc.complete(ud, -libc::ECANCELED, 0, &mut Vec::new()) {
            CqeOutcome::Release(Some(p)) => {
                assert_eq!(*p.downcast::<Vec<u8>>().unwrap(), vec![1, 2, 3])
            }
            _ => panic!("resources must be released on the last CQE"),
        }
        assert_eq!(lc.len(), 0);
    }

    #[test]
    fn unclaimed_direct_slots_are_orphaned_as_slots() {
        let mut lc = Lifecycle::new();
        let (k1, ud1) = lc.insert(false, Creates::Direct);
        lc.complete(ud1, 3, 0, &mut Vec::new());
        assert!(lc.ignore(k1, Box::new(())).is_ok());
        let (k2, ud2) = lc.insert(true, Creates::Direct);
        assert!(lc.ignore(k2, Box::new(())).is_err());
        lc.complete(ud2, 0, F_MORE, &mut Vec::new());
        lc.complete(ud2, -libc::ENFILE, 0, &mut Vec::new());
        let mut out = Vec::new();
        lc.take_orphan_fds(&mut out);
        assert_eq!(out, vec![Orphan::Direct(3), Orphan::Direct(0)]);
        assert_eq!(lc.len(), 0);
    }

    #[test]
    fn unclaimed_descriptors_are_orphaned() {
        let mut lc = Lifecycle::new();
        let mut fds = Vec::new();
        // A single-shot result that arrived but was never taken.
        let (k1, ud1) = lc.insert(false, Creates::Fd);
        lc.complete(ud1, 41, 0, &mut Vec::new());
        assert!(lc.ignore(k1, Box::new(())).is_ok());
        // A late result after the future was dropped.
        let (k2, ud2) = lc.insert(false, Creates::Fd);
        assert!(lc.ignore(k2, Box::new(())).is_err());
        lc.complete(ud2, 42, 0, &mut Vec::new());
        // Queued multishot results, and one more after the drop; errors
        // are not descriptors.
        let (k3, ud3) = lc.insert(true, Creates::Fd);
        lc.complete(ud3, 43, F_MORE, &mut Vec::new());
        lc.complete(ud3, -libc::EMFILE, F_MORE, &mut Vec::new());
        assert!(lc.ignore(k3, Box::new(())).is_err());
        lc.complete(ud3, 44, F_MORE, &mut Vec::new());
        lc.complete(ud3, -libc::ECANCELED, 0, &mut Vec::new());
        lc.take_orphan_fds(&mut fds);
        assert_eq!(fds, [41, 42, 43, 44].map(Orphan::Fd).to_vec());
        assert_eq!(lc.len(), 0);
        // Ops that do not create descriptors never orphan results.
        let (k4, ud4) = lc.insert(false, Creates::Nothing);
        lc.complete(ud4, 5, 0, &mut Vec::new());
        assert!(lc.ignore(k4, Box::new(())).is_ok());
        lc.take_orphan_fds(&mut fds);
        assert_eq!(fds.len(), 4);
    }

    #[test]
    fn cancelled_multishot_that_goes_on_is_recancelled() {
        let mut lc = Lifecycle::new();
        let (key, ud) = lc.insert(true, Creates::Nothing);
        assert_eq!(lc.request_cancel(key), Some(ud));
        let mut wake = Vec::new();
        assert!(matches!(
            lc.complete(ud, 0, F_MORE, &mut wake),
            CqeOutcome::Recancel
        ));
        assert!(matches!(
            lc.complete(ud, -libc::ECANCELED, 0, &mut wake),
            CqeOutcome::Stored
        ));
        assert_eq!(lc.request_cancel(key), None);
    }

    #[test]
    fn ignoring_a_finished_op_frees_at_once() {
        let mut lc = Lifecycle::new();
        let (key, ud) = lc.insert(false, Creates::Nothing);
        lc.complete(ud, 0, 0, &mut Vec::new());
        assert!(lc.ignore(key, Box::new(())).is_ok());
        assert_eq!(lc.len(), 0);
    }

    #[test]
    fn reused_key_gets_new_generation() {
        let mut lc = Lifecycle::new();
        let (k1, ud1) = lc.insert(false, Creates::Nothing);
        lc.complete(ud1, 0, 0, &mut Vec::new());
        let waker = Waker::noop();
        let _ = lc.poll_single(k1, &mut Context::from_waker(waker));
        let (k2, ud2) = lc.insert(false, Creates::Nothing);
        assert_eq!(k1, k2);
        assert_ne!(ud1, ud2);
        assert_eq!(ud1 & INTERNAL, 0);
    }
}
