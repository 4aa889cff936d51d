//! The `epoll(7)` server: one thread, nonblocking sockets, one readiness
//! loop, level-triggered.
//!
//! The listener and every connection are nonblocking and registered with
//! one epoll instance, each under its descriptor number. A connection is
//! registered for `EPOLLIN` while it waits for requests and switched
//! (`EPOLL_CTL_MOD`) to `EPOLLOUT` while answers are still waiting to be
//! written (it reads nothing more until they are out), then back. Every
//! round `epoll_wait` returns up to 1,024 ready descriptors; each ready
//! connection does one read or its pending writes
//! ([`bench::arch::NbConn::on_ready`]); a finished one is dropped, and
//! closing its descriptor removes it from the epoll set. A ready listener
//! accepts every pending connection.
//!
//! Level-triggered, not edge-triggered: a descriptor that still has bytes
//! (or room) after one read (or write) is simply reported again by the next
//! `epoll_wait`, so a connection does one read per round and no connection
//! can starve the others, and there is no "read until `EAGAIN`" rule whose
//! omission would hang a connection. The price is one `EPOLL_CTL_MOD` each
//! time a connection's answers do not fit the socket buffer (rare with
//! small answers) and, for the listener, at most one extra wake-up.
//!
//! Known limits: one thread, so one core at most; a slow handler would delay
//! every connection (ours only copies bytes). Unlike `poll`, the cost of a
//! round grows with the ready connections, not the open ones. When
//! accepting runs out of descriptors the loop sleeps 1 ms so that the
//! still-readable listener does not make it spin.
//!
//! ```text
//! cargo run --release -p bench --bin arch_epoll -- 127.0.0.1:9307
//! ```

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::Duration;

use bench::arch::{self, Interest, NbConn};

/// The most events one `epoll_wait` returns.
const MAX_EVENTS: usize = 1024;

fn main() -> ExitCode {
    let (_, listener) = match arch::start("arch_epoll", None) {
        Ok(started) => started,
        Err(code) => return code,
    };
    match run(listener) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arch_epoll: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The event loop; returns only on an error of epoll itself.
fn run(listener: std::net::TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    // SAFETY: epoll_create1 has no memory preconditions.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: epoll_create1 returned a new descriptor that nothing else owns.
    let epoll = unsafe { OwnedFd::from_raw_fd(epfd) };
    let listen_fd = listener.as_raw_fd();
    ctl(epfd, libc::EPOLL_CTL_ADD, listen_fd, Interest::Read)?;
    // Connections by descriptor number (descriptors are small integers).
    let mut conns: Vec<Option<(NbConn, Interest)>> = Vec::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
    loop {
        // SAFETY: `events` has room for MAX_EVENTS entries; `epoll` is open.
        let n = unsafe {
            libc::epoll_wait(
                epoll.as_raw_fd(),
                events.as_mut_ptr(),
                MAX_EVENTS as i32,
                -1,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // `n` is at most MAX_EVENTS, non-negative here.
        for ev in &events[..n as usize] {
            // The key is the descriptor number, set by `ctl`.
            let fd = ev.u64 as i32;
            if fd == listen_fd {
                accept_all(&listener, epfd, &mut conns);
                continue;
            }
            let Some(Some((conn, registered))) = conns.get_mut(fd as usize) else {
                continue;
            };
            match conn.on_ready() {
                // Closing the descriptor removes it from the epoll set.
                Interest::Done => conns[fd as usize] = None,
                interest if interest != *registered => {
                    *registered = interest;
                    if ctl(epfd, libc::EPOLL_CTL_MOD, fd, interest).is_err() {
                        conns[fd as usize] = None;
                    }
                }
                _ => {}
            }
        }
    }
}

/// Accepts every pending connection and registers it for reading.
fn accept_all(
    listener: &std::net::TcpListener,
    epfd: i32,
    conns: &mut Vec<Option<(NbConn, Interest)>>,
) {
    loop {
        match arch::accept_nonblocking(listener) {
            Ok(stream) => {
                let conn = NbConn::new(stream);
                let fd = conn.fd();
                if let Err(e) = ctl(epfd, libc::EPOLL_CTL_ADD, fd, Interest::Read) {
                    eprintln!("arch_epoll: cannot register a connection: {e}");
                    continue;
                }
                // Descriptors are non-negative.
                let slot = fd as usize;
                if conns.len() <= slot {
                    conns.resize_with(slot + 1, || None);
                }
                conns[slot] = Some((conn, Interest::Read));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                eprintln!("arch_epoll: accept failed: {e}");
                if arch::is_resource_error(&e) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                return;
            }
        }
    }
}

/// Adds or modifies `fd`'s registration: readable or writable, level-triggered,
/// keyed by the descriptor number.
fn ctl(epfd: i32, op: i32, fd: i32, interest: Interest) -> io::Result<()> {
    let events = match interest {
        Interest::Write => libc::EPOLLOUT,
        _ => libc::EPOLLIN,
    };
    let mut ev = libc::epoll_event {
        events: events as u32,
        u64: fd as u64,
    };
    // SAFETY: `ev` is a valid event for the call; the descriptors are open.
    if unsafe { libc::epoll_ctl(epfd, op, fd, &mut ev) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
