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
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncSeekExt};

// The file's geometry, the offsets, the command line and the RESULT line
// of `fs_randread` (bench/src/randread.rs, plain std), included as a
// module: depending on the bench crate instead would build all of it (its
// peers: monoio, glommio, compio, hyper, rustls...) under this crate's
// `--cfg tokio_unstable` and with tokio's io-uring feature. Some of its
// items serve only fs_randread's full runs.
#[allow(dead_code)]
#[path = "../../src/randread.rs"]
mod randread;

use randread::{print_result, Args, Outcome, Rng, BLOCK};

/// The peers this program measures.
const PEERS: [&str; 2] = ["tokio_uring", "tokio_uring_direct"];

const USAGE: &str = "usage: tokio_uring_randread [--file F] --only <tokio_uring|tokio_uring_direct> --depth D [--secs S]";

async fn measure(args: &Args, peer: &str, depth: usize) -> Result<Outcome, String> {
    let direct = peer == "tokio_uring_direct";
    let mut files = Vec::with_capacity(depth);
    for _ in 0..depth {
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
    let args = Args::parse(std::env::args().skip(1), &PEERS, &[], false)?;
    let peer = args.only.as_deref().ok_or("--only is required")?;
    let depth = args.depth.ok_or("--depth is required")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io_uring()
        .build()
        .map_err(|e| format!("cannot start tokio with io_uring: {e}"))?;
    let outcome = rt.block_on(measure(&args, peer, depth))?;
    print_result("tokio_uring_randread", depth, peer, 0, &outcome);
    Ok(())
}

fn main() {
    if let Err(msg) = run() {
        eprintln!("tokio_uring_randread: {msg}\n{USAGE}");
        std::process::exit(1);
    }
}
