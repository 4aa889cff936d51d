//! The `poll(2)` server: one thread, nonblocking sockets, one readiness loop.
//!
//! The listener and every connection are nonblocking. The loop keeps one
//! `pollfd` array: entry 0 is the listener (`POLLIN`), then one entry per
//! connection, asking for `POLLIN` while the connection waits for requests
//! and for `POLLOUT` while answers are still waiting to be written (it reads
//! nothing more until they are out). Every round calls `poll` on the whole
//! array, lets each ready connection do one read or its pending writes
//! ([`bench::arch::NbConn::on_ready`]), drops the finished ones (swapping
//! the last entry into the hole), and finally accepts every pending
//! connection.
//!
//! Known limits: `poll` is O(n) per round in the number of open
//! connections, in both directions: the kernel checks (and registers a wait
//! on) every descriptor of the array on each call, and the loop scans every
//! entry for `revents`. With 1,000 mostly idle connections most of that work
//! is wasted; `epoll` (see `arch_epoll`) removes it. One thread: one core at
//! most. When accepting runs out of descriptors the loop sleeps 1 ms so that
//! the still-readable listener does not make it spin.
//!
//! ```text
//! cargo run --release -p bench --bin arch_poll -- 127.0.0.1:9306
//! ```

use std::io;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Duration;

use bench::arch::{self, Interest, NbConn};

fn main() -> ExitCode {
    let (_, listener) = match arch::start("arch_poll", None) {
        Ok(started) => started,
        Err(code) => return code,
    };
    if let Err(e) = listener.set_nonblocking(true) {
        eprintln!("arch_poll: cannot make the listener nonblocking: {e}");
        return ExitCode::FAILURE;
    }
    // `fds[0]` is the listener; `fds[i + 1]` belongs to `conns[i]`.
    let mut fds = vec![pollfd(listener.as_raw_fd(), Interest::Read)];
    let mut conns: Vec<NbConn> = Vec::new();
    loop {
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd entries.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            eprintln!("arch_poll: poll failed: {e}");
            return ExitCode::FAILURE;
        }
        // Backwards, so that the entry swapped into a hole was already seen.
        for i in (1..fds.len()).rev() {
            if fds[i].revents == 0 {
                continue;
            }
            match conns[i - 1].on_ready() {
                Interest::Done => {
                    fds.swap_remove(i);
                    conns.swap_remove(i - 1);
                }
                interest => fds[i].events = events(interest),
            }
        }
        if fds[0].revents != 0 {
            loop {
                match arch::accept_nonblocking(&listener) {
                    Ok(stream) => {
                        let conn = NbConn::new(stream);
                        fds.push(pollfd(conn.fd(), Interest::Read));
                        conns.push(conn);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        eprintln!("arch_poll: accept failed: {e}");
                        if arch::is_resource_error(&e) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        break;
                    }
                }
            }
        }
    }
}

/// The poll events that stand for `interest`.
fn events(interest: Interest) -> libc::c_short {
    match interest {
        Interest::Write => libc::POLLOUT,
        _ => libc::POLLIN,
    }
}

/// A `pollfd` entry asking for `interest` on `fd`.
fn pollfd(fd: i32, interest: Interest) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: events(interest),
        revents: 0,
    }
}
