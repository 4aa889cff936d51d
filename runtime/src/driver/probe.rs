//! What the kernel under this runtime can do: probed once per runtime
//! (`IORING_REGISTER_PROBE` for the opcodes, the ring's `IORING_FEAT_*`
//! bits and the setup flags it accepted, when the ring is created; one
//! trial registration of a provided-buffer ring the first time anyone asks,
//! as it costs about as much as a seventh of the ring's setup).
//!
//! Code that can use a facility but does not need it asks [`features`] and
//! degrades to the plain path when it is absent:
//!
//! ```
//! # runtime::block_on(async {
//! let f = runtime::features();
//! let how = if f.recv_bundle {
//!     "bundled receives"
//! } else if f.multishot_recv && f.buffer_rings {
//!     "multishot receives into a buffer ring"
//! } else {
//!     "one read per buffer"
//! };
//! println!("receiving with {how}");
//! # });
//! ```

use std::fmt;

use io_uring::{opcode, IoUring, Probe};

use crate::driver::kind::DriverKind;
use crate::driver::sys::{feat, setup};

/// The facilities of the io_uring a runtime runs on, probed once when the
/// runtime was built. Cheap to copy.
///
/// Setup facilities (`sqpoll`, `defer_taskrun`, ...) say what **this ring
/// uses**; the others say what the kernel **supports**.
///
/// ```
/// # runtime::block_on(async {
/// let f = runtime::features();
/// // Every kernel this runtime starts on (5.11+) has linked timeouts.
/// assert!(f.link_timeout);
/// assert!(f.supports(runtime::op::io_uring::opcode::LinkTimeout::CODE));
/// # });
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Features {
    /// The driver the runtime runs on. On [`DriverKind::Epoll`] every
    /// io_uring facility below is `false` (and no opcode is supported):
    /// code that picks a facility when it exists takes the plain path.
    pub driver: DriverKind,
    /// The ring has a kernel thread polling its submission queue
    /// (`IORING_SETUP_SQPOLL`, asked for with `Builder::sqpoll`).
    pub sqpoll: bool,
    /// Completion work runs only when this thread enters the kernel
    /// (`IORING_SETUP_DEFER_TASKRUN`, 6.1+).
    pub defer_taskrun: bool,
    /// Only this thread submits (`IORING_SETUP_SINGLE_ISSUER`, 6.0+).
    pub single_issuer: bool,
    /// Completion work does not interrupt the thread
    /// (`IORING_SETUP_COOP_TASKRUN`, 5.19+).
    pub coop_taskrun: bool,
    /// `IOSQE_CQE_SKIP_SUCCESS` is honoured (`IORING_FEAT_CQE_SKIP`, 5.17+):
    /// a successful op with that flag posts no CQE.
    pub skip_success: bool,
    /// Provided-buffer rings can be registered (`IORING_REGISTER_PBUF_RING`,
    /// 5.19+); checked by registering and unregistering a one-entry ring.
    pub buffer_rings: bool,
    /// `IORING_OP_RECV` takes `IORING_RECV_MULTISHOT` (6.0+; inferred from
    /// `IORING_OP_SEND_ZC`, which came with the same release, since the
    /// probe lists opcodes, not flags).
    pub multishot_recv: bool,
    /// Receives and sends can take several provided buffers at once
    /// (`IORING_FEAT_RECVSEND_BUNDLE`, 6.10+).
    pub recv_bundle: bool,
    /// Zero-copy sends (`IORING_OP_SEND_ZC`, 6.0+).
    pub send_zc: bool,
    /// Direct descriptors as the runtime uses them: a sparse registered
    /// file table and accepts/updates that let the kernel pick the slot
    /// (`IORING_FILE_INDEX_ALLOC`), both 5.19+ (inferred from
    /// `IORING_OP_SOCKET`, which came with the same release).
    pub direct_descriptors: bool,
    /// Per-op deadlines as a linked `IORING_OP_LINK_TIMEOUT` (5.5+), used by
    /// [`crate::op::Op::submit_with_timeout`].
    pub link_timeout: bool,
    /// One ring can post a CQE into another (`IORING_OP_MSG_RING`, 5.18+):
    /// the runtime uses it to wake another runtime's ring (a
    /// [`Pool`](crate::Pool) worker waking another) unless told otherwise
    /// with [`Builder::cross_wake`](crate::Builder::cross_wake).
    pub msg_ring: bool,
    /// The `IORING_SETUP_*` flags the kernel accepted for this ring (the
    /// same as `Metrics::setup_flags`).
    pub setup_flags: u32,
    /// The `IORING_FEAT_*` bits the kernel reported at setup.
    pub feature_bits: u32,
    /// One bit per opcode the kernel supports.
    ops: [u64; 4],
}

