//! File and path operations: `IORING_OP_OPENAT`, `STATX`, `FSYNC`,
//! `CLOSE`, `UNLINKAT`, `MKDIRAT` and `RENAMEAT`.
//!
//! Paths are `CString`s owned by the struct (their bytes live in a heap
//! allocation that does not move with it); relative paths start from the
//! current directory (`AT_FDCWD`, always valid) unless a directory
//! descriptor is given, which the struct keeps open with a [`SharedFd`]
//! clone. All of them may block in a readiness driver: they run on its
//! blocking pool ([`Readiness::Blocking`]).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{OwnedFd, RawFd};

use io_uring::{opcode, types};

use crate::driver::lifecycle::{Completion, Creates};
use crate::op::fd::{claim_created, SharedFd};
use crate::op::operation::{syscall_result, Operation, Readiness};
use crate::op::submit::Entry;

/// `AT_FDCWD` as an SQE target.
const CWD: types::Fd = types::Fd(libc::AT_FDCWD);

/// The result of a system call that returns 0 or -1.
fn zero_or_errno(ret: libc::c_int) -> io::Result<u32> {
    syscall_result(ret as isize)
}

/// `IORING_OP_OPENAT`: opens a path (relative paths from the current
/// directory); the new descriptor is the output. If the future is dropped
/// and the open still succeeds, the runtime closes the descriptor.
#[derive(Debug)]
pub struct OpenAt {
    path: CString,
    flags: i32,
    mode: u32,
}

impl OpenAt {
    /// An open of `path` with `flags` (`O_*`; `O_CLOEXEC` is added) and
    /// `mode` (for a file it creates).
    pub fn new(path: CString, flags: i32, mode: u32) -> OpenAt {
        OpenAt {
            path,
            flags: flags | libc::O_CLOEXEC,
            mode,
        }
    }
}

// SAFETY: the only pointer in the SQE is the path, in the CString's heap
// allocation owned by the struct; the directory is AT_FDCWD. A descriptor
// opened after the future is gone is closed by the runtime (`creates`).
unsafe impl Operation for OpenAt {
    type Output = io::Result<SharedFd>;

    fn sqe(&mut self) -> Entry {
        opcode::OpenAt::new(CWD, self.path.as_ptr())
            .flags(self.flags)
            .mode(self.mode)
            .build()
    }

    fn creates(&self) -> Creates {
        Creates::Fd
    }

    fn complete(self, completion: Completion) -> Self::Output {
        Ok(claim_created(completion.result()?, false))
    }

    fn readiness(&self) -> Readiness {
        Readiness::Blocking
    }

    fn perform(&mut self) -> io::Result<u32> {
        // SAFETY: the path is a NUL-terminated string owned by the struct.
        let ret = unsafe {
            libc::openat(
                libc::AT_FDCWD,
                self.path.as_ptr(),
                self.flags,
                self.mode as libc::c_uint,
            )
        };
        syscall_result(ret as isize)
    }
}

/// The fields statx is asked for: everything `fs::Metadata` reports.
const STATX_MASK: u32 = libc::STATX_BASIC_STATS | libc::STATX_BTIME;

/// The empty path that, with `AT_EMPTY_PATH`, makes statx describe the
/// descriptor itself.
const EMPTY: &CStr = c"";

/// `IORING_OP_STATX`: the metadata of a path (relative to the current
/// directory), or of an open descriptor.
#[derive(Debug)]
pub struct Statx {
    fd: Option<SharedFd>,
    path: CString,
    flags: i32,
    out: Box<libc::statx>,
}

impl Statx {
    /// The metadata of `path`, following a final symbolic link unless
    /// `flags` has `AT_SYMLINK_NOFOLLOW`.
    pub fn path(path: CString, flags: i32) -> Statx {
        Statx {
            fd: None,
            path,
            flags,
            // SAFETY: `statx` is a plain C struct of integers, for which all
            // zero bytes are a valid value.
            out: Box::new(unsafe { std::mem::zeroed() }),
        }
    }

    /// The metadata of the open descriptor `fd` (`AT_EMPTY_PATH`).
    pub fn fd(fd: &SharedFd) -> Statx {
        Statx {
            fd: Some(fd.clone()),
            flags: libc::AT_EMPTY_PATH,
            ..Statx::path(CString::default(), 0)
        }
    }

    fn dirfd(&self) -> RawFd {
        self.fd.as_ref().map_or(libc::AT_FDCWD, SharedFd::raw)
    }

