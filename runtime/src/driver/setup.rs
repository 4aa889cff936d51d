//! Setting up the ring: the settings it is made with, the best setup
//! flags the kernel accepts (falling back quietly), and errors a user can
//! act on when io_uring cannot be set up.

use std::error::Error;
use std::fmt;
use std::io;
use std::time::Duration;

use io_uring::IoUring;

use crate::driver::probe::Features;
use crate::driver::sys::setup;

/// An io_uring setup failure with a message saying what to do about it; its
/// [`source`](Error::source) is the kernel's own error with its errno.
#[derive(Debug)]
struct SetupError {
    message: String,
    source: io::Error,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for SetupError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

/// Turns the error of `io_uring_setup(2)` into one that names its likely
/// cause and the remedy, keeping the `ErrorKind`.
pub(crate) fn setup_error(err: io::Error) -> io::Error {
    let (kind, message) = match err.raw_os_error() {
        Some(libc::EPERM) => (
            io::ErrorKind::PermissionDenied,
            "io_uring is refused on this system (io_uring_setup returned EPERM). \
             Either the sysctl kernel.io_uring_disabled forbids it (set it to 0, \
             or to 1 and add this user to the group in kernel.io_uring_group), \
             or a seccomp filter blocks it, as the default seccomp profile of \
             Docker, containerd and other container runtimes does (run the \
             container with a seccomp profile that allows io_uring_setup, \
             io_uring_enter and io_uring_register)"
                .to_string(),
        ),
        Some(libc::ENOSYS) => (
            io::ErrorKind::Unsupported,
            "io_uring is not available (io_uring_setup returned ENOSYS): this \
             runtime needs Linux 5.11 or newer (6.1 or newer recommended) built \
             with CONFIG_IO_URING=y"
                .to_string(),
        ),
        Some(libc::ENOMEM) => (
            io::ErrorKind::OutOfMemory,
            "the kernel could not allocate the io_uring rings (ENOMEM). Ring \
             memory is charged to RLIMIT_MEMLOCK, per user, for processes \
             without CAP_IPC_LOCK (measured on Linux 6.18): raise the \
             locked-memory limit (`ulimit -l`, or memlock in \
             /etc/security/limits.conf or the container's settings), or ask \
             for fewer entries with Builder::entries"
                .to_string(),
        ),
        _ => (err.kind(), format!("io_uring_setup failed: {err}")),
    };
    io::Error::new(
        kind,
        SetupError {
            message,
            source: err,
        },
    )
}

/// An error for a kernel whose io_uring lacks a feature this runtime needs.
pub(crate) fn missing_feature(feature: &str, version: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "this kernel's io_uring lacks {feature}, which this runtime needs: \
             upgrade to Linux {version} or newer"
        ),
    )
}

/// The settings a ring is made with (checked by `Builder::build`).
#[derive(Debug, Clone)]
pub(crate) struct RingConfig {
    pub(crate) entries: u32,
    pub(crate) cq_entries: u32,
    pub(crate) sqpoll: Option<Duration>,
    pub(crate) sqpoll_cpu: Option<u32>,
    /// Size of the direct-descriptor table; `None`: the default, capped
    /// by `RLIMIT_NOFILE` when the table is registered.
    pub(crate) direct_descriptors: Option<u32>,
    /// Test hook: edits the probed features (turning facilities off).
    pub(crate) mask_features: Option<fn(&mut Features)>,
    /// Which driver to run (see `driver/kind.rs`).
    pub(crate) driver: crate::driver::kind::DriverChoice,
}

/// Builds the ring with the best setup flags the kernel accepts, falling
/// back quietly; returns the flags that were accepted.
pub(crate) fn build_ring(config: &RingConfig) -> io::Result<(IoUring, u32)> {
    let mut attempts: Vec<u32> = Vec::new();
    let base = setup::SUBMIT_ALL | setup::TASKRUN_FLAG;
    if config.sqpoll.is_none() {
        attempts.push(base | setup::SINGLE_ISSUER | setup::DEFER_TASKRUN);
    }
    attempts.push(base | setup::SINGLE_ISSUER | setup::COOP_TASKRUN);
    attempts.push(base | setup::COOP_TASKRUN);
    attempts.push(setup::SUBMIT_ALL);
    attempts.push(0);

    let mut last_err = None;
    for flags in attempts {
        let mut b = IoUring::builder();
        b.setup_cqsize(config.cq_entries);
        if flags & setup::SUBMIT_ALL != 0 {
            b.setup_submit_all();
        }
        if flags & setup::TASKRUN_FLAG != 0 {
            b.setup_taskrun_flag();
        }
        if flags & setup::SINGLE_ISSUER != 0 {
            b.setup_single_issuer();
        }
        if flags & setup::DEFER_TASKRUN != 0 {
            b.setup_defer_taskrun();
        }
        if flags & setup::COOP_TASKRUN != 0 {
            b.setup_coop_taskrun();
        }
        if let Some(idle) = config.sqpoll {
            b.setup_sqpoll(idle.as_millis().min(u32::MAX as u128) as u32);
            if let Some(cpu) = config.sqpoll_cpu {
                b.setup_sqpoll_cpu(cpu);
            }
        }
        match b.build(config.entries) {
            Ok(ring) => return Ok((ring, flags)),
            // EINVAL: a flag this kernel does not know; try fewer.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last_err = Some(e),
            Err(e) => return Err(setup_error(e)),
        }
    }
    Err(setup_error(last_err.unwrap_or_else(|| {
        io::Error::from_raw_os_error(libc::EINVAL)
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_sources_are_kept() {
        for (errno, kind, needle) in [
            (
                libc::EPERM,
                io::ErrorKind::PermissionDenied,
                "kernel.io_uring_disabled",
            ),
            (libc::ENOSYS, io::ErrorKind::Unsupported, "Linux 5.11"),
            (libc::ENOMEM, io::ErrorKind::OutOfMemory, "ulimit -l"),
            (
                libc::EINVAL,
                io::ErrorKind::InvalidInput,
                "io_uring_setup failed",
            ),
        ] {
            let e = setup_error(io::Error::from_raw_os_error(errno));
            assert_eq!(e.kind(), kind);
            assert!(e.to_string().contains(needle), "{e}");
            let src = e.get_ref().unwrap().source().unwrap();
            let src = src.downcast_ref::<io::Error>().unwrap();
            assert_eq!(src.raw_os_error(), Some(errno));
        }
    }
}
