//! 4 KiB random reads of a 1 GiB file at 1, 32 and 128 reads in flight:
//! this runtime (through the page cache and with `O_DIRECT`) against
//! `tokio::fs`, a pool of threads doing `pread` and a plain `pread` loop.
//!
//! ```text
//! fs_randread [--file F] [--rounds N] [--secs S] [--peers P,...] [--depths D,...]
//!                                                   warm-up, then N rounds
//! fs_randread [--file F] --only <rt> --depth D [--secs S]   one measurement
//! ```
//!
//! `--peers` picks the peers of a full run and their order (default: all
//! but `ours_fixed`); a peer named twice is measured twice per round (the
//! second as `<peer>#2`), which gives the noise floor beside the ratios.
//! `--depths` picks the depths (default 1, 32, 128).
//!
//! `F` (default `/var/tmp/fs_randread.dat`) is created with 1 GiB of
//! pseudo-random data (written, not a sparse file) if it is missing or
//! shorter, then read once in full so that the page cache is warm (skipped
//! when `mincore` shows every page cached already). Each
//! measurement runs `S` seconds (default 2): `D` workers (tasks or threads)
//! each read 4 KiB blocks at 4 KiB-aligned offsets from their own xorshift
//! generator (seeded from the round and the worker's index, so every peer
//! reads the same blocks) until the time is up; the rate is the reads done
//! over the time from the start to the last worker's end.
//!
//! - `ours`: `D` tasks on this runtime sharing one `fs::File`, each read a
//!   `File::read_at` into an owned 4 KiB `Vec`: what the page cache holds
//!   at once with `preadv2(RWF_NOWAIT)`, the rest as an `IORING_OP_READ`.
//! - `ours_ring`: the same on a runtime built with
//!   `Builder::nowait_reads(false)`: every read an `IORING_OP_READ` (the
//!   behaviour before reads at once).
//! - `ours_direct`: the same with `O_DIRECT` and an `fs::AlignedBuf`; this
//!   bypasses the page cache (the device's IOPS). If the file system
//!   refuses `O_DIRECT`, it prints `RESULT ... rt=ours_direct ... skipped=1`.
//! - `ours_fixed` (`--only` only, for the suite's `uring` scenario): as
//!   `ours`, but each task reads with `File::read_fixed_at` into its own
//!   registered buffer (`runtime::fixed::FixedBufPool`, one 4 KiB buffer
//!   per task, `IORING_OP_READ_FIXED`). If the buffers cannot be
//!   registered it prints `RESULT ... rt=ours_fixed ... skipped=1`.
//! - `tokio`: `D` tasks on a current-thread tokio runtime, each with its
//!   own `tokio::fs::File`, doing `seek` + `read_exact` (both go through
//!   tokio's blocking thread pool).
//! - `std_pool`: `D` threads sharing one `std::fs::File`, each doing
//!   `pread` (`FileExt::read_exact_at`).
//! - `pread`: a plain loop of `pread` on the calling thread, one read in
//!   flight (depth 1 only: at other depths it prints `skipped=1`).
//!
//! Output: one line per measurement, `RESULT bench=randread depth=<D>
//! rt=<peer> round=<i> ops=<reads> secs=<s> rate=<IOPS>`, then (full run) a
//! table of medians and of the per-round ratios ours/peer.

use std::future::Future;
use std::io::{Read, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use bench::randread::{print_result, Args, Outcome, Rng, BLOCK, FILE_LEN};

/// Every peer `--only` and `--peers` know.
const ALL_PEERS: [&str; 7] = [
    "ours",
    "ours_ring",
    "ours_direct",
    "ours_fixed",
    "tokio",
    "std_pool",
    "pread",
];
/// The peers of a full run without `--peers`.
const PEERS: [&str; 6] = [
    "ours",
    "ours_ring",
    "ours_direct",
    "tokio",
    "std_pool",
    "pread",
];
/// The length of each warm-up measurement.
const WARMUP: Duration = Duration::from_millis(250);

/// The peers' runtimes, built once and reused by every measurement.
struct Peers {
    ours: Option<runtime::Runtime>,
    /// Ours with `nowait_reads(false)`.
    ours_ring: Option<runtime::Runtime>,
    tokio: Option<tokio::runtime::Runtime>,
}

impl Peers {
    fn new(need_ours: bool, need_tokio: bool) -> Result<Peers, String> {
        let ours = if need_ours {
            Some(runtime::Runtime::new().map_err(|e| format!("cannot start ours: {e}"))?)
        } else {
            None
        };
        let ours_ring = if need_ours {
            Some(
                runtime::Runtime::builder()
                    .nowait_reads(false)
                    .build()
                    .map_err(|e| format!("cannot start ours_ring: {e}"))?,
            )
        } else {
            None
        };
        let tokio = if need_tokio {
            Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start tokio: {e}"))?,
            )
        } else {
            None
        };
        Ok(Peers {
            ours,
            ours_ring,
            tokio,
        })
    }

    /// Runs one measurement of `rt` at `depth` for `dur`.
    fn measure(
        &self,
        rt: &str,
        path: &Path,
        depth: usize,
        dur: Duration,
        round: usize,
    ) -> Result<Outcome, String> {
        match rt {
            "ours" | "ours_direct" | "ours_fixed" => {
                let ours = self.ours.as_ref().ok_or("ours not started")?;
                ours.block_on(run_ours(rt, path, depth, dur, round))
            }
            "ours_ring" => {
                let ours = self.ours_ring.as_ref().ok_or("ours_ring not started")?;
                ours.block_on(run_ours(rt, path, depth, dur, round))
            }
            "tokio" => {
                let tokio = self.tokio.as_ref().ok_or("tokio not started")?;
                run_tokio(tokio, path, depth, dur, round)
            }
            "std_pool" => run_std_pool(path, depth, dur, round),
            "pread" => run_pread(path, depth, dur, round),
            other => Err(format!("unknown peer {other}")),
        }
    }
}