    fn path_ptr(&self) -> *const libc::c_char {
        if self.path.as_bytes().is_empty() {
            EMPTY.as_ptr()
        } else {
            self.path.as_ptr()
        }
    }
}

// SAFETY: the SQE points at the path's bytes (the CString's heap allocation,
// or the 'static empty string) and at the boxed output struct, both owned by
// the struct, as is the SharedFd clone that keeps the descriptor open (or
// AT_FDCWD, always valid).
unsafe impl Operation for Statx {
    /// The kernel's `struct statx` (boxed).
    type Output = io::Result<Box<libc::statx>>;

    fn sqe(&mut self) -> Entry {
        let (dirfd, path) = (types::Fd(self.dirfd()), self.path_ptr());
        let out: *mut libc::statx = &mut *self.out;
        opcode::Statx::new(dirfd, path, out.cast::<types::statx>())
            .flags(self.flags)
            .mask(STATX_MASK)
            .build()
    }

    fn complete(self, completion: Completion) -> Self::Output {
        completion.result()?;
        Ok(self.out)
    }

    fn readiness(&self) -> Readiness {
        Readiness::Blocking
    }

    fn perform(&mut self) -> io::Result<u32> {
        let (dirfd, path) = (self.dirfd(), self.path_ptr());
        // SAFETY: the path and the output struct are owned by the struct.
        let ret = unsafe { libc::statx(dirfd, path, self.flags, STATX_MASK, &mut *self.out) };
        zero_or_errno(ret)
    }
}

/// `IORING_OP_FSYNC`: flushes a file to its device (`fsync(2)`), or only
/// its data (`fdatasync(2)`).
#[derive(Debug)]
pub struct Fsync {
    fd: SharedFd,
    datasync: bool,
}

impl Fsync {
    /// A flush of `fd`: its data only (`IORING_FSYNC_DATASYNC`) with
    /// `datasync`, data and metadata otherwise.
    pub fn new(fd: &SharedFd, datasync: bool) -> Fsync {
        Fsync {
            fd: fd.clone(),
            datasync,
        }
    }
}

// SAFETY: the SQE points at no memory; the SharedFd clone keeps the
// descriptor open.
unsafe impl Operation for Fsync {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> Entry {
        let flags = if self.datasync {
            types::FsyncFlags::DATASYNC
        } else {
            types::FsyncFlags::empty()
        };
        crate::with_target!(self.fd, |t| opcode::Fsync::new(t).flags(flags).build())
    }

    fn complete(self, completion: Completion) -> Self::Output {
        completion.result().map(drop)
    }

    fn readiness(&self) -> Readiness {
        Readiness::Blocking
    }

    fn perform(&mut self) -> io::Result<u32> {
        // SAFETY: plain system call on a descriptor the struct keeps open.
        let ret = unsafe {
            if self.datasync {
                libc::fdatasync(self.fd.raw())
            } else {
                libc::fsync(self.fd.raw())
            }
        };
        zero_or_errno(ret)
    }
}

/// `IORING_OP_CLOSE` of a descriptor this struct owns (the runtime's
/// [`SharedFd::close`] uses it once the last handle is gone).
#[derive(Debug)]
pub struct Close {
    fd: Option<OwnedFd>,
    /// The SQE was built: from then on the kernel closes the descriptor.
    submitted: bool,
}

impl Close {
    /// A close of `fd`, whose result the output reports.
    pub fn new(fd: OwnedFd) -> Close {
        Close {
            fd: Some(fd),
            submitted: false,
        }
    }
}

// SAFETY: the SQE points at no memory. The descriptor is owned by the
// struct: nobody else uses its number, and once the SQE is built it is
// forgotten (not closed again): when the close completes, or, if the future
// is dropped, when the runtime drops the value after the close's CQE (the
// number may be reused by then; see `Drop`).
unsafe impl Operation for Close {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> Entry {
        self.submitted = true;
        let fd = self.fd.as_ref().map_or(-1, std::os::fd::AsRawFd::as_raw_fd);
        opcode::Close::new(types::Fd(fd)).build()
    }

    fn complete(mut self, completion: Completion) -> Self::Output {
        if let Some(fd) = self.fd.take() {
            // The kernel closed it (even when it reports an error).
            std::mem::forget(fd);
        }
        completion.result().map(drop)
    }

    fn readiness(&self) -> Readiness {
        Readiness::Blocking
    }

