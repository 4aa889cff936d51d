//! `cat FILE...`: streams files (or `-`, standard input) to standard output
//! through the ring.
//!
//! Reads are `IORING_OP_READ` at explicit offsets of each file; output goes
//! through a duplicate of descriptor 1 (so dropping it never closes the
//! process's standard output) with writes at the file position, which works
//! whether standard output is a terminal, a pipe or a regular file. While
//! one chunk is written, the next one is read. A file that cannot be read
//! is reported and skipped; the exit status is then 1, as with coreutils.
//!
//! ```text
//! cargo run -p examples --example cat -- Cargo.toml README.md
//! ```

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;

use fs::File;
use runtime::io::{OwnedRead, OwnedWrite};

/// Bytes per read.
const CHUNK: usize = 128 * 1024;

/// A `fs::File` on a duplicate of `fd` (which itself stays open).
fn dup(fd: i32) -> io::Result<File> {
    // SAFETY: F_DUPFD_CLOEXEC only creates a new descriptor (numbered 3 or
    // more) for the same open file.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(new) }))
}

/// Where an error happened: reading the input or writing the output.
enum Failure {
    Input(io::Error),
    Output(io::Error),
}

/// Copies one input to `out`, reading the next chunk while the current one
/// is written.
async fn stream(input: &File, positional: bool, out: &File) -> Result<(), Failure> {
    let mut pos = 0u64;
    let read = |buf: Vec<u8>, pos: u64| async move {
        if positional {
            input.read_at(buf, pos).await
        } else {
            input.read(buf).await
        }
    };
    let (res, mut current) = read(Vec::with_capacity(CHUNK), pos).await;
    let mut n = res.map_err(Failure::Input)?;
    let mut spare = Vec::with_capacity(CHUNK);
    while n > 0 {
        pos += n as u64;
        let next = read(spare, pos);
        let write = out.write_all(current);
        let ((read_res, next_buf), (write_res, written)) = join(next, write).await;
        write_res.map_err(Failure::Output)?;
        n = read_res.map_err(Failure::Input)?;
        spare = written;
        spare.clear();
        current = next_buf;
    }
    Ok(())
}

/// Runs two futures to completion concurrently on this task.
async fn join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    let (mut a, mut b) = (Box::pin(a), Box::pin(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let std::task::Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            std::task::Poll::Ready((ra.take().unwrap(), rb.take().unwrap()))
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

async fn cat(paths: Vec<String>) -> ExitCode {
    let out = match dup(1) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("cat: cannot use standard output: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut status = ExitCode::SUCCESS;
    for path in paths {
        let opened = if path == "-" {
            dup(0).map(|f| (f, false))
        } else {
            File::open(&path).await.map(|f| (f, true))
        };
        let (input, positional) = match opened {
            Ok(f) => f,
            Err(e) => {
                eprintln!("cat: {path}: {e}");
                status = ExitCode::FAILURE;
                continue;
            }
        };
        match stream(&input, positional, &out).await {
            Ok(()) => {}
            Err(Failure::Input(e)) => {
                eprintln!("cat: {path}: {e}");
                status = ExitCode::FAILURE;
            }
            Err(Failure::Output(e)) => {
                eprintln!("cat: write error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = out.close().await {
        eprintln!("cat: write error: {e}");
        return ExitCode::FAILURE;
    }
    status
}

fn main() -> ExitCode {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: cat FILE...   (use - for standard input)");
        return ExitCode::from(2);
    }
    match runtime::Runtime::new() {
        Ok(rt) => rt.block_on(cat(paths)),
        Err(e) => {
            eprintln!("cat: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
