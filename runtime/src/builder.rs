//! Configuring a runtime.

use std::io;
use std::time::Duration;

use crate::driver::kind::DriverChoice;
use crate::driver::setup::RingConfig;
use crate::{DriverKind, Features, Runtime};

use crate::driver::sys::{MAX_CQ_ENTRIES, MAX_ENTRIES, MAX_FIXED_FILES as MAX_DIRECT};

/// An `InvalidInput` error for a setting out of range.
fn invalid_setting(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// How a runtime's thread wakes another runtime's ring, e.g. when a task
/// of one [`Pool`](crate::Pool) worker wakes a task of another, or
/// [`PoolHandle::spawn_on`](crate::PoolHandle::spawn_on) is called from
/// inside a worker (see [`Builder::cross_wake`]).
///
/// Wakes from threads that run no runtime always write the target's
/// eventfd.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CrossWake {
    /// `IORING_OP_MSG_RING` where the kernel has it (5.18+, with
    /// `IOSQE_CQE_SKIP_SUCCESS`; not from an SQPOLL ring): the waking
    /// runtime adds one SQE to its next submission, which posts a CQE
    /// straight into the target's ring, so waking costs no system call of
    /// its own. The eventfd otherwise, and if the kernel refuses a message.
    #[default]
    MsgRing,
    /// Always the target's eventfd: one `write(2)` per wake-up, at once.
    /// This runtime also refuses MSG_RING wake-ups, so that other runtimes
    /// wake it with its eventfd too. For measuring, and for programs whose
    /// tasks block their thread (which they should not): a MSG_RING owed
    /// by a blocked thread is only sent when it turns its ring again.
    EventFd,
}

/// Settings of a [`Runtime`], checked when [`build`](Builder::build) is
/// called.
///
/// ```
/// let rt = runtime::Runtime::builder().entries(512).build()?;
/// rt.block_on(async { runtime::yield_now().await });
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a Builder does nothing until .build() is called"]
pub struct Builder {
    entries: u32,
    cq_entries: Option<u32>,
    sqpoll: Option<Duration>,
    sqpoll_cpu: Option<u32>,
    direct_descriptors: Option<u32>,
    mask_features: Option<fn(&mut Features)>,
    max_blocking_threads: usize,
    blocking_keep_alive: Duration,
    event_interval: u32,
    shutdown_timeout: Duration,
    driver: Option<DriverKind>,
    cross_wake: CrossWake,
    nowait_reads: bool,
    timer_slack: Duration,
}

/// The largest [`Builder::timer_slack`].
const MAX_TIMER_SLACK: Duration = Duration::from_secs(1);

/// The environment variable that overrides the default driver.
const DRIVER_ENV: &str = "RUNTIME_DRIVER";

/// Checked settings.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The ring's settings.
    pub(crate) ring: RingConfig,
    pub(crate) max_blocking_threads: usize,
    pub(crate) blocking_keep_alive: Duration,
    pub(crate) event_interval: usize,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) cross_wake: CrossWake,
    pub(crate) nowait_reads: bool,
    pub(crate) timer_slack: Duration,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            entries: 256,
            cq_entries: None,
            sqpoll: None,
            sqpoll_cpu: None,
            direct_descriptors: None,
            mask_features: None,
            max_blocking_threads: 16,
            blocking_keep_alive: Duration::from_secs(10),
            event_interval: 128,
            shutdown_timeout: Duration::from_secs(2),
            driver: None,
            cross_wake: CrossWake::MsgRing,
            nowait_reads: true,
            timer_slack: Duration::ZERO,
        }
    }
}

impl Builder {
    /// A builder with the default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// The size of the submission queue: 1 to 32768 (the kernel rounds up
    /// to a power of two). Default 256. More operations than this can be in
    /// flight at once; a full queue is simply flushed to the kernel.
    pub fn entries(mut self, entries: u32) -> Self {
        self.entries = entries;
        self
    }

