//! The pre-threaded server: a fixed pool of threads.
//!
//! `arch_prethread [workers] <addr>` (default 8 threads, see
//! [`bench::arch::DEFAULT_POOL`] for why). The main thread binds the
//! listener and starts the threads, which share it; each loops blocking in
//! `accept` and serves the accepted connection with blocking I/O
//! ([`bench::arch::serve_blocking`]) until it closes. The kernel hands each
//! new connection to one waiting thread (blocking accepts wait exclusively).
//! The main thread then just waits for the threads, which never end.
//!
//! Known limits: at most `workers` connections are served at once. With
//! keep-alive clients, connection number `workers + 1` waits in the backlog,
//! unanswered, until one of the served connections closes: under
//! `wrk -c200` and 8 threads, 8 connections carry all the traffic and the
//! other 192 time out (wrk still completes and reports). Compared with the
//! pre-forked pool, threads are cheaper to switch between but share one
//! address space, so a crash takes the whole server down.
//!
//! ```text
//! cargo run --release -p bench --bin arch_prethread -- 8 127.0.0.1:9305
//! ```

use std::net::TcpListener;
use std::process::ExitCode;
use std::thread;

use bench::arch;

/// The stack size of a pool thread (the buffers are on the heap).
const STACK: usize = 64 * 1024;

fn main() -> ExitCode {
    let (workers, listener) = match arch::start("arch_prethread", Some(arch::DEFAULT_POOL)) {
        Ok(started) => started,
        Err(code) => return code,
    };
    let listener = &listener;
    thread::scope(|scope| {
        let mut started = 0;
        for i in 0..workers {
            let spawned = thread::Builder::new()
                .name(format!("worker-{i}"))
                .stack_size(STACK)
                .spawn_scoped(scope, move || worker(listener));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => {
                    eprintln!("arch_prethread: cannot start thread {i}: {e}");
                    break;
                }
            }
        }
        // The workers never end, so the scope waits forever unless none
        // started.
        if started == 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    })
}

/// One worker: accept a connection, serve it until it closes, repeat.
fn worker(listener: &TcpListener) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => arch::serve_blocking(stream),
            Err(e) => arch::accept_failed("arch_prethread", &e),
        }
    }
}
