//! The pre-forked server: a fixed pool of worker processes.
//!
//! `arch_prefork [workers] <addr>` (default 8 workers, see
//! [`bench::arch::DEFAULT_POOL`] for why). The parent binds the listener,
//! then forks the workers, which inherit it; each worker loops blocking in
//! `accept` on the shared listener and serves the accepted connection with
//! blocking I/O ([`bench::arch::serve_blocking`]) until it closes. The
//! kernel hands each new connection to one waiting worker (blocking accepts
//! wait exclusively, so there is no thundering herd). The parent only
//! watches: it waits for its children and forks a replacement for any that
//! dies. Every worker asks for `SIGKILL` when the parent dies
//! (`PR_SET_PDEATHSIG`), so killing the parent ends the pool.
//!
//! Known limits: at most `workers` connections are served at once. With
//! keep-alive clients, connection number `workers + 1` waits in the backlog,
//! unanswered, until one of the served connections closes: under
//! `wrk -c200` and 8 workers, 8 connections carry all the traffic and the
//! other 192 time out (wrk still completes and reports). Processes share
//! nothing, so a worker that crashes loses only its connection.
//!
//! ```text
//! cargo run --release -p bench --bin arch_prefork -- 8 127.0.0.1:9303
//! ```

use std::net::TcpListener;
use std::process::ExitCode;
use std::time::Duration;

use bench::arch;

fn main() -> ExitCode {
    let (workers, listener) = match arch::start("arch_prefork", Some(arch::DEFAULT_POOL)) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let mut alive = 0;
    loop {
        while alive < workers {
            // SAFETY: this process never starts a thread, so it is
            // single-threaded when it forks.
            match unsafe { arch::fork_child(|| worker(&listener)) } {
                Ok(_) => alive += 1,
                Err(e) => {
                    eprintln!("arch_prefork: fork failed: {e}");
                    if alive == 0 {
                        return ExitCode::FAILURE;
                    }
                    break;
                }
            }
        }
        let mut status = 0;
        // SAFETY: `status` is a valid int for waitpid to fill.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid > 0 {
            alive -= 1;
            eprintln!("arch_prefork: worker {pid} ended (status {status:#x}); starting another");
            // Do not fork in a tight loop if workers die at once.
            std::thread::sleep(Duration::from_millis(10));
        } else {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                eprintln!("arch_prefork: waitpid failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// One worker: accept a connection, serve it until it closes, repeat.
fn worker(listener: &TcpListener) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => arch::serve_blocking(stream),
            Err(e) => arch::accept_failed("arch_prefork", &e),
        }
    }
}
