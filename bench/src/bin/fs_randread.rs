//! 4 KiB random reads at 32 in flight on a 1 GiB file whose pages are in
//! the page cache: this runtime against `tokio::fs` doing the same work.
//!
//! ```text
//! cargo build --release -p bench --bin fs_randread
//! taskset -c 1 target/release/fs_randread [FILE] [--reads N] [--runs R]
//! ```
//!
//! `FILE` (default `/var/tmp/fs_randread.dat`) is created with 1 GiB of
//! data if it does not have that size, then read once in full so that the
//! measurement sees a warm page cache. Each run performs the same `N`
//! (default 200,000) reads at the same pseudo-random 4 KiB-aligned offsets,
//! taken in turn by 32 concurrent tasks; the result is the median rate of
//! `R` (default 5) runs per side.
//!
//! - **ours**: 32 tasks on this runtime sharing one `fs::File`, each read a
//!   `File::read_at` (one `IORING_OP_READ`) into an owned 4 KiB `Vec`.
//! - **tokio::fs**: 32 tasks on a current-thread tokio runtime, each with
//!   its own `tokio::fs::File` (so seeks do not interfere), doing `seek` +
//!   `read_exact` of 4 KiB; tokio runs both on its blocking thread pool.
//! - **tokio pread**: for reference, `FileExt::read_at` inside
//!   `spawn_blocking` (one blocking-pool hop per read instead of two).
//!
//! Compare with fio's io_uring engine on the same file:
//!
//! ```text
//! taskset -c 1 fio --name=randread --filename=FILE --rw=randread --bs=4k \
//!     --iodepth=32 --ioengine=io_uring --direct=0 --size=1G --runtime=10 \
//!     --time_based --numjobs=1
//! ```

use std::cell::Cell;
use std::io::{Read, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

const FILE_LEN: u64 = 1 << 30;
const BLOCK: usize = 4096;
const DEPTH: usize = 32;

/// The command line.
struct Args {
    path: PathBuf,
    reads: usize,
    runs: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        path: PathBuf::from("/var/tmp/fs_randread.dat"),
        reads: 200_000,
        runs: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{name} needs a positive number"))
        };
        match arg.as_str() {
            "--reads" => args.reads = number("--reads")?,
            "--runs" => args.runs = number("--runs")?,
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            path => args.path = PathBuf::from(path),
        }
    }
    Ok(args)
}

/// Creates the 1 GiB file if needed, then reads it once to warm the cache.
fn prepare(path: &Path) -> std::io::Result<()> {
    let ok = std::fs::metadata(path)
        .map(|m| m.len() == FILE_LEN)
        .unwrap_or(false);
    if !ok {
        eprintln!("creating {} (1 GiB)...", path.display());
        let mut f = std::fs::File::create(path)?;
        let mut chunk = vec![0u8; 1 << 20];
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..(FILE_LEN >> 20) {
            for word in chunk.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                word.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&chunk)?;
        }
        f.sync_all()?;
    }
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    while f.read(&mut buf)? > 0 {}
    Ok(())
}

/// `n` pseudo-random block-aligned offsets in the file (fixed seed, so
/// every run and both sides read the same blocks).
fn offsets(n: usize) -> Vec<u64> {
    let blocks = FILE_LEN / BLOCK as u64;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % blocks) * BLOCK as u64
        })
        .collect()
}

