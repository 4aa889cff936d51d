//! Back-off after accept errors that mean "out of resources" (EMFILE,
//! ENFILE, ENOBUFS, ENOMEM): the pending connection stays in the backlog,
//! so retrying at once would fail at once, in a busy loop. The next accept
//! waits a little first, longer each time, until one succeeds.

use std::cell::Cell;
use std::io;
use std::time::Duration;

const FIRST: Duration = Duration::from_millis(1);
const MAX: Duration = Duration::from_millis(200);

#[derive(Debug, Default)]
pub(crate) struct Backoff {
    next: Cell<Option<Duration>>,
}

impl Backoff {
    /// Waits if the previous accept ran out of resources.
    pub(crate) async fn wait(&self) {
        if let Some(d) = self.next.get() {
            runtime::time::sleep(d).await;
        }
    }

    /// The delay to wait before the next accept, if any.
    pub(crate) fn pending(&self) -> Option<Duration> {
        self.next.get()
    }

    /// Records the outcome of an accept.
    pub(crate) fn record<T>(&self, res: &io::Result<T>) {
        match res {
            Ok(_) => self.next.set(None),
            Err(e) if is_resource_error(e) => {
                let d = self.next.get().map_or(FIRST, |d| (d * 2).min(MAX));
                self.next.set(Some(d));
            }
            Err(_) => {}
        }
    }
}

/// Whether an accept error means the process or system is out of a
/// resource (rather than a problem with one connection).
pub(crate) fn is_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}
