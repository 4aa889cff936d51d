//! `cp SRC DST [--depth N]`: copies a file through the ring with `N` reads
//! and writes in flight (default 32), in 128 KiB chunks, then reports the
//! bytes copied and the rate.
//!
//! `N` worker tasks take the next chunk offset in turn, read that chunk with
//! `read_exact_at` and write it at the same offset of the destination with
//! `write_all_at`, so up to `N` operations are in the kernel at once and the
//! chunks complete in any order. The destination is created (or truncated)
//! with the source's permission bits; since every byte of the source's
//! length is written, the copy ends with exactly the source's length.
//!
//! ```text
//! cargo run --release -p examples --example cp -- big.img copy.img --depth 64
//! ```

use std::cell::Cell;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use fs::{File, OpenOptions};
use runtime::buf::IoBuf;

/// Bytes per read and write.
const CHUNK: usize = 128 * 1024;

/// Reads and writes in flight unless `--depth` says otherwise.
const DEFAULT_DEPTH: usize = 32;

const USAGE: &str =
    "usage: cp SRC DST [--depth N]   (N: reads and writes in flight, 1..=4096, default 32)";

/// The command line, parsed.
struct Args {
    src: PathBuf,
    dst: PathBuf,
    depth: usize,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut paths = Vec::new();
    let mut depth = DEFAULT_DEPTH;
    while let Some(arg) = args.next() {
        let value = if arg == "--depth" {
            Some(args.next().ok_or("--depth needs a value")?)
        } else {
            arg.strip_prefix("--depth=").map(str::to_string)
        };
        match value {
            Some(v) => {
                depth = v
                    .parse()
                    .ok()
                    .filter(|d| (1..=4096).contains(d))
                    .ok_or_else(|| format!("invalid --depth {v:?}: expected 1..=4096"))?;
            }
            None if arg.starts_with("--") => return Err(format!("unknown option {arg:?}")),
            None => paths.push(PathBuf::from(arg)),
        }
    }
    match <[PathBuf; 2]>::try_from(paths) {
        Ok([src, dst]) => Ok(Args { src, dst, depth }),
        Err(paths) => Err(format!("expected SRC and DST, got {} path(s)", paths.len())),
    }
}

/// Adds what was being done, and to which path, to an error.
fn context<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(io::Error) -> io::Error + 'a {
    move |e| io::Error::new(e.kind(), format!("{what} '{}': {e}", path.display()))
}

/// Copies `src` to `dst` with `depth` chunk copies in flight; returns the
/// number of bytes copied.
async fn copy(src_path: &Path, dst_path: &Path, depth: usize) -> io::Result<u64> {
    let src = File::open(src_path)
        .await
        .map_err(context("cannot open", src_path))?;
    let meta = src
        .metadata()
        .await
        .map_err(context("cannot stat", src_path))?;
    if meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{}' is a directory", src_path.display()),
        ));
    }
    match fs::metadata(dst_path).await {
        Ok(d) if (d.dev(), d.ino()) == (meta.dev(), meta.ino()) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "'{}' and '{}' are the same file",
                    src_path.display(),
                    dst_path.display()
                ),
            ))
        }
        _ => {}
    }
    let len = meta.len();
    let dst = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(meta.permissions().mode() & 0o7777)
        .open(dst_path)
        .await
        .map_err(context("cannot create", dst_path))?;

    let (src, dst) = (Rc::new(src), Rc::new(dst));
    let next = Rc::new(Cell::new(0u64));
    let chunks = len.div_ceil(CHUNK as u64);
    let workers: Vec<_> = (0..(depth as u64).min(chunks))
        .map(|_| runtime::spawn(worker(src.clone(), dst.clone(), next.clone(), len)))
        .collect();
    let mut copied = 0;
    let mut first_error = None;
    for w in workers {
        match w.await {
            Ok(Ok(n)) => copied += n,
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(join) => {
                first_error.get_or_insert(io::Error::other(format!("copy task failed: {join}")));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let dst = Rc::try_unwrap(dst).expect("all workers are done");
    dst.close()
        .await
        .map_err(context("cannot close", dst_path))?;
    Ok(copied)
}

/// Copies chunks until none is left; on an error, stops the other workers
/// from taking new chunks.
async fn worker(src: Rc<File>, dst: Rc<File>, next: Rc<Cell<u64>>, len: u64) -> io::Result<u64> {
    let mut buf = Vec::with_capacity(CHUNK);
    let mut copied = 0;
    loop {
        let pos = next.get();
        if pos >= len {
            return Ok(copied);
        }
        next.set(pos + CHUNK as u64);
        let want = (len - pos).min(CHUNK as u64) as usize;
        buf.clear();
        let (res, slice) = src.read_exact_at(buf.slice(..want), pos).await;
        buf = slice.into_inner();
        if let Err(e) = res {
            next.set(len);
            return Err(io::Error::new(
                e.kind(),
                format!("reading at offset {pos}: {e} (did the source change during the copy?)"),
            ));
        }
        let (res, b) = dst.write_all_at(buf, pos).await;
        buf = b;
        if let Err(e) = res {
            next.set(len);
            return Err(io::Error::new(
                e.kind(),
                format!("writing at offset {pos}: {e}"),
            ));
        }
        copied += want as u64;
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("cp: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cp: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = Instant::now();
    match rt.block_on(copy(&args.src, &args.dst, args.depth)) {
        Ok(bytes) => {
            let secs = start.elapsed().as_secs_f64();
            println!(
                "copied {bytes} bytes in {secs:.3} s ({:.1} MB/s, depth {})",
                bytes as f64 / 1e6 / secs.max(1e-9),
                args.depth
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cp: {e}");
            ExitCode::FAILURE
        }
    }
}
