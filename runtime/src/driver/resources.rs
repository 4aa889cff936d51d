//! Resources registered with one ring, owned by its driver: the
//! direct-descriptor (file) table, the registered buffer table and the
//! provided-buffer group ids.
//!
//! Each is per ring, so each lives in the ring's `Driver` (no thread-local
//! registry): a second runtime on the same thread has its own, and all of
//! it goes with the ring. Registrations use the io-uring crate's calls
//! where it has them, `sys::io_uring_register` for the rest.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{opcode, squeue, types, IoUring};

use crate::driver::sys;

/// Direct-descriptor slots registered by default (see
/// `Builder::direct_descriptors`).
const DEFAULT_DIRECT: u32 = 4096;

/// The ring's table of direct descriptors ("registered files"), registered
/// on first use.
///
/// The table is split: the kernel allocates slots for accepts (and other
/// `IORING_FILE_INDEX_ALLOC` operations) from the first part
/// (`IORING_REGISTER_FILE_ALLOC_RANGE`); the last eighth (rounded up) is
/// handed out by the runtime itself, for descriptors installed with
/// `SharedFd::register`, with a plain system call (nothing in flight, so no
/// slot is lost to a dropped future).
pub(crate) struct Files {
    table: Option<FileTable>,
    /// The size asked for with `Builder::direct_descriptors`.
    wanted: Option<u32>,
    /// Slots of the kernel-allocated part held by handles, for metrics and
    /// for accepts that fall back to ordinary descriptors when it is full.
    live: u32,
}

/// A registered table: slots `0..kernel_slots` are allocated by the
/// kernel, `kernel_slots..kernel_slots + own_slots` by the runtime.
struct FileTable {
    kernel_slots: u32,
    own_slots: u32,
    /// Free slots of the runtime's part (popped from the end: lowest first).
    free: Vec<u32>,
}

impl Files {
    pub(crate) fn new(wanted: Option<u32>) -> Files {
        Files {
            table: None,
            wanted,
            live: 0,
        }
    }

    /// Registers the (empty, sparse) table if it is not yet, and returns
    /// its number of slots.
    pub(crate) fn ensure(&mut self, ring: &IoUring) -> io::Result<u32> {
        if let Some(t) = &self.table {
            return Ok(t.kernel_slots + t.own_slots);
        }
        let limit = nofile_soft_limit();
        let n = match self.wanted {
            Some(n) => n,
            None => DEFAULT_DIRECT.min(limit.max(1)),
        };
        match ring.submitter().register_files_sparse(n) {
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
        if let Err(e) = set_alloc_range(ring.as_raw_fd(), 0, kernel_slots) {
            // Without the split, the kernel could allocate the slots handed
            // out here: give the table up and report.
            let _ = ring.submitter().unregister_files();
            return Err(e);
        }
        self.table = Some(FileTable {
            kernel_slots,
            own_slots,
            free: (kernel_slots..n).rev().collect(),
        });
        Ok(n)
    }

    /// Installs `fd`'s file in a free slot of the runtime's part
    /// (`IORING_REGISTER_FILES_UPDATE`) and returns the slot. `ENFILE` when
    /// that part is full.
    pub(crate) fn install(&mut self, ring: &IoUring, fd: RawFd) -> io::Result<u32> {
        self.ensure(ring)?;
        let table = self.table.as_mut().expect("registered above");
        let Some(slot) = table.free.pop() else {
            return Err(io::Error::from_raw_os_error(libc::ENFILE));
        };
        match ring.submitter().register_files_update(slot, &[fd]) {
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

    /// A handle took a slot the kernel allocated.
    pub(crate) fn claim(&mut self) {
        self.live += 1;
    }

    /// Frees a slot whose last handle is gone. A slot of the runtime's part
    /// is emptied at once (`IORING_REGISTER_FILES_UPDATE` with -1) so that
    /// it can be handed out again; for a slot the kernel allocated, the
    /// `IORING_OP_CLOSE` to push is returned. Operations still in flight on
    /// a file keep their own reference to it either way.
    pub(crate) fn release(&mut self, ring: &IoUring, slot: u32) -> Option<squeue::Entry> {
        let own = self.table.as_ref().is_some_and(|t| slot >= t.kernel_slots);
        if !own {
            self.live = self.live.saturating_sub(1);
            return Some(opcode::Close::new(types::Fixed(slot)).build());
        }
        // On failure the slot stays taken (its file open) until the ring
        // goes: a leak of one slot, never a wrong file.
        if let Ok(1) = ring.submitter().register_files_update(slot, &[-1]) {
            if let Some(t) = self.table.as_mut() {
                t.free.push(slot);
            }
        }
        None
    }

    /// Whether an accept into the kernel's part can work now: `supported`
    /// (the kernel has direct descriptors), the table is registered (now,
    /// if it was not), and not every slot of that part is held.
    pub(crate) fn slot_free(&mut self, ring: &IoUring, supported: bool) -> io::Result<bool> {
        if !supported {
            return Ok(false);
        }
        match self.ensure(ring) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Unsupported => return Ok(false),
            Err(e) => return Err(e),
        };
        let table = self.table.as_ref().expect("registered above");
        Ok(self.live < table.kernel_slots)
    }

    /// Slots held by handles, both parts.
    pub(crate) fn held(&self) -> u32 {
        let own = self
            .table
            .as_ref()
            .map_or(0, |t| t.own_slots - t.free.len() as u32);
        self.live + own
    }
}

/// `IORING_REGISTER_FILE_ALLOC_RANGE`: the kernel allocates direct
/// descriptors only from `off..off + len` (the io-uring crate lacks it).
fn set_alloc_range(ring_fd: RawFd, off: u32, len: u32) -> io::Result<()> {
    let mut range = sys::FileIndexRange { off, len, resv: 0 };
    // SAFETY: the kernel reads the struct during the call and keeps no
    // pointer to it.
    unsafe { sys::io_uring_register(ring_fd, sys::register_op::FILE_ALLOC_RANGE, &mut range, 0) }
        .map(drop)
}

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

/// The number of slots in each ring's registered buffer table: at most this
/// many buffers, over all pools of a runtime, are registered at once.
pub(crate) const BUFFER_SLOTS: u32 = 4096;

/// Whether the sparse buffer table exists in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TableState {
    Untried,
    Ready,
    /// The kernel refused it with this errno.
    Unavailable(i32),
}

/// The ring's registered buffer table (a sparse table of
/// [`BUFFER_SLOTS`], registered on first use): which slots are free.
#[derive(Debug)]
pub(crate) struct Buffers {
    state: TableState,
    /// Free slot ranges `(start, len)`, sorted by start, never adjacent.
    free: Vec<(u32, u32)>,
}

impl Buffers {
    pub(crate) fn new() -> Buffers {
        Buffers::with_slots(BUFFER_SLOTS)
    }

