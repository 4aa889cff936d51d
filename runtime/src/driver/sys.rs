//! The kernel interface that the io-uring crate does not cover: constants
//! and `#[repr(C)]` structs from the kernel's UAPI header
//! (`linux/io_uring.h`), the one `io_uring_register(2)` wrapper of the
//! runtime, and the reading of a raw SQE's fields.
//!
//! Everything the io-uring crate offers (ring setup, the registrations of
//! files, buffer tables and buffer rings) is used through the crate; this
//! file holds only what it lacks, in one place.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue};

use crate::driver::lifecycle::Creates;

/// `IORING_SETUP_*` flags.
pub(crate) mod setup {
    /// `IORING_SETUP_SQPOLL`.
    pub(crate) const SQPOLL: u32 = 1 << 1;
    /// `IORING_SETUP_SUBMIT_ALL`.
    pub(crate) const SUBMIT_ALL: u32 = 1 << 7;
    /// `IORING_SETUP_COOP_TASKRUN`.
    pub(crate) const COOP_TASKRUN: u32 = 1 << 8;
    /// `IORING_SETUP_TASKRUN_FLAG`.
    pub(crate) const TASKRUN_FLAG: u32 = 1 << 9;
    /// `IORING_SETUP_SINGLE_ISSUER`.
    pub(crate) const SINGLE_ISSUER: u32 = 1 << 12;
    /// `IORING_SETUP_DEFER_TASKRUN`.
    pub(crate) const DEFER_TASKRUN: u32 = 1 << 13;
}

/// `IORING_FEAT_*` bits the runtime reads.
pub(crate) mod feat {
    /// `IORING_FEAT_CQE_SKIP`.
    pub(crate) const CQE_SKIP: u32 = 1 << 11;
    /// `IORING_FEAT_RECVSEND_BUNDLE`.
    pub(crate) const RECVSEND_BUNDLE: u32 = 1 << 14;
}

/// The largest submission queue the kernel allows (`IORING_MAX_ENTRIES`).
pub(crate) const MAX_ENTRIES: u32 = 32768;
/// The largest completion queue the kernel allows (`IORING_MAX_CQ_ENTRIES`).
pub(crate) const MAX_CQ_ENTRIES: u32 = 2 * MAX_ENTRIES;
/// The largest direct-descriptor table the kernel accepts
/// (`IORING_MAX_FIXED_FILES`).
pub(crate) const MAX_FIXED_FILES: u32 = 1 << 20;

/// `io_uring_register(2)` opcodes the crate has no call for.
pub(crate) mod register_op {
    /// `IORING_REGISTER_BUFFERS_UPDATE` (the crate's call drops the count
    /// of slots the kernel took, which a partial update needs).
    pub(crate) const BUFFERS_UPDATE: libc::c_uint = 16;
    /// `IORING_REGISTER_FILE_ALLOC_RANGE` (Linux 6.0).
    pub(crate) const FILE_ALLOC_RANGE: libc::c_uint = 25;
    /// `IORING_REGISTER_PBUF_STATUS` (Linux 6.8).
    pub(crate) const PBUF_STATUS: libc::c_uint = 26;
}

/// `IORING_FILE_INDEX_ALLOC`: "the kernel picks the slot".
pub(crate) const FILE_INDEX_ALLOC: u32 = !0;

/// The most entries a provided-buffer ring may have (the kernel's limit).
pub(crate) const MAX_BUF_RING_ENTRIES: u32 = 1 << 15;

/// `struct io_uring_buf`: one entry of a provided-buffer ring. The `resv`
/// field of entry 0 is the ring's tail.
#[repr(C)]
pub(crate) struct BufRingEntry {
    pub(crate) addr: u64,
    pub(crate) len: u32,
    pub(crate) bid: u16,
    pub(crate) resv: u16,
}

/// `struct io_uring_buf_status`.
#[repr(C)]
pub(crate) struct BufStatus {
    pub(crate) buf_group: u32,
    pub(crate) head: u32,
    pub(crate) resv: [u32; 8],
}