/// A buffer of ours, and the read that fills it: `read_at` into a `Vec`
/// (`ours`) or an `AlignedBuf` (`ours_direct`), `read_fixed_at` into a
/// registered buffer (`ours_fixed`).
trait Block: Sized + 'static {
    /// Reads the 4 KiB block at `pos` of `file` into this buffer.
    async fn read(self, file: &fs::File, pos: u64) -> (std::io::Result<usize>, Self);
}

impl Block for Vec<u8> {
    async fn read(mut self, file: &fs::File, pos: u64) -> (std::io::Result<usize>, Self) {
        self.clear();
        file.read_at(self, pos).await
    }
}

impl Block for fs::AlignedBuf {
    async fn read(mut self, file: &fs::File, pos: u64) -> (std::io::Result<usize>, Self) {
        self.clear();
        file.read_at(self, pos).await
    }
}

impl Block for runtime::fixed::FixedBuf {
    async fn read(mut self, file: &fs::File, pos: u64) -> (std::io::Result<usize>, Self) {
        self.clear();
        file.read_fixed_at(self, pos).await
    }
}

/// Ours: `depth` tasks sharing one file, each reading into its own buffer
/// the way `rt` says (`ours`, `ours_direct` or `ours_fixed`).
async fn run_ours(
    rt: &str,
    path: &Path,
    depth: usize,
    dur: Duration,
    round: usize,
) -> Result<Outcome, String> {
    let direct = rt == "ours_direct";
    let mut options = fs::OpenOptions::new();
    options.read(true);
    if direct {
        options.custom_flags(libc::O_DIRECT);
    }
    let file = match options.open(path).await {
        Ok(f) => f,
        Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
            return Ok(Outcome::Skipped(format!("open with O_DIRECT: {e}")));
        }
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    };
    match rt {
        "ours_direct" => {
            // Some file systems accept the flag but refuse the reads.
            let (res, _) = file.read_at(fs::AlignedBuf::new(BLOCK, BLOCK), 0).await;
            if let Err(e) = res {
                if e.raw_os_error() == Some(libc::EINVAL) {
                    return Ok(Outcome::Skipped(format!("O_DIRECT read: {e}")));
                }
                return Err(format!("O_DIRECT read failed: {e}"));
            }
            let bufs = (0..depth).map(|_| fs::AlignedBuf::new(BLOCK, BLOCK));
            readers(file, bufs.collect(), dur, round).await
        }
        "ours_fixed" => {
            let pool = runtime::fixed::FixedBufPool::new(depth, BLOCK)
                .map_err(|e| format!("FixedBufPool::new({depth}, {BLOCK}): {e}"))?;
            if !pool.is_registered() {
                return Ok(Outcome::Skipped(
                    "the buffers could not be registered (RLIMIT_MEMLOCK?)".to_string(),
                ));
            }
            let mut bufs = Vec::with_capacity(depth);
            for _ in 0..depth {
                bufs.push(pool.get().await);
            }
            readers(file, bufs, dur, round).await
        }
        _ => {
            let bufs = (0..depth).map(|_| Vec::with_capacity(BLOCK));
            readers(file, bufs.collect(), dur, round).await
        }
    }
}

/// One task per buffer on ours, sharing `file`: each reads 4 KiB blocks
/// at its own random offsets until `dur` has passed.
async fn readers<B: Block>(
    file: fs::File,
    bufs: Vec<B>,
    dur: Duration,
    round: usize,
) -> Result<Outcome, String> {
    let file = Rc::new(file);
    let start = Instant::now();
    let end = start + dur;
    let tasks: Vec<_> = bufs
        .into_iter()
        .enumerate()
        .map(|(worker, mut buf)| {
            let file = file.clone();
            runtime::spawn(async move {
                let mut rng = Rng::new(round, worker);
                let mut count = 0u64;
                while Instant::now() < end {
                    let (res, b) = buf.read(&file, rng.offset()).await;
                    check_read(res)?;
                    buf = b;
                    count += 1;
                }
                Ok::<u64, String>(count)
            })
        })
        .collect();
    joined(tasks, start).await
}

