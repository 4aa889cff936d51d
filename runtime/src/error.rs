//! Errors a user can act on when io_uring cannot be set up.

use std::error::Error;
use std::fmt;
use std::io;

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

/// An `InvalidInput` error for a Builder setting out of range.
pub(crate) fn invalid_setting(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
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
