//! What a runtime can tell about itself: its counters (what it submitted,
//! reaped and runs) and what its kernel offers.

use crate::driver::probe::Features;
use crate::scheduler::{expect_current, Core};

/// A snapshot of a runtime's counters, cheap to take.
///
/// Useful to check that nothing leaks: after a burst of work has finished,
/// `ops_in_flight` and `tasks_alive` go back to what they were before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Operations submitted to the ring since the runtime started (awaited,
    /// multishot and fire-and-forget ones such as background closes).
    pub ops_submitted: u64,
    /// CQEs reaped since the runtime started, including the runtime's own
    /// (cancels, cross-thread wake-ups).
    pub cqes_reaped: u64,
    /// Operations the runtime tracks: in the kernel, or completed with a
    /// result not yet taken by their future.
    pub ops_in_flight: usize,
    /// Tasks spawned since the runtime started.
    pub tasks_spawned: u64,
    /// Tasks not yet finished.
    pub tasks_alive: usize,
    /// The `IORING_SETUP_*` flags the kernel accepted for this ring.
    pub setup_flags: u32,
    /// Slots of the direct-descriptor table held by handles (direct and
    /// registered descriptors; see `runtime::op::direct_table`).
    pub direct_descriptors: u32,
    /// Wake-ups this runtime sent to other runtimes' rings with
    /// `IORING_OP_MSG_RING` (see [`CrossWake`](crate::CrossWake)).
    pub msg_ring_wakes_sent: u64,
    /// Wake-ups this runtime's thread sent to other runtimes by writing
    /// their eventfd (MSG_RING unavailable, refused or turned off).
    pub eventfd_wakes_sent: u64,
    /// MSG_RING wake-ups other runtimes posted into this ring.
    pub msg_ring_wakes_received: u64,
    /// Operations that completed at once, without the ring or the
    /// blocking pool: file reads the page cache served with
    /// `preadv2(RWF_NOWAIT)` (see
    /// [`Builder::nowait_reads`](crate::Builder::nowait_reads)).
    pub nowait_completions: u64,
}

/// The counters of `core`'s runtime.
pub(crate) fn of(core: &Core) -> Metrics {
    let driver = core.driver.borrow();
    let (ops_submitted, cqes_reaped) = driver.counters();
    let (msg_ring_wakes_sent, msg_ring_wakes_received) = driver.msg_counters();
    Metrics {
        ops_submitted,
        cqes_reaped,
        ops_in_flight: driver.in_flight(),
        tasks_spawned: core.spawned.get(),
        tasks_alive: core.tasks.len(),
        setup_flags: driver.setup_flags(),
        direct_descriptors: driver.direct_held(),
        msg_ring_wakes_sent,
        eventfd_wakes_sent: core.outbox.eventfd_wakes.get(),
        msg_ring_wakes_received,
        nowait_completions: core.nowait_count.get(),
    }
}

/// The counters of the runtime running on this thread.
///
/// # Panics
///
/// If no runtime is running on this thread.
pub fn metrics() -> Metrics {
    of(&expect_current("runtime::metrics"))
}

/// The facilities of the runtime running on this thread, probed when it was
/// built.
///
/// ```
/// # runtime::block_on(async {
/// let f = runtime::features();
/// if !f.send_zc {
///     // fall back to plain sends
/// }
/// println!("{f:?}");
/// # });
/// ```
///
/// # Panics
///
/// If no runtime is running on this thread.
pub fn features() -> Features {
    expect_current("runtime::features")
        .driver
        .borrow_mut()
        .features()
}
