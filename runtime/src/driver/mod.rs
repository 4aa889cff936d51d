//! The ring driver: setup, pushing SQEs, one `io_uring_enter` per turn,
//! reaping CQEs into the op lifecycle, and shutdown.
//!
//! Rules kept here:
//! - an SQE is pushed once and never forgotten: a full submission queue is
//!   flushed to the kernel and the push retried; a failed `io_uring_enter`
//!   leaves the SQEs in the ring for the next turn;
//! - every CQE is reaped, including those the kernel kept aside when the
//!   completion queue overflowed (`IORING_FEAT_NODROP`);
//! - shutdown cancels every operation still in flight and waits for its last
//!   CQE before anything it uses is freed, and leaks rather than frees if the
//!   kernel does not finish in time.

use std::io;
use std::os::fd::RawFd;
use std::task::Waker;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use lifecycle::{
    CqeOutcome, Creates, Lifecycle, Orphan, Parked, CANCEL_UD, CLOSE_UD, INTERNAL, LINK_TIMEOUT_UD,
    WAKE_UD,
};
use probe::Features;
use setup::{build_ring, missing_feature, RingConfig};

pub(crate) mod lifecycle;
pub(crate) mod probe;
pub(crate) mod setup;
pub(crate) mod sys;

pub(crate) struct Driver {
    ring: IoUring,
    pub(crate) ops: Lifecycle,
    /// Resources of ignored operations whose last CQE arrived; dropped by
    /// the run loop outside any borrow of the driver.
    released: Vec<Parked>,
    /// Wakers of tasks whose operations completed; woken by the run loop
    /// outside any borrow of the driver.
    to_wake: Vec<Waker>,
    /// Scratch space for descriptors to close.
    orphan_scratch: Vec<Orphan>,
    /// The direct-descriptor table, once it is registered.
    direct_table: Option<DirectTable>,
    /// The size asked for with `Builder::direct_descriptors`.
    direct_wanted: Option<u32>,
    /// The test hook of `Builder::mask_features`.
    mask_features: Option<fn(&mut Features)>,
    /// Slots of the kernel-allocated part of the table held by handles
    /// (`SharedFd`s), for metrics and for accepts that fall back to
    /// ordinary descriptors when it is full.
    pub(crate) direct_live: u32,
    /// Scratch space for operations to cancel again.
    recancel_scratch: Vec<u64>,
    /// `IOSQE_CQE_SKIP_SUCCESS` is available for cancels, closes and link
    /// timeouts (`features.skip_success`).
    skip_success: bool,
    /// What the kernel supports, probed once at setup (the buffer-ring
    /// trial on the first call of [`Driver::features`]).
    features: Features,
    buffer_rings_probed: bool,
    /// Entries in the submission queue: the longest chain that fits.
    sq_entries: usize,
    sqpoll: bool,
    /// The eventfd that other threads write to wake us, and the buffer its
    /// read op fills (boxed: its address must not move while the read is in
    /// flight).
    wake_fd: i32,
    wake_buf: Box<u64>,
    wake_armed: bool,
    shutting_down: bool,
    /// Shutdown could not finish every operation: their memory is leaked,
    /// and futures still owning some must leak it too.
    pub(crate) abandoned: bool,
    /// Setup flags the kernel accepted, for diagnostics.
    pub(crate) setup_flags: u32,
    /// Operations submitted (awaited, multishot and detached), for metrics.
    pub(crate) submitted: u64,
    /// CQEs reaped (including the runtime's internal ones), for metrics.
    pub(crate) reaped: u64,
}

