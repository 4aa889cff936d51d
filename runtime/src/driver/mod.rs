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
use std::os::fd::{AsRawFd, RawFd};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use lifecycle::{
    Completion, CqeOutcome, Creates, Lifecycle, Orphan, Parked, CANCEL_UD, CLOSE_UD, INTERNAL,
    LINK_TIMEOUT_UD, MSG_SEND_UD, MSG_WAKE_UD, WAKE_UD,
};
use probe::Features;
use resources::{BufGroups, Buffers, Files, GroupKind};
use setup::{build_ring, missing_feature, RingConfig};

pub(crate) mod epoll;
pub(crate) mod kind;
pub(crate) mod lifecycle;
pub(crate) mod probe;
pub(crate) mod resources;
pub(crate) mod setup;
pub(crate) mod sys;

pub(crate) struct Driver {
    ring: IoUring,
    ops: Lifecycle,
    /// Resources of ignored operations whose last CQE arrived; dropped by
    /// the run loop outside any borrow of the driver.
    released: Vec<Parked>,
    /// Wakers of tasks whose operations completed; woken by the run loop
    /// outside any borrow of the driver.
    to_wake: Vec<Waker>,
    /// Scratch space for descriptors to close.
    orphan_scratch: Vec<Orphan>,
    /// The direct-descriptor table (registered on first use).
    files: Files,
    /// The registered buffer table (registered on first use).
    buffers: Buffers,
    /// Provided-buffer group ids of this ring.
    groups: BufGroups,
    /// The test hook of `Builder::mask_features`.
    mask_features: Option<fn(&mut Features)>,
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
    abandoned: bool,
    /// Setup flags the kernel accepted, for diagnostics.
    setup_flags: u32,
    /// The number of the current batch of MSG_RING sends (wrapping, 16 bits).
    msg_batch: u64,
    /// MSG_RING sends that failed: (batch, index in that batch).
    msg_failures: Vec<(u64, usize)>,
    /// MSG_RING wake-ups sent to other rings, and received from them.
    msg_sent: u64,
    msg_received: u64,
    /// Operations submitted (awaited, multishot and detached), for metrics.
    submitted: u64,
    /// CQEs reaped (including the runtime's internal ones), for metrics.
    reaped: u64,
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
            files: Files::new(config.direct_descriptors),
            buffers: Buffers::new(),
            groups: BufGroups::new(),
            mask_features: config.mask_features,
            recancel_scratch: Vec::new(),
            wake_fd,
            wake_buf: Box::new(0),
            wake_armed: false,
            shutting_down: false,
            abandoned: false,
            setup_flags,
            msg_batch: 0,
            msg_failures: Vec::new(),
            msg_sent: 0,
            msg_received: 0,
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

    /// Whether this ring can send MSG_RING wake-ups: the kernel has the
    /// opcode and `IOSQE_CQE_SKIP_SUCCESS` (so that success costs no CQE
    /// here), and no SQPOLL thread reads the SQEs after the submit returns
    /// (the targets' descriptors are only held open until then).
    pub(crate) fn msg_ring_usable(&self) -> bool {
        self.features.msg_ring && self.skip_success && !self.sqpoll
    }

    /// Whether other rings can wake this one with MSG_RING.
    pub(crate) fn msg_ring_receivable(&self) -> bool {
        self.features.msg_ring
    }