/// The reads of every task, once all have ended, over the time from `start`.
async fn joined<E: std::fmt::Display>(
    tasks: Vec<impl Future<Output = Result<Result<u64, String>, E>>>,
    start: Instant,
) -> Result<Outcome, String> {
    let mut ops = 0;
    for t in tasks {
        ops += t.await.map_err(|e| format!("reader task failed: {e}"))??;
    }
    Ok(Outcome::Done {
        ops,
        secs: start.elapsed().as_secs_f64(),
    })
}

/// A full 4 KiB read, or an error message.
fn check_read(res: std::io::Result<usize>) -> Result<(), String> {
    match res {
        Ok(BLOCK) => Ok(()),
        Ok(n) => Err(format!("short read: {n} bytes")),
        Err(e) => Err(format!("read failed: {e}")),
    }
}

/// `tokio::fs`: `depth` tasks, each with its own file, seek + read_exact.
fn run_tokio(
    rt: &tokio::runtime::Runtime,
    path: &Path,
    depth: usize,
    dur: Duration,
    round: usize,
) -> Result<Outcome, String> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    rt.block_on(async {
        let mut files = Vec::with_capacity(depth);
        for _ in 0..depth {
            files.push(
                tokio::fs::File::open(path)
                    .await
                    .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
            );
        }
        let start = Instant::now();
        let end = start + dur;
        let tasks: Vec<_> = files
            .into_iter()
            .enumerate()
            .map(|(worker, mut file)| {
                tokio::spawn(async move {
                    let mut rng = Rng::new(round, worker);
                    let mut buf = vec![0u8; BLOCK];
                    let mut count = 0u64;
                    while Instant::now() < end {
                        file.seek(SeekFrom::Start(rng.offset()))
                            .await
                            .map_err(|e| format!("seek failed: {e}"))?;
                        file.read_exact(&mut buf)
                            .await
                            .map_err(|e| format!("read failed: {e}"))?;
                        count += 1;
                    }
                    Ok::<u64, String>(count)
                })
            })
            .collect();
        joined(tasks, start).await
    })
}

/// `depth` threads sharing one file, each doing `pread`.
fn run_std_pool(path: &Path, depth: usize, dur: Duration, round: usize) -> Result<Outcome, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let barrier = Barrier::new(depth + 1);
    // The common end time, set by this thread just before it releases the
    // workers (so the time they take to wake up counts against the pool).
    let end = OnceLock::new();
    let (file, barrier, end) = (&file, &barrier, &end);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..depth)
            .map(|worker| {
                s.spawn(move || {
                    let mut rng = Rng::new(round, worker);
                    let mut buf = vec![0u8; BLOCK];
                    let mut count = 0u64;
                    barrier.wait();
                    let end = *end.get().ok_or("no end time after the barrier")?;
                    while Instant::now() < end {
                        file.read_exact_at(&mut buf, rng.offset())
                            .map_err(|e| format!("read failed: {e}"))?;
                        count += 1;
                    }
                    Ok::<u64, String>(count)
                })
            })
            .collect();
        let start = Instant::now();
        end.get_or_init(|| start + dur);
        barrier.wait();
        let mut ops = 0;
        for t in threads {
            ops += t
                .join()
                .map_err(|_| "reader thread panicked".to_string())??;
        }
        Ok(Outcome::Done {
            ops,
            secs: start.elapsed().as_secs_f64(),
        })
    })
}

/// A plain `pread` loop on this thread: one read in flight.
fn run_pread(path: &Path, depth: usize, dur: Duration, round: usize) -> Result<Outcome, String> {
    if depth != 1 {
        return Ok(Outcome::Skipped(format!(
            "a plain loop has one read in flight, not {depth}"
        )));
    }
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut rng = Rng::new(round, 0);
    let mut buf = vec![0u8; BLOCK];
    let mut ops = 0u64;
    let start = Instant::now();
    let end = start + dur;
    while Instant::now() < end {
        file.read_exact_at(&mut buf, rng.offset())
            .map_err(|e| format!("read failed: {e}"))?;
        ops += 1;
    }
    Ok(Outcome::Done {
        ops,
        secs: start.elapsed().as_secs_f64(),
    })
}