impl Features {
    /// Probes `ring`, which was set up with `setup_flags`. Never fails: a
    /// probe the kernel refuses reports no opcode as supported.
    /// `buffer_rings` is left false, for [`try_buffer_ring`] to fill in.
    pub(crate) fn probe(ring: &IoUring, setup_flags: u32) -> Features {
        let params = ring.params();
        let mut setup_flags = setup_flags;
        if params.is_setup_sqpoll() {
            setup_flags |= setup::SQPOLL;
        }
        let mut ops = [0u64; 4];
        let mut probe = Probe::new();
        if ring.submitter().register_probe(&mut probe).is_ok() {
            for code in 0..=u8::MAX {
                if probe.is_supported(code) {
                    ops[usize::from(code / 64)] |= 1 << (code % 64);
                }
            }
        }
        let supports = |code: u8| ops[usize::from(code / 64)] & (1 << (code % 64)) != 0;
        let feature_bits = feature_bits(params);
        Features {
            driver: DriverKind::IoUring,
            sqpoll: setup_flags & setup::SQPOLL != 0,
            defer_taskrun: setup_flags & setup::DEFER_TASKRUN != 0,
            single_issuer: setup_flags & setup::SINGLE_ISSUER != 0,
            coop_taskrun: setup_flags & setup::COOP_TASKRUN != 0,
            skip_success: feature_bits & feat::CQE_SKIP != 0,
            buffer_rings: false,
            multishot_recv: supports(opcode::SendZc::CODE),
            recv_bundle: feature_bits & feat::RECVSEND_BUNDLE != 0,
            send_zc: supports(opcode::SendZc::CODE),
            direct_descriptors: supports(opcode::Socket::CODE),
            link_timeout: supports(opcode::LinkTimeout::CODE),
            msg_ring: supports(opcode::MsgRingData::CODE),
            setup_flags,
            feature_bits,
            ops,
        }
    }

    /// The features of a runtime on the epoll driver: no io_uring facility.
    pub(crate) fn readiness_only() -> Features {
        Features {
            driver: DriverKind::Epoll,
            sqpoll: false,
            defer_taskrun: false,
            single_issuer: false,
            coop_taskrun: false,
            skip_success: false,
            buffer_rings: false,
            multishot_recv: false,
            recv_bundle: false,
            send_zc: false,
            direct_descriptors: false,
            link_timeout: false,
            msg_ring: false,
            setup_flags: 0,
            feature_bits: 0,
            ops: [0; 4],
        }
    }

    /// Whether the kernel supports this opcode (`io_uring::opcode::*::CODE`).
    ///
    /// ```
    /// use runtime::op::io_uring::opcode;
    /// # runtime::block_on(async {
    /// let f = runtime::features();
    /// assert!(f.supports(opcode::Read::CODE));
    /// assert!(!f.supports(250)); // no such opcode (yet)
    /// # });
    /// ```
    pub fn supports(&self, opcode: u8) -> bool {
        self.ops[usize::from(opcode / 64)] & (1 << (opcode % 64)) != 0
    }

    /// The number of opcodes the kernel supports.
    ///
    /// ```
    /// # runtime::block_on(async {
    /// assert!(runtime::features().opcode_count() > 40); // 5.11 had 40
    /// # });
    /// ```
    pub fn opcode_count(&self) -> u32 {
        self.ops.iter().map(|w| w.count_ones()).sum()
    }
}

/// The `IORING_FEAT_*` word, rebuilt from the accessors the io-uring crate
/// offers (it does not expose the raw field).
fn feature_bits(p: &io_uring::Parameters) -> u32 {
    let known = [
        (p.is_feature_single_mmap(), 0),
        (p.is_feature_nodrop(), 1),
        (p.is_feature_submit_stable(), 2),
        (p.is_feature_rw_cur_pos(), 3),
        (p.is_feature_cur_personality(), 4),
        (p.is_feature_fast_poll(), 5),
        (p.is_feature_poll_32bits(), 6),
        (p.is_feature_sqpoll_nonfixed(), 7),
        (p.is_feature_ext_arg(), 8),
        (p.is_feature_native_workers(), 9),
        (p.is_feature_resource_tagging(), 10),
        (p.is_feature_skip_cqe_on_success(), 11),
        (p.is_feature_linked_file(), 12),
        (p.is_feature_recvsend_bundle(), 14),
        (p.is_feature_min_timeout(), 15),
        (p.is_feature_no_iowait(), 17),
    ];
    known
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, bit)| acc | (1 << bit))
}

/// Registers and unregisters a one-entry provided-buffer ring, in group
/// `u16::MAX` (buffer-group ids are handed out from 0 upwards, and nothing
/// else is registered yet when the runtime probes).
pub(crate) fn try_buffer_ring(ring: &IoUring) -> bool {
    const BGID: u16 = u16::MAX;
    // SAFETY: an anonymous private mapping of one page; checked below.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return false;
    }
    // SAFETY: `page` is a page-aligned, zeroed mapping larger than one
    // ring entry; it is unregistered before it is unmapped.
    let ok = unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(page as u64, 1, BGID, 0)
    }
    .is_ok();
    if ok {
        let _ = ring.submitter().unregister_buf_ring(BGID);
    }
    // SAFETY: the mapping made above, no longer registered with the kernel.
    unsafe { libc::munmap(page, 4096) };
    ok
}

impl fmt::Debug for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Features")
            .field("driver", &self.driver)
            .field("sqpoll", &self.sqpoll)
            .field("defer_taskrun", &self.defer_taskrun)
            .field("single_issuer", &self.single_issuer)
            .field("coop_taskrun", &self.coop_taskrun)
            .field("skip_success", &self.skip_success)
            .field("buffer_rings", &self.buffer_rings)
            .field("multishot_recv", &self.multishot_recv)
            .field("recv_bundle", &self.recv_bundle)
            .field("send_zc", &self.send_zc)
            .field("direct_descriptors", &self.direct_descriptors)
            .field("link_timeout", &self.link_timeout)
            .field("msg_ring", &self.msg_ring)
            .field("setup_flags", &format_args!("{:#x}", self.setup_flags))
            .field("feature_bits", &format_args!("{:#x}", self.feature_bits))
            .field("opcodes", &self.opcode_count())
            .finish()
    }
}
