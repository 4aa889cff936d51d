//! The runtime's timers: a min-heap of deadlines beside a slab of wakers
//! (see the design choice in the module docs of `time`).
//!
//! A timer is a slab entry (its waker and a sequence number) and a heap
//! entry (its deadline, the same sequence number and the slab key). The
//! heap orders timers by deadline, then by sequence number (registration
//! order), so they fire in deadline order. Removing a timer before it fires
//! only frees its slab entry; its heap entry, no longer matching the slab,
//! is skipped when it comes to the top, or dropped when stale entries
//! outnumber live ones (the heap is then rebuilt without them). Inserting
//! is O(1) on average (a new deadline seldom climbs far), firing and
//! looking at the next deadline O(log n); a waker is found by its slab key
//! without a search.
//!
//! Deadlines are kept as nanoseconds since the timers were created: an
//! `Instant` compares through a `timespec`, twice the work of a `u64`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::task::Waker;
use std::time::{Duration, Instant};

use slab::Slab;

/// A timer's key, held by its `Sleep`: (slab key, sequence number).
pub(crate) type TimerKey = (usize, u64);

/// A heap entry: (deadline in ns since the epoch, sequence number, slab
/// key), smallest first.
type Entry = Reverse<(u64, u64, usize)>;

/// Stale heap entries tolerated beyond the live ones before a rebuild.
const STALE_SLACK: usize = 1024;

/// The runtime's timers, ordered by deadline.
pub(crate) struct Timers {
    heap: BinaryHeap<Entry>,
    /// Live timers: (sequence number, waker).
    wakers: Slab<(u64, Waker)>,
    next_id: u64,
    /// Deadlines are counted from here (the creation of the timers, before
    /// any is registered).
    epoch: Instant,
}