/// One run on this runtime; returns reads per second.
fn run_ours(rt: &runtime::Runtime, path: &Path, offsets: &Rc<Vec<u64>>) -> f64 {
    let next = Rc::new(Cell::new(0usize));
    rt.block_on(async {
        let file = Rc::new(fs::File::open(path).await.expect("cannot open the file"));
        let start = Instant::now();
        let tasks: Vec<_> = (0..DEPTH)
            .map(|_| {
                let (file, next, offsets) = (file.clone(), next.clone(), offsets.clone());
                runtime::spawn(async move {
                    let mut buf = Vec::with_capacity(BLOCK);
                    loop {
                        let i = next.get();
                        if i >= offsets.len() {
                            return;
                        }
                        next.set(i + 1);
                        buf.clear();
                        let (res, b) = file.read_at(buf, offsets[i]).await;
                        assert_eq!(res.expect("read failed"), BLOCK);
                        buf = b;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("reader task failed");
        }
        offsets.len() as f64 / start.elapsed().as_secs_f64()
    })
}

/// One run with `tokio::fs` (seek + read_exact); returns reads per second.
fn run_tokio_fs(rt: &tokio::runtime::Runtime, path: &Path, offsets: &Arc<Vec<u64>>) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let next = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let mut files = Vec::new();
        for _ in 0..DEPTH {
            files.push(
                tokio::fs::File::open(path)
                    .await
                    .expect("cannot open the file"),
            );
        }
        let start = Instant::now();
        let tasks: Vec<_> = files
            .into_iter()
            .map(|mut file| {
                let (next, offsets) = (next.clone(), offsets.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; BLOCK];
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= offsets.len() {
                            return;
                        }
                        file.seek(SeekFrom::Start(offsets[i]))
                            .await
                            .expect("seek failed");
                        file.read_exact(&mut buf).await.expect("read failed");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("reader task failed");
        }
        offsets.len() as f64 / start.elapsed().as_secs_f64()
    })
}

/// One run with `pread` in `spawn_blocking`; returns reads per second.
fn run_tokio_pread(rt: &tokio::runtime::Runtime, path: &Path, offsets: &Arc<Vec<u64>>) -> f64 {
    let file = Arc::new(std::fs::File::open(path).expect("cannot open the file"));
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..DEPTH)
            .map(|_| {
                let (file, next, offsets) = (file.clone(), next.clone(), offsets.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; BLOCK];
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= offsets.len() {
                            return;
                        }
                        let f = file.clone();
                        let pos = offsets[i];
                        buf = tokio::task::spawn_blocking(move || {
                            f.read_exact_at(&mut buf, pos).expect("read failed");
                            buf
                        })
                        .await
                        .expect("blocking read failed");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("reader task failed");
        }
    });
    offsets.len() as f64 / start.elapsed().as_secs_f64()
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[rates.len() / 2]
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("fs_randread: {msg}\nusage: fs_randread [FILE] [--reads N] [--runs R]");
            std::process::exit(2);
        }
    };
    if let Err(e) = prepare(&args.path) {
        eprintln!("fs_randread: cannot prepare {}: {e}", args.path.display());
        std::process::exit(1);
    }
    let offs = offsets(args.reads);
    println!(
        "4 KiB random reads, {DEPTH} in flight, 1 GiB file {} (page cache warm), {} reads per run, median of {} runs",
        args.path.display(),
        args.reads,
        args.runs
    );

    let ours_rt = runtime::Runtime::new().expect("cannot start the runtime");
    let ours_offs = Rc::new(offs.clone());
    run_ours(&ours_rt, &args.path, &ours_offs); // warm-up
    let ours = median(
        (0..args.runs)
            .map(|_| run_ours(&ours_rt, &args.path, &ours_offs))
            .collect(),
    );
    drop(ours_rt);

    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("cannot start tokio");
    let tokio_offs = Arc::new(offs);
    run_tokio_fs(&tokio_rt, &args.path, &tokio_offs); // warm-up
    let tokio_fs = median(
        (0..args.runs)
            .map(|_| run_tokio_fs(&tokio_rt, &args.path, &tokio_offs))
            .collect(),
    );
    let tokio_pread = median(
        (0..args.runs)
            .map(|_| run_tokio_pread(&tokio_rt, &args.path, &tokio_offs))
            .collect(),
    );

    bench::report(
        "randread 4k qd32 (IOPS)",
        ours,
        Some(("tokio::fs", tokio_fs)),
    );
    bench::report(
        "randread 4k qd32 (IOPS)",
        ours,
        Some(("tokio pread+spawn_blocking", tokio_pread)),
    );
}