impl Driver {
    pub(crate) fn new(config: &RingConfig, wake_fd: i32) -> io::Result<Driver> {
        let (ring, setup_flags) = build_ring(config)?;
        let params = ring.params();
        if !params.is_feature_ext_arg() {
            return Err(missing_feature("IORING_FEAT_EXT_ARG (timed waits)", "5.11"));
        }
        if !params.is_feature_nodrop() {
            return Err(missing_feature("IORING_FEAT_NODROP", "5.5"));
        }
        let mut features = Features::probe(&ring, setup_flags);
        if let Some(mask) = config.mask_features {
            mask(&mut features);
        }
        let mut driver = Driver {
            skip_success: features.skip_success,
            features,
            buffer_rings_probed: false,
            sq_entries: params.sq_entries() as usize,
            sqpoll: params.is_setup_sqpoll(),
            ring,
            ops: Lifecycle::new(),
            released: Vec::new(),
            to_wake: Vec::new(),
            orphan_scratch: Vec::new(),
            direct_table: None,
            direct_wanted: config.direct_descriptors,
            direct_live: 0,
            mask_features: config.mask_features,
            recancel_scratch: Vec::new(),
            wake_fd,
            wake_buf: Box::new(0),
            wake_armed: false,
            shutting_down: false,
            abandoned: false,
            setup_flags,
            submitted: 0,
            reaped: 0,
        };
        driver.arm_wake();
        Ok(driver)
    }

    /// Pushes an operation's SQE and returns its slot key.
    ///
    /// # Safety
    ///
    /// Every pointer in `entry` stays valid until the operation's last CQE
    /// (see [`crate::op::Op::submit`]).
    pub(crate) unsafe fn submit(
        &mut self,
        entry: squeue::Entry,
        multishot: bool,
        creates: Creates,
    ) -> usize {
        let (key, user_data) = self.ops.insert(multishot, creates);
        self.submitted += 1;
        let entry = entry.user_data(user_data);
        // SAFETY: forwarded from the caller.
        unsafe { self.push(&entry) };
        key
    }

    /// Pushes an operation nobody awaits; its slot is freed by its CQE and
    /// runtime shutdown still waits for it.
    ///
    /// # Safety
    ///
    /// The SQE points at no memory, or only at `'static` memory.
    pub(crate) unsafe fn submit_detached(&mut self, entry: squeue::Entry) {
        let user_data = self.ops.insert_detached();
        self.submitted += 1;
        let entry = entry.user_data(user_data);
        // SAFETY: forwarded from the caller.
        unsafe { self.push(&entry) };
    }

    /// Reserves the slot of one operation of a chain whose SQEs are pushed
    /// later, all at once, by [`Driver::push_chain`]; returns the slot key
    /// and the entry with its `user_data` set.
    pub(crate) fn reserve(
        &mut self,
        entry: squeue::Entry,
        creates: Creates,
    ) -> (usize, squeue::Entry) {
        let (key, user_data) = self.ops.insert(false, creates);
        self.submitted += 1;
        (key, entry.user_data(user_data))
    }

    /// The `IOSQE_CQE_SKIP_SUCCESS` flag if the kernel honours it, else
    /// none: for SQEs whose success nobody needs to hear about.
    pub(crate) fn skip_success_flag(&self) -> squeue::Flags {
        if self.skip_success {
            squeue::Flags::SKIP_SUCCESS
        } else {
            squeue::Flags::empty()
        }
    }

    /// What the kernel supports; the first call also tries a buffer-ring
    /// registration.
    pub(crate) fn features(&mut self) -> Features {
        if !self.buffer_rings_probed {
            self.buffer_rings_probed = true;
            self.features.buffer_rings = probe::try_buffer_ring(&self.ring);
            if let Some(mask) = self.mask_features {
                mask(&mut self.features);
            }
        }
        self.features
    }