/// Creates the file if it is missing or short, then reads it once in full
/// to warm the page cache.
fn prepare(path: &Path) -> std::io::Result<()> {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if len < FILE_LEN {
        eprintln!("fs_randread: creating {} (1 GiB)...", path.display());
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
    if fully_cached(&f) {
        return Ok(());
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match f.read(&mut buf)? {
            0 => break,
            n => total += n as u64,
        }
    }
    if total < FILE_LEN {
        return Err(std::io::Error::other(format!(
            "read only {total} bytes of {FILE_LEN}"
        )));
    }
    Ok(())
}

/// Whether every page of the file's first `FILE_LEN` bytes is in the page
/// cache already (`mincore` on a mapping), so the read-through can be
/// skipped; false when that cannot be told.
fn fully_cached(f: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: sysconf has no memory arguments.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page <= 0 {
        return false;
    }
    let len = FILE_LEN as usize;
    // SAFETY: a fresh read-only shared mapping of an open file, at an
    // address the kernel chooses; nothing is read through it.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return false;
    }
    let mut vec = vec![0u8; len.div_ceil(page as usize)];
    // SAFETY: `addr..addr + len` is the mapping made above and `vec` has
    // one byte per page of it.
    let rc = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
    // SAFETY: unmaps exactly the mapping made above, which nothing uses.
    unsafe { libc::munmap(addr, len) };
    rc == 0 && vec.iter().all(|v| v & 1 == 1)
}

const USAGE: &str = "usage: fs_randread [--file F] [--rounds N] [--secs S] [--peers P,...] [--depths D,...]\n       fs_randread [--file F] --only <ours|ours_ring|ours_direct|ours_fixed|tokio|std_pool|pread> --depth D [--secs S]";

fn run() -> Result<(), String> {
    let args = Args::parse(std::env::args().skip(1), &ALL_PEERS, &PEERS, true)?;
    if args.only.is_some() != args.depth.is_some() {
        return Err("--only and --depth go together".into());
    }
    let t0 = Instant::now();
    prepare(&args.path).map_err(|e| format!("cannot prepare {}: {e}", args.path.display()))?;
    eprintln!(
        "fs_randread: file ready and in the page cache after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let dur = Duration::from_secs_f64(args.secs);
    if let (Some(rt), Some(depth)) = (&args.only, args.depth) {
        let peers = Peers::new(rt.starts_with("ours"), rt == "tokio")?;
        let outcome = peers.measure(rt, &args.path, depth, dur, 0)?;
        print_result("fs_randread", depth, rt, 0, &outcome);
        return Ok(());
    }

    let need_ours = args.peers.iter().any(|p| p.starts_with("ours"));
    let need_tokio = args.peers.iter().any(|p| p == "tokio");
    let peers = Peers::new(need_ours, need_tokio)?;
    // A peer named again is measured again, under the label `<peer>#k`.
    let labels: Vec<String> = args
        .peers
        .iter()
        .enumerate()
        .map(
            |(i, p)| match args.peers[..i].iter().filter(|q| *q == p).count() {
                0 => p.clone(),
                k => format!("{p}#{}", k + 1),
            },
        )
        .collect();
    eprintln!("fs_randread: warm-up");
    for &depth in &args.depths {
        for rt in &args.peers {
            peers.measure(rt, &args.path, depth, WARMUP.min(dur), 0)?;
        }
    }
    // rates[depth][peer] = per-round rates (empty when skipped).
    let mut rates = vec![vec![Vec::new(); args.peers.len()]; args.depths.len()];
    for round in 0..args.rounds {
        for (d, &depth) in args.depths.iter().enumerate() {
            for (p, rt) in args.peers.iter().enumerate() {
                let outcome = peers.measure(rt, &args.path, depth, dur, round)?;
                if let Some(rate) = print_result("fs_randread", depth, &labels[p], round, &outcome)
                {
                    rates[d][p].push(rate);
                }
            }
        }
    }

    println!();
    println!(
        "4 KiB random reads (IOPS), {} (page cache warm), median of {} rounds of {} s; ratio = {}/peer per round, median [min..max]",
        args.path.display(),
        args.rounds,
        args.secs,
        labels[0]
    );
    print!("{:<6}", "depth");
    for l in &labels {
        print!(" {l:>12}");
    }
    for l in &labels[1..] {
        print!("   {:<24}", format!("{}/{l}", labels[0]));
    }
    println!();
    for (d, depth) in args.depths.iter().enumerate() {
        print!("{depth:<6}");
        for peer in &rates[d] {
            let med = match bench::stats(peer) {
                Some((m, _, _)) => format!("{m:.0}"),
                None => "skipped".to_string(),
            };
            print!(" {med:>12}");
        }
        for peer in &rates[d][1..] {
            print!("   {:<24}", bench::ratio_text(&rates[d][0], peer));
        }
        println!();
    }
    Ok(())
}

fn main() {
    if let Err(msg) = run() {
        eprintln!("fs_randread: {msg}\n{USAGE}");
        std::process::exit(1);
    }
}