impl Timers {
    pub(crate) fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            wakers: Slab::new(),
            next_id: 0,
            epoch: Instant::now(),
        }
    }

    /// `deadline` in nanoseconds since the epoch (0 before it, `u64::MAX`
    /// past about 584 years after it).
    fn nanos(&self, deadline: Instant) -> u64 {
        let since = deadline.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX)
    }

    pub(crate) fn insert(&mut self, deadline: Instant, waker: &Waker) -> TimerKey {
        let id = self.next_id;
        self.next_id += 1;
        let slot = self.wakers.insert((id, waker.clone()));
        self.heap.push(Reverse((self.nanos(deadline), id, slot)));
        (slot, id)
    }

    /// Whether heap entry `(id, slot)` is a live timer.
    fn is_live(wakers: &Slab<(u64, Waker)>, id: u64, slot: usize) -> bool {
        wakers.get(slot).is_some_and(|(live, _)| *live == id)
    }

    /// The waker of a timer that has not fired.
    pub(crate) fn get_mut(&mut self, key: &TimerKey) -> Option<&mut Waker> {
        match self.wakers.get_mut(key.0) {
            Some((id, waker)) if *id == key.1 => Some(waker),
            _ => None,
        }
    }

    /// Removes a timer (its `Sleep` was dropped or re-armed, or saw its
    /// deadline pass); nothing happens if it already fired.
    pub(crate) fn remove(&mut self, key: &TimerKey) -> Option<Waker> {
        if !Self::is_live(&self.wakers, key.1, key.0) {
            return None;
        }
        let (_, waker) = self.wakers.remove(key.0);
        if self.heap.len() > 2 * self.wakers.len() + STALE_SLACK {
            let wakers = &self.wakers;
            self.heap
                .retain(|Reverse((_, id, slot))| Self::is_live(wakers, *id, *slot));
        }
        Some(waker)
    }

    /// Pops the stale entries off the top of the heap.
    fn prune(&mut self) {
        while let Some(Reverse((_, id, slot))) = self.heap.peek() {
            if Self::is_live(&self.wakers, *id, *slot) {
                return;
            }
            self.heap.pop();
        }
    }

    /// The earliest deadline, if any timer is set.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.prune();
        let Reverse((nanos, _, _)) = self.heap.peek()?;
        Some(
            self.epoch
                .checked_add(Duration::from_nanos(*nanos))
                .unwrap_or(self.epoch),
        )
    }

    /// Removes every timer whose deadline is at or before `now`, moving
    /// its waker to `out` (woken by the caller after releasing the borrow),
    /// in deadline order.
    pub(crate) fn fire(&mut self, now: Instant, out: &mut Vec<Waker>) {
        let now = self.nanos(now);
        while let Some(&Reverse((deadline, id, slot))) = self.heap.peek() {
            if deadline > now {
                break;
            }
            self.heap.pop();
            if Self::is_live(&self.wakers, id, slot) {
                out.push(self.wakers.remove(slot).1);
            }
        }
    }

    /// Takes every timer out (runtime shutdown); the caller drops the
    /// wakers after releasing the borrow.
    pub(crate) fn clear(&mut self) -> Slab<(u64, Waker)> {
        self.heap.clear();
        std::mem::take(&mut self.wakers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use crate::test_util::CountWake;

    fn waker() -> Waker {
        Waker::from(Arc::new(CountWake(AtomicUsize::new(0))))
    }

    #[test]
    fn fires_in_deadline_order_and_forgets_what_fired() {
        let mut t = Timers::new();
        let w = waker();
        let base = Instant::now() + Duration::from_millis(10);
        let late = t.insert(base + Duration::from_millis(2), &w);
        let early = t.insert(base, &w);
        let same = t.insert(base, &w);
        assert_eq!(t.next_deadline(), Some(base));
        let mut out = Vec::new();
        t.fire(base + Duration::from_millis(1), &mut out);
        assert_eq!(out.len(), 2);
        assert!(t.get_mut(&early).is_none() && t.remove(&same).is_none());
        assert!(t.get_mut(&late).is_some());
        assert_eq!(t.next_deadline(), Some(base + Duration::from_millis(2)));
        assert!(t.remove(&late).is_some());
        assert!(t.remove(&late).is_none());
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn equal_deadlines_fire_in_registration_order() {
        let mut t = Timers::new();
        let d = Instant::now() + Duration::from_millis(5);
        let counts: Vec<_> = (0..5)
            .map(|_| Arc::new(CountWake(AtomicUsize::new(0))))
            .collect();
        for c in &counts {
            t.insert(d, &Waker::from(c.clone()));
        }
        let mut out = Vec::new();
        t.fire(d, &mut out);
        for (i, w) in out.iter().enumerate() {
            assert!(w.will_wake(&Waker::from(counts[i].clone())), "{i}");
        }
    }

    #[test]
    fn a_reused_slot_does_not_revive_a_removed_timer() {
        let mut t = Timers::new();
        let w = waker();
        let now = Instant::now();
        let gone = t.insert(now + Duration::from_millis(1), &w);
        assert!(t.remove(&gone).is_some());
        // Takes the same slab slot, with a later deadline.
        let kept = t.insert(now + Duration::from_millis(50), &w);
        assert_eq!(kept.0, gone.0);
        assert!(t.get_mut(&gone).is_none());
        // The removed timer's heap entry is skipped, not fired as `kept`.
        assert_eq!(t.next_deadline(), Some(now + Duration::from_millis(50)));
        let mut out = Vec::new();
        t.fire(now + Duration::from_millis(10), &mut out);
        assert!(out.is_empty());
        assert!(t.get_mut(&kept).is_some());
    }

    #[test]
    fn stale_entries_are_dropped_when_they_outnumber_live_ones() {
        let mut t = Timers::new();
        let w = waker();
        let far = Instant::now() + Duration::from_secs(60);
        let kept = t.insert(far, &w);
        for _ in 0..3 * STALE_SLACK {
            let k = t.insert(far, &w);
            assert!(t.remove(&k).is_some());
        }
        assert!(t.heap.len() <= 2 * t.wakers.len() + STALE_SLACK + 1);
        assert!(t.get_mut(&kept).is_some());
        assert_eq!(t.next_deadline(), Some(far));
    }

    #[test]
    fn far_deadlines_saturate() {
        let mut t = Timers::new();
        let w = waker();
        let far = Instant::now() + Duration::from_secs(86_400 * 365 * 1000);
        t.insert(far, &w);
        assert!(t.next_deadline().is_some_and(|d| d > Instant::now()));
        let mut out = Vec::new();
        t.fire(Instant::now(), &mut out);
        assert!(out.is_empty());
    }
}