    /// This ring's descriptor.
    pub(crate) fn ring_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    /// Pushes one `IORING_OP_MSG_RING` per target ring descriptor, a new
    /// batch, whose number it returns: they go to the kernel with the next
    /// submission, and the descriptors must stay open until the submission
    /// queue has been consumed ([`sq_is_empty`](Self::sq_is_empty)).
    /// Failures are reported by [`take_msg_failures`](Self::take_msg_failures)
    /// with the batch number and the target's index in `targets`.
    pub(crate) fn push_msg_rings(&mut self, targets: impl Iterator<Item = RawFd>) -> u64 {
        self.msg_batch = (self.msg_batch + 1) & 0xffff;
        for (index, fd) in targets.enumerate() {
            let user_data = MSG_SEND_UD | (self.msg_batch << 32) | index as u64;
            let entry = opcode::MsgRingData::new(types::Fd(fd), 0, MSG_WAKE_UD, None)
                .build()
                .user_data(user_data)
                .flags(squeue::Flags::SKIP_SUCCESS);
            // SAFETY: a MSG_RING data message refers to no memory; the
            // target descriptor is held open by the caller until the
            // kernel has taken the SQE (the scheduler keeps each batch
            // until the submission queue is empty; the kernel then holds
            // its own reference to the target ring's file).
            unsafe { self.push(&entry) };
            self.msg_sent += 1;
        }
        self.msg_batch
    }

    /// Moves the failed MSG_RING sends (batch, index) into `out`.
    pub(crate) fn take_msg_failures(&mut self, out: &mut Vec<(u64, usize)>) {
        out.append(&mut self.msg_failures);
    }

    /// Whether every pushed SQE has been handed to the kernel (a transient
    /// `EBUSY`/`EAGAIN` from `io_uring_enter` leaves them queued).
    pub(crate) fn sq_is_empty(&mut self) -> bool {
        self.ring.submission().is_empty()
    }

