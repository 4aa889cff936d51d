//! The error of a read whose kernel deadline (`IORING_OP_LINK_TIMEOUT`)
//! fired: `read_timeout` on every stream type.

use std::error::Error;
use std::fmt;
use std::io;
use std::time::Duration;

/// `ErrorKind::TimedOut` with a message naming the deadline, such as "read
/// timed out after 5ms (IORING_OP_LINK_TIMEOUT)". An `io::Error` with a
/// message has no `raw_os_error()`; the kernel's `ETIMEDOUT` is its
/// [`source`](Error::source), an `io::Error` that has it.
pub(crate) fn read_timed_out(after: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        ReadTimedOut {
            after,
            errno: io::Error::from_raw_os_error(libc::ETIMEDOUT),
        },
    )
}

/// The payload of [`read_timed_out`].
#[derive(Debug)]
struct ReadTimedOut {
    after: Duration,
    errno: io::Error,
}

impl fmt::Display for ReadTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read timed out after {:?} (IORING_OP_LINK_TIMEOUT)",
            self.after
        )
    }
}

impl Error for ReadTimedOut {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.errno)
    }
}