    fn with_slots(slots: u32) -> Buffers {
        Buffers {
            state: TableState::Untried,
            free: vec![(0, slots)],
        }
    }

    /// Registers the table if it is not yet, then takes the first free
    /// range of `count` slots and returns its first slot.
    pub(crate) fn alloc(&mut self, ring: &IoUring, count: u32) -> io::Result<u32> {
        if self.state == TableState::Untried {
            self.state = match ring.submitter().register_buffers_sparse(BUFFER_SLOTS) {
                Ok(()) => TableState::Ready,
                // Transient failures (memory, an interrupted call) are tried
                // again by the next pool; a refusal is remembered.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOMEM | libc::EAGAIN | libc::EINTR)
                    ) =>
                {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("the kernel could not make a registered buffer table: {e}"),
                    ));
                }
                Err(e) => TableState::Unavailable(e.raw_os_error().unwrap_or(libc::EINVAL)),
            };
        }
        if let TableState::Unavailable(errno) = self.state {
            let e = io::Error::from_raw_os_error(errno);
            return Err(io::Error::new(
                e.kind(),
                format!("the kernel refused a registered buffer table: {e}"),
            ));
        }
        self.take(count).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("no {count} contiguous free slots in the registered buffer table"),
            )
        })
    }

    /// Takes the first free range of `count` slots.
    fn take(&mut self, count: u32) -> Option<u32> {
        if count == 0 {
            return None;
        }
        let i = self.free.iter().position(|&(_, len)| len >= count)?;
        let (start, len) = self.free[i];
        if len == count {
            self.free.remove(i);
        } else {
            self.free[i] = (start + count, len - count);
        }
        Some(start)
    }

    /// Gives back the range `start..start + count`, merging neighbours.
    pub(crate) fn release(&mut self, start: u32, count: u32) {
        let i = self.free.partition_point(|&(s, _)| s < start);
        self.free.insert(i, (start, count));
        // Merge with the next range, then with the previous one.
        if i + 1 < self.free.len() && self.free[i].0 + self.free[i].1 == self.free[i + 1].0 {
            self.free[i].1 += self.free[i + 1].1;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == self.free[i].0 {
            self.free[i - 1].1 += self.free[i].1;
            self.free.remove(i);
        }
    }

    /// Puts `iovecs` into the slots from `offset`
    /// (`IORING_REGISTER_BUFFERS_UPDATE`); returns how many the kernel took
    /// (it stops at the first it refuses, and fails only if that is the
    /// first). The io-uring crate's call drops that count, hence the raw
    /// call.
    ///
    /// # Safety
    ///
    /// The memory the iovecs name stays allocated until the slots are
    /// emptied again and no operation naming them is in flight.
    pub(crate) unsafe fn update(
        ring: &IoUring,
        offset: u32,
        iovecs: &[libc::iovec],
    ) -> io::Result<u32> {
        let mut arg = sys::RsrcUpdate2 {
            offset,
            resv: 0,
            data: iovecs.as_ptr() as u64,
            tags: 0,
            nr: iovecs.len() as u32,
            resv2: 0,
        };
        let size = std::mem::size_of::<sys::RsrcUpdate2>() as u32;
        // SAFETY: the update struct and the iovec array are live for the
        // call; the buffers they name are the caller's promise.
        unsafe {
            sys::io_uring_register(
                ring.as_raw_fd(),
                sys::register_op::BUFFERS_UPDATE,
                &mut arg,
                size,
            )
        }
    }

    /// Empties `count` slots from `offset`.
    pub(crate) fn clear(ring: &IoUring, offset: u32, count: u32) -> io::Result<()> {
        let empty = vec![
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            };
            count as usize
        ];
        // SAFETY: empty iovecs name no memory.
        let done = unsafe { Buffers::update(ring, offset, &empty) }?;
        if done == count {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "the kernel emptied {done} of {count} registered buffer slots"
            )))
        }
    }
}