    fn perform(&mut self) -> io::Result<u32> {
        match self.fd.take() {
            Some(fd) => {
                let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
                // SAFETY: we owned the descriptor; it is closed once.
                zero_or_errno(unsafe { libc::close(raw) })
            }
            None => Err(io::Error::from_raw_os_error(libc::EBADF)),
        }
    }
}

impl Drop for Close {
    fn drop(&mut self) {
        // Submitted and its future dropped: the kernel closed it (the
        // runtime drops this after the CQE); never close twice. Never
        // submitted: the `OwnedFd` closes it here.
        if self.submitted {
            if let Some(fd) = self.fd.take() {
                std::mem::forget(fd);
            }
        }
    }
}

/// `IORING_OP_UNLINKAT`: removes a file, or with `dir` an empty directory.
#[derive(Debug)]
pub struct UnlinkAt {
    path: CString,
    flags: i32,
}

impl UnlinkAt {
    /// Removes the file (or symbolic link) at `path`.
    pub fn file(path: CString) -> UnlinkAt {
        UnlinkAt { path, flags: 0 }
    }

    /// Removes the empty directory at `path` (`AT_REMOVEDIR`).
    pub fn dir(path: CString) -> UnlinkAt {
        UnlinkAt {
            path,
            flags: libc::AT_REMOVEDIR,
        }
    }
}

// SAFETY: the only pointer in the SQE is the path, in the CString's heap
// allocation owned by the struct; the directory is AT_FDCWD.
unsafe impl Operation for UnlinkAt {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> Entry {
        opcode::UnlinkAt::new(CWD, self.path.as_ptr())
            .flags(self.flags)
            .build()
    }

    fn complete(self, completion: Completion) -> Self::Output {
        completion.result().map(drop)
    }

    fn readiness(&self) -> Readiness {
        Readiness::Blocking
    }

    fn perform(&mut self) -> io::Result<u32> {
        // SAFETY: the path is owned by the struct.
        zero_or_errno(unsafe { libc::unlinkat(libc::AT_FDCWD, self.path.as_ptr(), self.flags) })
    }
}

/// `IORING_OP_MKDIRAT` (Linux 5.15): creates a directory.
#[derive(Debug)]
pub struct MkDirAt {
    path: CString,
    mode: u32,
}

impl MkDirAt {
    /// Creates the directory `path` with `mode` (before the umask).
    pub fn new(path: CString, mode: u32) -> MkDirAt {
        MkDirAt { path, mode }
    }
}

// SAFETY: the only pointer in the SQE is the path, in the CString's heap
// allocation owned by the struct; the directory is AT_FDCWD.
unsafe impl Operation for MkDirAt {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> Entry {
        opcode::MkDirAt::new(CWD, self.path.as_ptr())
            .mode(self.mode)
            .build()
    }

    fn complete(self, completion: Completion) -> Self::Output {
        completion.result().map(drop)
    }

    fn readiness(&self) -> Readiness {
        Readiness::Blocking
    }

    fn perform(&mut self) -> io::Result<u32> {
        // SAFETY: the path is owned by the struct.
        let ret = unsafe {
            libc::mkdirat(
                libc::AT_FDCWD,
                self.path.as_ptr(),
                self.mode as libc::mode_t,
            )
        };
        zero_or_errno(ret)
    }
}

/// `IORING_OP_RENAMEAT`: renames a path, replacing the target if it exists
/// (like `rename(2)`).
#[derive(Debug)]
pub struct RenameAt {
    from: CString,
    to: CString,
}

impl RenameAt {
    /// Renames `from` to `to`.
    pub fn new(from: CString, to: CString) -> RenameAt {
        RenameAt { from, to }
    }
}

// SAFETY: both path pointers point into the CStrings' heap allocations,
// owned by the struct; both directories are AT_FDCWD.
unsafe impl Operation for RenameAt {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> Entry {
        opcode::RenameAt::new(CWD, self.from.as_ptr(), CWD, self.to.as_ptr()).build()
    }

    fn complete(self, completion: Completion) -> Self::Output {
        completion.result().map(drop)
    }

    fn readiness(&self) -> Readiness {
        Readiness::Blocking
    }

    fn perform(&mut self) -> io::Result<u32> {
        // SAFETY: both paths are owned by the struct.
        let ret = unsafe {
            libc::renameat(
                libc::AT_FDCWD,
                self.from.as_ptr(),
                libc::AT_FDCWD,
                self.to.as_ptr(),
            )
        };
        zero_or_errno(ret)
    }
}