    /// MSG_RING wake-ups sent and received.
    pub(crate) fn msg_counters(&self) -> (u64, u64) {
        (self.msg_sent, self.msg_received)
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
        // Most turns have none: skip the swap and the drain.
        if !self.ops.has_orphan_fds() {
            return;
        }
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
    /// gone (see [`Files::release`]).
    pub(crate) fn close_direct(&mut self, slot: u32) {
        if let Some(close) = self.files.release(&self.ring, slot) {
            self.push_close(close);
        }
    }

    /// Installs `fd`'s file in a free slot of the part of the
    /// direct-descriptor table this runtime hands out itself (a plain
    /// system call: nothing is left in flight) and returns the slot.
    /// `ENFILE` when that part is full.
    pub(crate) fn install_direct(&mut self, fd: RawFd) -> io::Result<u32> {
        self.files.install(&self.ring, fd)
    }

    /// A handle took a direct-descriptor slot the kernel allocated.
    pub(crate) fn claim_direct(&mut self) {
        self.files.claim();
    }

    /// Whether an accept into the kernel-allocated part of the table can
    /// work now: the kernel supports it, the table is registered (now, if
    /// it was not), and not every slot of that part is held. `Ok(false)`
    /// when the kernel lacks it or the part is full; errors from
    /// registering the table otherwise.
    pub(crate) fn direct_slot_free(&mut self) -> io::Result<bool> {
        self.files
            .slot_free(&self.ring, self.features.direct_descriptors)
    }

    /// Slots of the direct-descriptor table held by handles, both parts.
    pub(crate) fn direct_held(&self) -> u32 {
        self.files.held()
    }

    /// Registers the (empty, sparse) direct-descriptor table if it is not
    /// yet, and returns its number of slots (see [`Files`]).
    pub(crate) fn direct_table(&mut self) -> io::Result<u32> {
        self.files.ensure(&self.ring)
    }

    /// Takes `count` contiguous slots of the registered buffer table
    /// (registering it first if need be) and returns the first.
    pub(crate) fn alloc_buffer_slots(&mut self, count: u32) -> io::Result<u32> {
        self.buffers.alloc(&self.ring, count)
    }

    /// Puts `iovecs` into the buffer table from slot `offset`; returns how
    /// many slots the kernel took.
    ///
    /// # Safety
    ///
    /// The memory the iovecs name stays allocated until the slots are
    /// emptied again and no operation naming them is in flight.
    pub(crate) unsafe fn update_buffer_slots(
        &self,
        offset: u32,
        iovecs: &[libc::iovec],
    ) -> io::Result<u32> {
        // SAFETY: forwarded from the caller.
        unsafe { Buffers::update(&self.ring, offset, iovecs) }
    }

    /// Empties `count` slots of the buffer table from `offset` and, if that
    /// worked, makes them free again.
    pub(crate) fn free_buffer_slots(&mut self, offset: u32, count: u32) -> io::Result<()> {
        self.clear_buffer_slots(offset, count)?;
        self.release_buffer_slots(offset, count);
        Ok(())
    }

    /// Empties `count` slots of the buffer table from `offset`.
    pub(crate) fn clear_buffer_slots(&self, offset: u32, count: u32) -> io::Result<()> {
        Buffers::clear(&self.ring, offset, count)
    }

    /// Makes `count` (empty) slots from `offset` free again.
    pub(crate) fn release_buffer_slots(&mut self, offset: u32, count: u32) {
        self.buffers.release(offset, count);
    }

    /// Registers a provided-buffer ring (see [`BufGroups::register`]).
    ///
    /// # Safety
    ///
    /// `ring_addr` is page-aligned memory of `entries` ring entries that
    /// stays valid until the group is unregistered.
    pub(crate) unsafe fn register_buf_ring(
        &mut self,
        ring_addr: u64,
        entries: u32,
        wanted: Option<u16>,
        kind: GroupKind,
    ) -> io::Result<u16> {
        // SAFETY: forwarded from the caller.
        unsafe {
            self.groups
                .register(&self.ring, ring_addr, entries, wanted, kind)
        }
    }

    /// Unregisters provided-buffer ring group `bgid`.
    pub(crate) fn unregister_buf_ring(&self, bgid: u16) -> io::Result<()> {
        BufGroups::unregister(&self.ring, bgid)
    }

    /// The kernel's head of provided-buffer ring group `bgid`.
    pub(crate) fn buf_ring_head(&self, bgid: u16) -> io::Result<u16> {
        BufGroups::kernel_head(&self.ring, bgid)
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
                msg_failures,
                msg_received,
                ..
            } = self;
            for cqe in ring.completion() {
                *reaped += 1;
                let user_data = cqe.user_data();
                if user_data & MSG_SEND_UD == MSG_SEND_UD {
                    // Only failures post a CQE (SKIP_SUCCESS).
                    if cqe.result() < 0 {
                        let batch = (user_data >> 32) & 0xffff;
                        msg_failures.push((batch, (user_data & 0xffff_ffff) as usize));
                    }
                    continue;
                }
                if user_data & INTERNAL != 0 {
                    match user_data {
                        WAKE_UD => *wake_armed = false,
                        // Another runtime woke us: the run loop looks at the
                        // remote queue after every turn.
                        MSG_WAKE_UD => *msg_received += 1,
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

    /// Whether shutdown gave up on some operations: their memory is
    /// leaked, and whatever else the kernel may still use must be too.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.abandoned
    }

    /// The `IORING_SETUP_*` flags the kernel accepted.
    pub(crate) fn setup_flags(&self) -> u32 {
        self.setup_flags
    }

    /// Operations submitted and CQEs reaped so far.
    pub(crate) fn counters(&self) -> (u64, u64) {
        (self.submitted, self.reaped)
    }

    /// Polls a single-shot operation (see [`Lifecycle::poll_single`]).
    pub(crate) fn poll_single(&mut self, key: usize, cx: &mut Context<'_>) -> Poll<Completion> {
        self.ops.poll_single(key, cx)
    }

    /// Polls a multishot operation (see [`Lifecycle::poll_multi`]).
    pub(crate) fn poll_multi(
        &mut self,
        key: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(Completion, bool)>> {
        self.ops.poll_multi(key, cx)
    }

    /// Whether the future of operation `key` was dropped.
    pub(crate) fn is_ignored(&self, key: usize) -> bool {
        self.ops.is_ignored(key)
    }

    /// The number of live op slots.
    pub(crate) fn in_flight(&self) -> usize {
        self.ops.len()
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN)
    )
}