    /// The size of the completion queue: at least `entries`, at most 65536.
    /// Default: four times `entries` (at most 65536). Completions beyond it
    /// are kept by the kernel and never lost.
    pub fn cq_entries(mut self, cq_entries: u32) -> Self {
        self.cq_entries = Some(cq_entries);
        self
    }

    /// Starts a kernel thread that polls the submission queue, going to
    /// sleep after `idle` without work (`IORING_SETUP_SQPOLL`). Saves the
    /// submit system call at the cost of a busy kernel thread.
    pub fn sqpoll(mut self, idle: Duration) -> Self {
        self.sqpoll = Some(idle);
        self
    }

    /// Pins the [`sqpoll`](Self::sqpoll) kernel thread to CPU `cpu`
    /// (`IORING_SETUP_SQ_AFF`), e.g. a core apart from the runtime's own
    /// thread. Needs `sqpoll`; `cpu` must be an online CPU.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = runtime::Builder::new()
    ///     .sqpoll(Duration::from_millis(10))
    ///     .sqpoll_cpu(0)
    ///     .build()?;
    /// assert!(rt.features().sqpoll);
    /// // Without sqpoll, the CPU means nothing: a clear error.
    /// let err = runtime::Builder::new().sqpoll_cpu(0).build().unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn sqpoll_cpu(mut self, cpu: u32) -> Self {
        self.sqpoll_cpu = Some(cpu);
        self
    }

    /// Size of the ring's table of **direct descriptors** (registered
    /// files, `IORING_REGISTER_FILES`), which sockets accepted with
    /// `TcpListener::accept_direct` (crate `net`) and other direct
    /// descriptors live in: an operation on a direct descriptor skips the
    /// kernel's per-operation file lookup. The table is registered (empty)
    /// the first time a direct descriptor is needed, so a program that
    /// never uses one pays nothing. Default: 4,096 slots, or the
    /// `RLIMIT_NOFILE` soft limit if that is lower (the kernel refuses a
    /// table larger than that limit: raise the limit first to ask for
    /// more). At most 2^20 slots; see [`crate::op::direct_table`].
    ///
    /// The table is split: the last eighth of it (rounded up) is for
    /// descriptors installed with `register` / `into_direct`
    /// ([`SharedFd::register`](crate::op::SharedFd::register)), the rest
    /// for those the kernel allocates (direct accepts). With 4,096 slots:
    /// 3,584 and 512.
    ///
    /// ```
    /// let rt = runtime::Builder::new().direct_descriptors(64).build()?;
    /// rt.block_on(async {
    ///     assert_eq!(runtime::op::direct_table()?, 64);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn direct_descriptors(mut self, slots: u32) -> Self {
        self.direct_descriptors = Some(slots);
        self
    }

    /// Testing aid: `mask` edits the features the runtime probed before
    /// anything uses them, so that a test can run the fallback paths of a
    /// kernel without a facility (e.g. `|f| f.send_zc = false`). Turning a
    /// facility **on** that the kernel lacks only produces errors.
    #[doc(hidden)]
    pub fn mask_features(mut self, mask: fn(&mut Features)) -> Self {
        self.mask_features = Some(mask);
        self
    }

    /// The most threads [`spawn_blocking`](crate::spawn_blocking) may use:
    /// 1 to 1024, default 16. Further jobs wait in a queue.
    pub fn max_blocking_threads(mut self, n: usize) -> Self {
        self.max_blocking_threads = n;
        self
    }

    /// How long an idle blocking thread waits for work before it exits.
    /// Default 10 s.
    pub fn blocking_keep_alive(mut self, d: Duration) -> Self {
        self.blocking_keep_alive = d;
        self
    }

    /// How many tasks run between two looks at the ring (submitting and
    /// reaping I/O, firing timers): at least 1, default 128. Lower means
    /// fairer to I/O, higher means fewer system calls under load.
    pub fn event_interval(mut self, n: u32) -> Self {
        self.event_interval = n;
        self
    }

    /// How long dropping the runtime waits for the kernel to finish
    /// cancelled operations before it leaks their memory instead of freeing
    /// it. Default 2 s.
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// How late a timer may fire so that timers close together share one
    /// wake-up: zero (the default) or up to 1 s.
    ///
    /// With zero, a runtime with nothing else to do sleeps until the
    /// earliest deadline exactly, and every distinct deadline costs a
    /// wake-up of the thread (a system call with a kernel timer, and the
    /// trip back through the run loop). With a slack, the runtime sleeps
    /// until the deadline rounded up to the next multiple of the slack
    /// (counted from the runtime's creation), and fires every timer due by
    /// then: a timer still never fires early, and fires at most `slack`
    /// late (plus the kernel's own wake-up latency, which applies either
    /// way), and the thread wakes at most once per `slack` for timers.
    /// While the runtime is busy running tasks, timers fire at the first
    /// look at the clock after their deadline, slack or not.
    ///
    /// Worth it with many timers spread thinly in time. Measured with
    /// 10,000 tasks each sleeping until its own deadline, spread over
    /// 100 ms (`bench` `core --only timers`), CPU per timer, spawning and
    /// joining included: about 3 µs with no slack on the io_uring driver
    /// (about 3,700 timed `io_uring_enter` waits, each ending exactly at a
    /// deadline), 1.2 µs on the epoll driver (whose waits the kernel lets
    /// end up to the thread's own 50 µs timer slack late, so fewer of
    /// them), 1.1 µs with a 100 µs slack and 0.7 µs with 1 ms (about 100
    /// waits). tokio's and monoio's timer wheels have a fixed 1 ms
    /// granularity, which `Duration::from_millis(1)` matches.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let rt = runtime::Runtime::builder()
    ///     .timer_slack(Duration::from_millis(1))
    ///     .build()?;
    /// rt.block_on(async {
    ///     let start = Instant::now();
    ///     runtime::time::sleep(Duration::from_millis(3)).await;
    ///     // Never early; up to 1 ms late (plus the kernel's latency).
    ///     assert!(start.elapsed() >= Duration::from_millis(3));
    /// });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// [`build`](Self::build) fails with `InvalidInput` for a slack above
    /// 1 s.
    pub fn timer_slack(mut self, slack: Duration) -> Self {
        self.timer_slack = slack;
        self
    }

    /// Insists on one driver (see [`DriverKind`]): with
    /// `DriverKind::IoUring`, a system that refuses io_uring gives the
    /// error of setting it up (`PermissionDenied`, `Unsupported` or
    /// `OutOfMemory`, with a message saying what to do) instead of running
    /// on epoll; with `DriverKind::Epoll`, the runtime runs on epoll even
    /// where io_uring works. Without this call the default is io_uring,
    /// and epoll where io_uring is refused, unless the environment
    /// variable `RUNTIME_DRIVER` says `io_uring` or `epoll` (any other
    /// value makes [`build`](Self::build) fail with `InvalidInput`).
    ///
    /// ```
    /// use runtime::{Builder, DriverKind};
    ///
    /// let rt = Builder::new().driver(DriverKind::Epoll).build()?;
    /// let n = rt.block_on(async {
    ///     let (r, w) = std::os::unix::net::UnixStream::pair()?;
    ///     let (r, w) = (runtime::op::SharedFd::new(r.into()), runtime::op::SharedFd::new(w.into()));
    ///     use runtime::op::Operation;
    ///     runtime::op::Send::new(&w, b"hi".to_vec()).submit().await.0?;
    ///     let (n, _) = runtime::op::Recv::new(&r, Vec::with_capacity(8)).submit().await;
    ///     n
    /// })?;
    /// assert_eq!(n, 2);
    /// assert_eq!(rt.features().driver, DriverKind::Epoll);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn driver(mut self, kind: DriverKind) -> Self {
        self.driver = Some(kind);
        self
    }

    /// The driver choice: the explicit one, else `RUNTIME_DRIVER`, else
    /// the default.
    fn driver_choice(&self) -> io::Result<DriverChoice> {
        if let Some(kind) = self.driver {
            return Ok(DriverChoice::Only(kind));
        }
        match std::env::var(DRIVER_ENV) {
            Ok(value) if value.is_empty() => Ok(DriverChoice::Auto),
            Ok(value) => DriverKind::from_env_value(&value).map(DriverChoice::Only),
            Err(std::env::VarError::NotPresent) => Ok(DriverChoice::Auto),
            Err(std::env::VarError::NotUnicode(v)) => Err(invalid_setting(format!(
                "the environment variable {DRIVER_ENV} must be `io_uring` or `epoll`, got {v:?}"
            ))),
        }
    }

    /// How this runtime wakes other runtimes' rings, and lets them wake
    /// its own: [`CrossWake::MsgRing`] (the default) or
    /// [`CrossWake::EventFd`]. [`Metrics`](crate::Metrics) counts the
    /// wake-ups sent each way.
    ///
    /// ```
    /// use runtime::{CrossWake, Pool, Runtime};
    ///
    /// let pool = Pool::builder()
    ///     .threads(2)
    ///     .runtime(Runtime::builder().cross_wake(CrossWake::EventFd))
    ///     .build()?;
    /// let handle = pool.handle();
    /// let sent = pool.run(|i| {
    ///     let handle = handle.clone();
    ///     async move {
    ///         if i == 0 {
    ///             // Wakes worker 1 from worker 0: with the eventfd.
    ///             handle.spawn_on(1, || async { 7 }).await.unwrap();
    ///         }
    ///         runtime::metrics().msg_ring_wakes_sent
    ///     }
    /// });
    /// assert_eq!(sent, [0, 0]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn cross_wake(mut self, how: CrossWake) -> Self {
        self.cross_wake = how;
        self
    }

    /// Whether file reads first try to get their bytes from the page cache
    /// at once, with `preadv2(RWF_NOWAIT)` on the runtime's thread, and go
    /// through the ring (or, on the epoll driver, the blocking pool) only
    /// for what the cache does not hold. Default `true`. This applies to
    /// every read of an `fs::File` and to any
    /// [`op::Read`](crate::op::Read) or [`op::Readv`](crate::op::Readv)
    /// built with `cached_first`; it is skipped for files opened with
    /// `O_DIRECT`, for direct and registered descriptors (whose operations
    /// name a slot of the ring's table) and for anything but regular
    /// files. A cached 4 KiB read then costs one system call instead of a
    /// trip through the ring and back to the task; turn it off to measure
    /// the difference, or to keep every read on the ring.
    ///
    /// ```
    /// let rt = runtime::Runtime::builder().nowait_reads(false).build()?;
    /// # let _ = rt;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn nowait_reads(mut self, on: bool) -> Self {
        self.nowait_reads = on;
        self
    }

    pub(crate) fn config(&self) -> io::Result<Config> {
        if self.entries == 0 || self.entries > MAX_ENTRIES {
            return Err(invalid_setting(format!(
                "Builder::entries must be between 1 and {MAX_ENTRIES}, got {}",
                self.entries
            )));
        }
        let cq_entries = match self.cq_entries {
            Some(n) if n < self.entries || n > MAX_CQ_ENTRIES => {
                return Err(invalid_setting(format!(
                    "Builder::cq_entries must be between entries ({}) and {MAX_CQ_ENTRIES}, got {n}",
                    self.entries
                )))
            }
            Some(n) => n,
            None => self.entries.saturating_mul(4).min(MAX_CQ_ENTRIES),
        };
        if let Some(idle) = self.sqpoll {
            if idle.as_millis() > u128::from(u32::MAX) {
                return Err(invalid_setting(format!(
                    "Builder::sqpoll idle time must be at most {} ms, got {idle:?}",
                    u32::MAX
                )));
            }
        }
        if let Some(cpu) = self.sqpoll_cpu {
            if self.sqpoll.is_none() {
                return Err(invalid_setting(format!(
                    "Builder::sqpoll_cpu({cpu}) needs Builder::sqpoll: without a polling \
                     thread there is nothing to pin"
                )));
            }
            // SAFETY: sysconf has no memory effects.
            let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
            if online > 0 && i64::from(cpu) >= online as i64 {
                return Err(invalid_setting(format!(
                    "Builder::sqpoll_cpu must name an online CPU (0 to {}), got {cpu}",
                    online - 1
                )));
            }
        }
        if let Some(n) = self.direct_descriptors {
            if n == 0 || n > MAX_DIRECT {
                return Err(invalid_setting(format!(
                    "Builder::direct_descriptors must be between 1 and {MAX_DIRECT}, got {n}"
                )));
            }
        }
        if self.max_blocking_threads == 0 || self.max_blocking_threads > 1024 {
            return Err(invalid_setting(format!(
                "Builder::max_blocking_threads must be between 1 and 1024, got {}",
                self.max_blocking_threads
            )));
        }
        if self.event_interval == 0 {
            return Err(invalid_setting(
                "Builder::event_interval must be at least 1".to_string(),
            ));
        }
        if self.timer_slack > MAX_TIMER_SLACK {
            return Err(invalid_setting(format!(
                "Builder::timer_slack must be at most 1 s, got {:?}",
                self.timer_slack
            )));
        }
        Ok(Config {
            ring: RingConfig {
                entries: self.entries,
                cq_entries,
                sqpoll: self.sqpoll,
                direct_descriptors: self.direct_descriptors,
                mask_features: self.mask_features,
                sqpoll_cpu: self.sqpoll_cpu,
                driver: self.driver_choice()?,
            },
            max_blocking_threads: self.max_blocking_threads,
            blocking_keep_alive: self.blocking_keep_alive,
            event_interval: self.event_interval as usize,
            shutdown_timeout: self.shutdown_timeout,
            cross_wake: self.cross_wake,
            nowait_reads: self.nowait_reads,
            timer_slack: self.timer_slack,
        })
    }

    /// Creates the runtime: sets up the ring (asking for the best features
    /// the kernel has and falling back quietly), or the epoll driver where
    /// the kernel refuses io_uring (see [`driver`](Self::driver)).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a setting out of range or a `RUNTIME_DRIVER`
    /// value other than `io_uring` or `epoll`; with
    /// `driver(DriverKind::IoUring)` (or `RUNTIME_DRIVER=io_uring`),
    /// `PermissionDenied`, `Unsupported` or `OutOfMemory` (with a message
    /// saying what to do) if the kernel refuses io_uring; any other error
    /// of `io_uring_setup`, `epoll_create1` or `eventfd`.
    pub fn build(&self) -> io::Result<Runtime> {
        Runtime::from_config(self.config()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_settings_are_invalid_input() {
        for b in [
            Builder::new().entries(0),
            Builder::new().entries(MAX_ENTRIES + 1),
            Builder::new().entries(64).cq_entries(32),
            Builder::new().cq_entries(MAX_CQ_ENTRIES + 1),
            Builder::new().max_blocking_threads(0),
            Builder::new().max_blocking_threads(5000),
            Builder::new().event_interval(0),
            Builder::new().timer_slack(Duration::from_millis(1001)),
            Builder::new().sqpoll(Duration::from_secs(u64::MAX)),
            Builder::new().sqpoll_cpu(0),
            Builder::new()
                .sqpoll(Duration::from_millis(1))
                .sqpoll_cpu(1 << 20),
        ] {
            let err = b.config().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{b:?}");
            assert!(err.to_string().starts_with("Builder::"), "{err}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = Builder::new().config().unwrap();
        assert_eq!(c.ring.entries, 256);
        assert_eq!(c.ring.cq_entries, 1024);
        let c = Builder::new().entries(MAX_ENTRIES).config().unwrap();
        assert_eq!(c.ring.cq_entries, MAX_CQ_ENTRIES);
    }
}