/// Which kind of provided-buffer ring a group id is for: receive rings
/// take ids from 0 up, send rings from 0x8000 up, so the two rarely meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GroupKind {
    /// A `BufRing` (buffers the kernel fills).
    Receive,
    /// A `SendRing` (entries the kernel sends from).
    Send,
}

/// The ring's provided-buffer group ids: where the search for a free id
/// starts, per kind.
pub(crate) struct BufGroups {
    next: [u16; 2],
}

impl BufGroups {
    pub(crate) fn new() -> BufGroups {
        BufGroups { next: [0, 0x8000] }
    }

    /// Registers a provided-buffer ring (`IORING_REGISTER_PBUF_RING`) of
    /// `entries` entries at `ring_addr` under group `wanted`, or else under
    /// the first free id of `kind`, skipping ids this ring already uses
    /// (`EEXIST`); returns the group id.
    ///
    /// # Safety
    ///
    /// `ring_addr` is page-aligned memory of `entries` ring entries that
    /// stays valid until the group is unregistered.
    pub(crate) unsafe fn register(
        &mut self,
        ring: &IoUring,
        ring_addr: u64,
        entries: u32,
        wanted: Option<u16>,
        kind: GroupKind,
    ) -> io::Result<u16> {
        let entries = u16::try_from(entries).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a buffer ring has at most {} entries",
                    sys::MAX_BUF_RING_ENTRIES
                ),
            )
        })?;
        // SAFETY: the caller's promise covers the ring memory.
        let try_id = |bgid: u16| unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ring_addr, entries, bgid, 0)
        };
        if let Some(id) = wanted {
            return try_id(id).map(|()| id);
        }
        let next = &mut self.next[kind as usize];
        let start = *next;
        let mut id = start;
        loop {
            match try_id(id) {
                Ok(()) => {
                    *next = id.wrapping_add(1);
                    return Ok(id);
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    id = id.wrapping_add(1);
                    if id == start {
                        return Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            "every buffer group id is taken on this ring",
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Unregisters provided-buffer ring group `bgid`.
    pub(crate) fn unregister(ring: &IoUring, bgid: u16) -> io::Result<()> {
        ring.submitter().unregister_buf_ring(bgid)
    }

    /// The kernel's head of group `bgid` (`IORING_REGISTER_PBUF_STATUS`,
    /// Linux 6.8+; the io-uring crate lacks it).
    pub(crate) fn kernel_head(ring: &IoUring, bgid: u16) -> io::Result<u16> {
        let mut status = sys::BufStatus {
            buf_group: u32::from(bgid),
            head: 0,
            resv: [0; 8],
        };
        // SAFETY: the status struct is live and writable for the call.
        unsafe {
            sys::io_uring_register(
                ring.as_raw_fd(),
                sys::register_op::PBUF_STATUS,
                &mut status,
                1,
            )
        }?;
        Ok(status.head as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_ranges_are_first_fit_and_merge() {
        let mut t = Buffers::with_slots(10);
        assert_eq!(t.take(3), Some(0));
        assert_eq!(t.take(3), Some(3));
        assert_eq!(t.take(3), Some(6));
        assert_eq!(t.take(2), None);
        assert_eq!(t.take(0), None);
        t.release(3, 3);
        assert_eq!(t.take(4), None);
        t.release(0, 3);
        assert_eq!(t.free, vec![(0, 6), (9, 1)]);
        t.release(6, 3);
        assert_eq!(t.free, vec![(0, 10)]);
        assert_eq!(t.take(10), Some(0));
        assert!(t.free.is_empty());
    }
}
