//! Cheap counters of a runtime: what it submitted, reaped and runs.

use crate::context::{expect_current, Core};

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
}

impl Core {
    pub(crate) fn metrics(&self) -> Metrics {
        let driver = self.driver.borrow();
        Metrics {
            ops_submitted: driver.submitted,
            cqes_reaped: driver.reaped,
            ops_in_flight: driver.in_flight(),
            tasks_spawned: self.spawned.get(),
            tasks_alive: self.tasks.borrow().len(),
            setup_flags: driver.setup_flags,
            direct_descriptors: driver.direct_held(),
        }
    }
}

/// The counters of the runtime running on this thread.
///
/// # Panics
///
/// If no runtime is running on this thread.
pub fn metrics() -> Metrics {
    expect_current("runtime::metrics").metrics()
}
