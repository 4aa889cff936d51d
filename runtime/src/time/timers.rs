//! The runtime's timers: an ordered map from deadline to waker (see the
//! design choice in the module docs of `time`).

use std::collections::BTreeMap;
use std::task::Waker;
use std::time::Instant;

pub(crate) type TimerKey = (Instant, u64);

/// The runtime's timers, ordered by deadline.
pub(crate) struct Timers {
    map: BTreeMap<TimerKey, Waker>,
    next_id: u64,
}

impl Timers {
    pub(crate) fn new() -> Self {
        Timers {
            map: BTreeMap::new(),
            next_id: 0,
        }
    }

    pub(crate) fn insert(&mut self, deadline: Instant, waker: &Waker) -> TimerKey {
        let key = (deadline, self.next_id);
        self.next_id += 1;
        self.map.insert(key, waker.clone());
        key
    }

    /// The waker of a timer that has not fired.
    pub(crate) fn get_mut(&mut self, key: &TimerKey) -> Option<&mut Waker> {
        self.map.get_mut(key)
    }

    /// Removes a timer (its `Sleep` was dropped or re-armed).
    pub(crate) fn remove(&mut self, key: &TimerKey) -> Option<Waker> {
        self.map.remove(key)
    }

    /// The earliest deadline, if any timer is set.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.map.first_key_value().map(|((d, _), _)| *d)
    }

    /// Removes every timer whose deadline is at or before `now`, moving
    /// its waker to `out` (woken by the caller after releasing the borrow).
    pub(crate) fn fire(&mut self, now: Instant, out: &mut Vec<Waker>) {
        while let Some(entry) = self.map.first_entry() {
            if entry.key().0 > now {
                break;
            }
            out.push(entry.remove());
        }
    }

    /// Drops every timer (runtime shutdown).
    pub(crate) fn clear(&mut self) -> BTreeMap<TimerKey, Waker> {
        std::mem::take(&mut self.map)
    }
}