/// `struct io_uring_rsrc_update2`.
#[repr(C)]
pub(crate) struct RsrcUpdate2 {
    pub(crate) offset: u32,
    pub(crate) resv: u32,
    pub(crate) data: u64,
    pub(crate) tags: u64,
    pub(crate) nr: u32,
    pub(crate) resv2: u32,
}

/// `struct io_uring_file_index_range`.
#[repr(C)]
pub(crate) struct FileIndexRange {
    pub(crate) off: u32,
    pub(crate) len: u32,
    pub(crate) resv: u64,
}

/// `io_uring_register(ring_fd, opcode, arg, nr_args)`: the runtime's one
/// wrapper of the system call, for what the io-uring crate lacks. Returns
/// the non-negative result.
///
/// # Safety
///
/// `arg` points at what `opcode` expects (`nr_args` of them), and any
/// memory it names stays valid as long as the kernel may use it.
pub(crate) unsafe fn io_uring_register<T>(
    ring_fd: RawFd,
    opcode: libc::c_uint,
    arg: *mut T,
    nr_args: u32,
) -> io::Result<u32> {
    // SAFETY: the caller's promise.
    let ret = unsafe { libc::syscall(libc::SYS_io_uring_register, ring_fd, opcode, arg, nr_args) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as u32)
    }
}

/// `struct io_uring_sqe`, as far as the runtime reads it: 64 bytes, with
/// `file_index` (a `u32` in a union with `splice_fd_in`) at byte 44.
#[repr(C)]
struct RawSqe {
    head: [u8; 44],
    file_index: u32,
    tail: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<RawSqe>() == 64);
const _: () = assert!(std::mem::size_of::<squeue::Entry>() == 64);

/// What a successful result of a **raw** SQE is (a typed operation says it
/// itself, see `Operation::creates`): a new ordinary descriptor (accept,
/// openat, openat2, socket with no `file_index`), a direct-descriptor slot
/// the kernel picked (`file_index` = `IORING_FILE_INDEX_ALLOC`), or nothing
/// to close (other ops, and a slot chosen by the caller, whose result is 0
/// and which stays the caller's).
pub(crate) fn creates(entry: &squeue::Entry) -> Creates {
    let code = entry.get_opcode() as u8;
    let creates = code == opcode::Accept::CODE
        || code == opcode::AcceptMulti::CODE
        || code == opcode::OpenAt::CODE
        || code == opcode::OpenAt2::CODE
        || code == opcode::Socket::CODE;
    if !creates {
        return Creates::Nothing;
    }
    // SAFETY: `squeue::Entry` is a `#[repr(C)]` newtype of the 64-byte
    // `io_uring_sqe`, and `RawSqe` is a `#[repr(C)]` struct of the same size
    // made of plain integers, valid for any bytes; the reference is only
    // read, and its alignment (4) is no more than the entry's (8).
    let raw = unsafe { &*(entry as *const squeue::Entry).cast::<RawSqe>() };
    match raw.file_index {
        0 => Creates::Fd,
        FILE_INDEX_ALLOC => Creates::Direct,
        _ => Creates::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::types::{DestinationSlot, Fd};

    #[test]
    fn raw_sqes_are_classified_by_opcode_and_file_index() {
        let plain = opcode::Accept::new(Fd(3), std::ptr::null_mut(), std::ptr::null_mut()).build();
        assert_eq!(creates(&plain), Creates::Fd);
        let direct = opcode::Accept::new(Fd(3), std::ptr::null_mut(), std::ptr::null_mut())
            .file_index(Some(DestinationSlot::auto_target()))
            .build();
        assert_eq!(creates(&direct), Creates::Direct);
        let chosen = opcode::Accept::new(Fd(3), std::ptr::null_mut(), std::ptr::null_mut())
            .file_index(Some(DestinationSlot::try_from_slot_target(5).unwrap()))
            .build();
        assert_eq!(creates(&chosen), Creates::Nothing);
        assert_eq!(creates(&opcode::Nop::new().build()), Creates::Nothing);
        let multi = opcode::AcceptMulti::new(Fd(3))
            .allocate_file_index(true)
            .build();
        assert_eq!(creates(&multi), Creates::Direct);
    }
}