    /// The ring's descriptor, for registrations (buffer rings).
    pub(crate) fn ring_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.ring)
    }

    /// The most SQEs one chain may have: the submission queue's size.
    pub(crate) fn max_chain(&self) -> usize {
        self.sq_entries
    }

    /// Pushes a chain of SQEs (their link flags already set) so that the
    /// kernel sees them as one chain: all in one publication of the queue
    /// tail, after making room for all of them, never split by a flush.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the chain is longer than the submission queue;
    /// nothing is pushed then.
    ///
    /// # Safety
    ///
    /// As for [`Driver::submit`], for every entry.
    pub(crate) unsafe fn push_chain(&mut self, entries: &[squeue::Entry]) -> io::Result<()> {
        if entries.len() > self.sq_entries {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a chain of {} linked SQEs does not fit in the submission queue of {} \
                     entries; the kernel would run it as two chains (build the runtime with \
                     a larger Builder::entries, or split the chain yourself)",
                    entries.len(),
                    self.sq_entries
                ),
            ));
        }
        loop {
            let mut sq = self.ring.submission();
            if sq.capacity() - sq.len() >= entries.len() {
                // SAFETY: forwarded from the caller; there is room for all
                // entries, and the tail is published once, when `sq` drops.
                let pushed = unsafe { sq.push_multiple(entries) };
                debug_assert!(pushed.is_ok(), "room was checked");
                return Ok(());
            }
            drop(sq);
            self.make_room();
        }
    }

    /// Stores a result the kernel never produced for a reserved slot (a
    /// chain that was never pushed), as if its CQE had arrived.
    pub(crate) fn complete_locally(&mut self, user_data: u64, result: i32) {
        let Driver {
            ops,
            released,
            to_wake,
            ..
        } = self;
        if let CqeOutcome::Release(Some(parked)) = ops.complete(user_data, result, 0, to_wake) {
            released.push(parked);
        }
    }

    /// Closes, without blocking, descriptors that operations created for
    /// futures that are gone.
    fn close_orphans(&mut self) {
        let mut fds = std::mem::take(&mut self.orphan_scratch);
        self.ops.take_orphan_fds(&mut fds);
        for orphan in fds.drain(..) {
            let entry = match orphan {
                Orphan::Fd(fd) => opcode::Close::new(types::Fd(fd)).build(),
                Orphan::Direct(slot) => opcode::Close::new(types::Fixed(slot)).build(),
            };
            self.push_close(entry);
        }
        self.orphan_scratch = fds;
    }

    /// Pushes a close nobody waits for (`CLOSE_UD`, no slot; with
    /// `SKIP_SUCCESS` where the kernel has it).
    fn push_close(&mut self, entry: squeue::Entry) {
        let mut entry = entry.user_data(CLOSE_UD);
        if self.skip_success {
            entry = entry.flags(squeue::Flags::SKIP_SUCCESS);
        }
        // SAFETY: a close refers to no memory.
        unsafe { self.push(&entry) };
    }

    /// Frees a slot of the direct-descriptor table whose last handle is
    /// gone: a slot the kernel allocated gets an `IORING_OP_CLOSE`; a slot
    /// of the part this runtime hands out itself is emptied at once
    /// (`IORING_REGISTER_FILES_UPDATE` with -1), so that it can be handed
    /// out again immediately. Operations still in flight on a file keep
    /// their own reference to it either way.
    pub(crate) fn close_direct(&mut self, slot: u32) {
        let own = self.direct_table.as_ref().is_some_and(|t| t.is_own(slot));
        if !own {
            self.direct_live = self.direct_live.saturating_sub(1);
            self.push_close(opcode::Close::new(types::Fixed(slot)).build());
            return;
        }
        // On failure the slot stays taken (its file open) until the ring
        // goes: a leak of one slot, never a wrong file.
        if let Ok(1) = self.ring.submitter().register_files_update(slot, &[-1]) {
            if let Some(t) = self.direct_table.as_mut() {
                t.free.push(slot);
            }
        }
    }

    /// Installs `fd`'s file in a free slot of the part of the table this
    /// runtime hands out itself (`IORING_REGISTER_FILES_UPDATE`, a plain
    /// system call: nothing is left in flight) and returns the slot.
    /// `ENFILE` when that part is full.
    pub(crate) fn install_direct(&mut self, fd: RawFd) -> io::Result<u32> {
        self.direct_table()?;
        let table = self.direct_table.as_mut().expect("registered above");
        let Some(slot) = table.free.pop() else {
            return Err(io::Error::from_raw_os_error(libc::ENFILE));
        };
        match self.ring.submitter().register_files_update(slot, &[fd]) {
            Ok(1) => Ok(slot),
            Ok(n) => {
                table.free.push(slot);
                Err(io::Error::other(format!(
                    "IORING_REGISTER_FILES_UPDATE installed {n} descriptors, expected 1"
                )))
            }
            Err(e) => {
                table.free.push(slot);
                Err(e)
            }
        }
    }

    /// Whether an accept into the kernel-allocated part of the table can
    /// work now: the kernel supports it, the table is registered (now, if
    /// it was not), and not every slot of that part is held. `Ok(false)`
    /// when the kernel lacks it or the part is full; errors from
    /// registering the table otherwise.
    pub(crate) fn direct_slot_free(&mut self) -> io::Result<bool> {
        if !self.features.direct_descriptors {
            return Ok(false);
        }
        match self.direct_table() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Unsupported => return Ok(false),
            Err(e) => return Err(e),
        };
        let table = self.direct_table.as_ref().expect("registered above");
        Ok(self.direct_live < table.kernel_slots)
    }

    /// Slots of the table held by handles, both parts.
    pub(crate) fn direct_held(&self) -> u32 {
        let own = self
            .direct_table
            .as_ref()
            .map_or(0, |t| t.own_slots - t.free.len() as u32);
        self.direct_live + own
    }

    /// Registers the (empty, sparse) direct-descriptor table if it is not
    /// yet, and returns its number of slots.
    ///
    /// The table is split: the kernel allocates slots for accepts (and
    /// other `IORING_FILE_INDEX_ALLOC` operations) from the first part
    /// (`IORING_REGISTER_FILE_ALLOC_RANGE`); the last eighth (rounded up)
    /// is handed out by the runtime itself, for descriptors installed with
    /// `SharedFd::register`, with a plain system call.
    pub(crate) fn direct_table(&mut self) -> io::Result<u32> {
        if let Some(t) = &self.direct_table {
            return Ok(t.kernel_slots + t.own_slots);
        }
        let limit = nofile_soft_limit();
        let n = match self.direct_wanted {
            Some(n) => n,
            None => DEFAULT_DIRECT.min(limit.max(1)),
        };
        match self.ring.submitter().register_files_sparse(n) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "registering a direct-descriptor table of {n} slots failed: the kernel \
                         caps it at the RLIMIT_NOFILE soft limit ({limit}); raise the limit \
                         (ulimit -n) or ask for fewer with Builder::direct_descriptors ({e})"
                    ),
                ))
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "this kernel cannot register a sparse direct-descriptor table \
                         (IORING_RSRC_REGISTER_SPARSE, Linux 5.19+): {e}"
                    ),
                ))
            }
            Err(e) => return Err(e),
        }
        let own_slots = n.div_ceil(8);
        let kernel_slots = n - own_slots;
        if let Err(e) = set_alloc_range(self.ring_fd(), 0, kernel_slots) {
            // Without the split, the kernel could allocate the slots
            // handed out here: give the table up and report.
            let _ = self.ring.submitter().unregister_files();
            return Err(e);
        }
        self.direct_table = Some(DirectTable {
            kernel_slots,
            own_slots,
            free: (kernel_slots..n).rev().collect(),
        });
        Ok(n)
    }

    /// Asks the kernel to cancel the operation with this `user_data`.
    pub(crate) fn cancel(&mut self, user_data: u64) {
        let mut entry = opcode::AsyncCancel::new(user_data)
            .build()
            .user_data(CANCEL_UD);
        if self.skip_success {
            entry = entry.flags(squeue::Flags::SKIP_SUCCESS);
        }
        // SAFETY: a cancel refers to no memory.
        unsafe { self.push(&entry) };
    }

    /// The future owning `key` is gone: park its resources until the last
    /// CQE (and cancel the op), or free at once if the kernel is done.
    pub(crate) fn ignore(&mut self, key: usize, resources: Parked) {
        match self.ops.ignore(key, resources) {
            Ok(done) => self.released.push(done),
            Err(_) if self.abandoned => {
                // The kernel may still use this memory and we gave up
                // waiting for it: leak it.
                self.ops.leak_parked();
            }
            Err(user_data) => self.cancel(user_data),
        }
        self.close_orphans();
    }

    /// Asks the kernel to stop the operation behind `key` (a multishot
    /// stream being cancelled); repeated if it goes on posting CQEs.
    pub(crate) fn request_cancel(&mut self, key: usize) {
        if let Some(user_data) = self.ops.request_cancel(key) {
            self.cancel(user_data);
        }
    }

    /// Resources whose operations are over, to be dropped by the caller
    /// after releasing its borrow of the driver.
    pub(crate) fn take_released(&mut self) -> Vec<Parked> {
        std::mem::take(&mut self.released)
    }

    /// Moves the wakers of completed operations into `out` (an empty
    /// vector whose allocation is swapped in, so nothing is allocated).
    pub(crate) fn swap_wakers(&mut self, out: &mut Vec<Waker>) {
        std::mem::swap(&mut self.to_wake, out);
    }

    /// Pushes one SQE, flushing a full submission queue first.
    ///
    /// # Safety
    ///
    /// As for [`Driver::submit`].
    unsafe fn push(&mut self, entry: &squeue::Entry) {
        loop {
            // SAFETY: the caller keeps the entry's memory valid until its
            // last CQE.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return;
            }
            self.make_room();
        }
    }

    /// The submission queue is full: hand it to the kernel.
    fn make_room(&mut self) {
        if self.sqpoll {
            // The SQ thread consumes entries on its own; wake it if it went
            // to sleep (`submit` only enters the kernel if it did), then
            // wait until it has made room.
            let _ = self.ring.submitter().submit();
            let _ = self.ring.submitter().squeue_wait();
            return;
        }
        match self.ring.submitter().submit() {
            Ok(_) => {}
            Err(e) if is_transient(&e) => {}
            Err(e) => panic!("io_uring_enter failed while flushing a full submission queue: {e}"),
        }
        // Make room in the completion queue too, or the kernel may refuse
        // further submissions (EBUSY) while it holds overflowed CQEs.
        self.reap();
    }

    /// One turn: submit what is queued and reap what completed. With `park`,
    /// wait for at least one completion, at most `timeout` (if any).
    pub(crate) fn turn(&mut self, park: bool, timeout: Option<Duration>) {
        let res = if park {
            match timeout {
                Some(t) => {
                    let ts = types::Timespec::from(t);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.ring.submitter().submit_with_args(1, &args)
                }
                None => self.ring.submitter().submit_and_wait(1),
            }
        } else if self.needs_enter() {
            self.ring.submitter().submit()
        } else {
            Ok(0)
        };
        match res {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) if is_transient(&e) => {}
            Err(e) => panic!("io_uring_enter failed: {e}"),
        }
        self.reap();
        if !self.wake_armed && !self.shutting_down {
            self.arm_wake();
        }
    }

    /// Whether a non-waiting turn needs the syscall: something to submit,
    /// deferred completion work, or overflowed CQEs to flush.
    fn needs_enter(&mut self) -> bool {
        let sq = self.ring.submission();
        !sq.is_empty() || sq.taskrun() || sq.cq_overflow()
    }

    /// Moves every available CQE into its slot.
    fn reap(&mut self) {
        let mut recancel = std::mem::take(&mut self.recancel_scratch);
        loop {
            let Driver {
                ring,
                ops,
                released,
                to_wake,
                wake_armed,
                reaped,
                ..
            } = self;
            for cqe in ring.completion() {
                *reaped += 1;
                let user_data = cqe.user_data();
                if user_data & INTERNAL != 0 {
                    match user_data {
                        WAKE_UD => *wake_armed = false,
                        // A cancel that did not succeed: its target had
                        // already completed (ENOENT) or is completing
                        // (EALREADY). A multishot target that goes on is
                        // cancelled again when its next CQE arrives.
                        CANCEL_UD => {}
                        // Closing an orphaned descriptor failed: nothing
                        // more can be done about it.
                        CLOSE_UD => {}
                        // A link timeout fired (-ETIME; its op got
                        // -ECANCELED) or was disarmed (-ECANCELED) because
                        // its op finished first.
                        LINK_TIMEOUT_UD => {}
                        _ => debug_assert!(false, "unknown internal user_data {user_data:#x}"),
                    }
                    continue;
                }
                match ops.complete(user_data, cqe.result(), cqe.flags(), to_wake) {
                    CqeOutcome::Release(Some(parked)) => released.push(parked),
                    CqeOutcome::Recancel => recancel.push(user_data),
                    CqeOutcome::Release(None) | CqeOutcome::Stored => {}
                }
            }
            // CQEs the kernel kept aside on overflow come back with an enter
            // that asks for events.
            if !self.ring.submission().cq_overflow() {
                break;
            }
            match self.ring.submitter().submit() {
                Ok(_) => {}
                Err(e) if is_transient(&e) => {}
                Err(e) => {
                    panic!("io_uring_enter failed while flushing overflowed completions: {e}")
                }
            }
        }
        for user_data in recancel.drain(..) {
            self.cancel(user_data);
        }
        self.recancel_scratch = recancel;
        self.close_orphans();
    }

    fn arm_wake(&mut self) {
        let buf: *mut u64 = &mut *self.wake_buf;
        let entry = opcode::Read::new(types::Fd(self.wake_fd), buf.cast(), 8)
            .build()
            .user_data(WAKE_UD);
        // SAFETY: wake_buf is boxed and only freed after the read's CQE
        // (shutdown waits for it) or leaked.
        unsafe { self.push(&entry) };
        self.wake_armed = true;
    }

    /// Cancels everything in flight and waits, up to `grace`, for the last
    /// CQE of each operation. Whatever did not finish is leaked.
    pub(crate) fn shutdown(&mut self, grace: Duration) {
        self.shutting_down = true;
        let deadline = Instant::now() + grace;
        loop {
            let pending = self.ops.unfinished();
            if pending.is_empty() && !self.wake_armed {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                self.abandon();
                break;
            }
            for user_data in pending {
                self.cancel(user_data);
            }
            if self.wake_armed {
                self.cancel(WAKE_UD);
            }
            // Wait for completions for a while, then cancel again whatever
            // is left (a cancel can miss an op that was being issued).
            let round_end = (now + Duration::from_millis(100)).min(deadline);
            loop {
                let left = round_end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                self.turn(true, Some(left));
                if self.ops.unfinished().is_empty() && !self.wake_armed {
                    break;
                }
            }
        }
        // Closes of descriptors that the last completions created for
        // nobody have no slot to wait for: hand them to the kernel now
        // (a close completes when it is submitted).
        self.close_orphans();
        let _ = self.ring.submitter().submit();
    }

    /// Whether the runtime is shutting down: descriptors whose last handle
    /// goes now are closed directly, as nothing more will be submitted.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Wakers collected during shutdown belong to dropped tasks.
    pub(crate) fn clear_wakers(&mut self) {
        self.to_wake.clear();
    }

    fn abandon(&mut self) {
        self.abandoned = true;
        self.ops.leak_parked();
        if self.wake_armed {
            // The eventfd read may still complete into this buffer.
            std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new(0)));
        }
    }

    /// The number of live op slots.
    pub(crate) fn in_flight(&self) -> usize {
        self.ops.len()
    }
}

