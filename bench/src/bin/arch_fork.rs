//! The forking server: one child process per connection.
//!
//! The parent blocks in `accept`; for every connection it `fork`s a child
//! that closes its copy of the listener, serves the connection with blocking
//! I/O ([`bench::arch::serve_blocking`]) and exits, while the parent closes
//! its copy of the connection and accepts the next one. Children are reaped
//! by the kernel: `SIGCHLD` is set to `SIG_IGN`, so a child that exits
//! leaves no zombie and the parent needs no `waitpid`. Every child asks for
//! `SIGKILL` when the parent dies (`PR_SET_PDEATHSIG`), so killing the
//! parent ends them all.
//!
//! Known limits: a `fork` (copying the page tables, then copy-on-write
//! faults) per connection makes new connections expensive; keep-alive
//! amortises it, so a benchmark with long connections mostly measures the
//! blocking I/O and the context switches between processes. One process per
//! open connection: 1,000 connections are 1,000 processes (memory, the
//! scheduler, `RLIMIT_NPROC`). When `fork` fails the connection is closed
//! unanswered and the parent waits 10 ms before accepting again.
//!
//! ```text
//! cargo run --release -p bench --bin arch_fork -- 127.0.0.1:9302
//! ```

use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Duration;

use bench::arch;

fn main() -> ExitCode {
    let (_, listener) = match arch::start("arch_fork", None) {
        Ok(started) => started,
        Err(code) => return code,
    };
    // SAFETY: setting SIGCHLD's disposition to SIG_IGN is a plain
    // sigaction; it makes the kernel reap exited children at once.
    if unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) } == libc::SIG_ERR {
        eprintln!(
            "arch_fork: cannot ignore SIGCHLD: {}",
            std::io::Error::last_os_error()
        );
        return ExitCode::FAILURE;
    }
    let listener_fd = listener.as_raw_fd();
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                arch::accept_failed("arch_fork", &e);
                continue;
            }
        };
        let child = move || {
            // SAFETY: the child never uses the listener again and exits
            // without running its destructor, so closing the descriptor
            // here is the only close of the child's copy.
            unsafe { libc::close(listener_fd) };
            arch::serve_blocking(stream);
        };
        // SAFETY: this process never starts a thread, so it is
        // single-threaded when it forks.
        if let Err(e) = unsafe { arch::fork_child(child) } {
            // The closure, and with it the connection, was dropped: closed.
            eprintln!("arch_fork: fork failed: {e}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
