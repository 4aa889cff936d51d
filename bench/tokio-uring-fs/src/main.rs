//! `tokio::fs` on tokio's own io_uring driver: the `tokio_uring` peers of
//! `fs_randread` (same file, same offsets, same output line).
//!
//! ```text
//! tokio_uring_randread [--file F] --only <tokio_uring|tokio_uring_direct> --depth D [--secs S]
//! ```
//!
//! `D` tasks on a current-thread tokio runtime built with
//! `enable_io_uring()` (tokio 1.54 with the `io-uring` feature and
//! `--cfg tokio_unstable`), each with its own `tokio::fs::File`, read 4 KiB
//! blocks at 4 KiB-aligned offsets from the same xorshift generators as
//! `fs_randread` for `S` seconds (default 2). tokio has no positional read,
//! so each read is `seek` + `read_exact`, the way a tokio user writes it:
//! the open and the read are io_uring operations, the seek still runs on
//! tokio's blocking pool (tokio 1.54 has no io_uring seek).
//!
//! - `tokio_uring`: through the page cache (the file is expected warm:
//!   `fs_randread` prepares it);
//! - `tokio_uring_direct`: opened with `O_DIRECT`. tokio reads into its own
//!   `Vec`, which has no alignment the device may ask for; if the kernel
//!   refuses such reads (`EINVAL`) the peer prints `skipped=1`.
//!
//! Output: `RESULT bench=randread depth=<D> rt=<peer> round=0 ops=<reads>
//! secs=<s> rate=<IOPS>`, or `... skipped=1` with the reason on stderr.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncSeekExt};

const FILE_LEN: u64 = 1 << 30;
const BLOCK: usize = 4096;
const BLOCKS: u64 = FILE_LEN / BLOCK as u64;

/// The offsets of `fs_randread`'s worker `worker` in round `round`
/// (xorshift64* seeded through splitmix64; the same sequence).
struct Rng(u64);

impl Rng {
    fn new(round: usize, worker: usize) -> Rng {
        let mut z = ((round as u64) << 32 | worker as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn offset(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) % BLOCKS * BLOCK as u64
    }
}

struct Args {
    path: PathBuf,
    only: String,
    depth: usize,
    secs: f64,
}

const USAGE: &str = "usage: tokio_uring_randread [--file F] --only <tokio_uring|tokio_uring_direct> --depth D [--secs S]";

fn parse_args() -> Result<Args, String> {
    let mut path = PathBuf::from("/var/tmp/fs_randread.dat");
    let (mut only, mut depth, mut secs) = (None, None, 2.0);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--file" => path = PathBuf::from(value()?),
            "--only" => {
                let rt = value()?;
                if rt != "tokio_uring" && rt != "tokio_uring_direct" {
                    return Err(format!("unknown peer {rt}"));
                }
                only = Some(rt);
            }
            "--depth" => {
                depth = Some(
                    value()?
                        .parse()
                        .ok()
                        .filter(|&n: &usize| n > 0)
                        .ok_or("--depth needs a positive number")?,
                )
            }
            "--secs" => {
                secs = value()?
                    .parse()
                    .ok()
                    .filter(|&s: &f64| s > 0.0 && s.is_finite())
                    .ok_or("--secs needs a positive number")?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        path,
        only: only.ok_or("--only is required")?,
        depth: depth.ok_or("--depth is required")?,
        secs,
    })
}

/// What one measurement gave.
enum Outcome {
    Done { ops: u64, secs: f64 },
    Skipped(String),
}

async fn measure(args: &Args) -> Result<Outcome, String> {
    let direct = args.only == "tokio_uring_direct";
    let mut files = Vec::with_capacity(args.depth);
    for _ in 0..args.depth {
        let mut options = tokio::fs::OpenOptions::new();
        options.read(true);
        if direct {
            options.custom_flags(libc::O_DIRECT);
        }
        match options.open(&args.path).await {
            Ok(f) => files.push(f),
            Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
                return Ok(Outcome::Skipped(format!("open with O_DIRECT: {e}")));
            }
            Err(e) => return Err(format!("cannot open {}: {e}", args.path.display())),
        }
    }
    if direct {
        // tokio reads into its own (unaligned) Vec: the kernel may refuse.
        let f = &mut files[0];
        let mut buf = vec![0u8; BLOCK];
        let probe = async {
            f.seek(SeekFrom::Start(0)).await?;
            f.read_exact(&mut buf).await
        };
        if let Err(e) = probe.await {
            if e.raw_os_error() == Some(libc::EINVAL) {
                return Ok(Outcome::Skipped(format!(
                    "O_DIRECT read into tokio's own unaligned buffer: {e}"
                )));
            }
            return Err(format!("O_DIRECT read failed: {e}"));
        }
    }
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.secs);
    let tasks: Vec<_> = files
        .into_iter()
        .enumerate()
        .map(|(worker, mut file)| {
            tokio::spawn(async move {
                let mut rng = Rng::new(0, worker);
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
    let mut ops = 0;
    for t in tasks {
        ops += t.await.map_err(|e| format!("reader task failed: {e}"))??;
    }
    Ok(Outcome::Done {
        ops,
        secs: start.elapsed().as_secs_f64(),
    })
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io_uring()
        .build()
        .map_err(|e| format!("cannot start tokio with io_uring: {e}"))?;
    let (depth, peer) = (args.depth, &args.only);
    match rt.block_on(measure(&args))? {
        Outcome::Done { ops, secs } => {
            let rate = ops as f64 / secs.max(1e-9);
            println!(
                "RESULT bench=randread depth={depth} rt={peer} round=0 ops={ops} secs={secs:.6} rate={rate:.0}"
            );
        }
        Outcome::Skipped(why) => {
            eprintln!("tokio_uring_randread: {peer} skipped: {why}");
            println!("RESULT bench=randread depth={depth} rt={peer} round=0 skipped=1");
        }
    }
    Ok(())
}

fn main() {
    if let Err(msg) = run() {
        eprintln!("tokio_uring_randread: {msg}\n{USAGE}");
        std::process::exit(1);
    }
}