/// The direct-descriptor table: slots `0..kernel_slots` are allocated by
/// the kernel, `kernel_slots..kernel_slots + own_slots` by the runtime.
struct DirectTable {
    kernel_slots: u32,
    own_slots: u32,
    /// Free slots of the runtime's part (popped from the end: lowest first).
    free: Vec<u32>,
}

impl DirectTable {
    /// Whether `slot` is in the part the runtime hands out.
    fn is_own(&self, slot: u32) -> bool {
        slot >= self.kernel_slots
    }
}

/// `IORING_REGISTER_FILE_ALLOC_RANGE`: the kernel allocates direct
/// descriptors only from `off..off + len`.
fn set_alloc_range(ring_fd: RawFd, off: u32, len: u32) -> io::Result<()> {
    let mut range = sys::FileIndexRange { off, len, resv: 0 };
    // SAFETY: the kernel reads the struct during the call and keeps no
    // pointer to it.
    unsafe { sys::io_uring_register(ring_fd, sys::register_op::FILE_ALLOC_RANGE, &mut range, 0) }
        .map(drop)
}

/// Direct-descriptor slots registered by default (see
/// `Builder::direct_descriptors`).
const DEFAULT_DIRECT: u32 = 4096;

/// The `RLIMIT_NOFILE` soft limit, which also caps the direct-descriptor
/// table.
fn nofile_soft_limit() -> u32 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return DEFAULT_DIRECT;
    }
    rl.rlim_cur.min(u64::from(u32::MAX)) as u32
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN)
    )
}
