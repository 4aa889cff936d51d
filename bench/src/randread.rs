//! What the random-read programs share: `fs_randread` (a bin of this crate)
//! and `tokio_uring_randread` (bench/tokio-uring-fs, a crate of its own
//! outside the workspace, which includes this file with `#[path]`): the
//! file's geometry, the offsets every peer reads, the command line and the
//! `RESULT` line. Plain std only, so that both can compile it.

use std::path::PathBuf;

/// The length of the file read.
pub const FILE_LEN: u64 = 1 << 30;
/// The length of a read, and the alignment of its offset.
pub const BLOCK: usize = 4096;
/// How many blocks the file has.
pub const BLOCKS: u64 = FILE_LEN / BLOCK as u64;
/// The depths (reads in flight) of a full run without `--depths`.
pub const DEPTHS: [usize; 3] = [1, 32, 128];

/// A fast per-worker generator of block-aligned offsets (xorshift64*):
/// worker `worker` of round `round` reads the same blocks in every peer.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded (through splitmix64) from `round` and `worker`.
    pub fn new(round: usize, worker: usize) -> Rng {
        let mut z = ((round as u64) << 32 | worker as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The next 4 KiB-aligned offset in the file.
    pub fn offset(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) % BLOCKS * BLOCK as u64
    }
}

/// One measurement's outcome.
#[derive(Debug)]
pub enum Outcome {
    /// `ops` reads in `secs` seconds.
    Done {
        /// Reads done.
        ops: u64,
        /// Seconds they took.
        secs: f64,
    },
    /// The peer cannot run here (reason).
    Skipped(String),
}

/// Prints the measurement's `RESULT` line (and, if it was skipped, why, on
/// stderr after `prog: `); returns its rate if it ran.
pub fn print_result(
    prog: &str,
    depth: usize,
    rt: &str,
    round: usize,
    outcome: &Outcome,
) -> Option<f64> {
    match outcome {
        Outcome::Done { ops, secs } => {
            let rate = *ops as f64 / secs.max(1e-9);
            println!(
                "RESULT bench=randread depth={depth} rt={rt} round={round} ops={ops} secs={secs:.6} rate={rate:.0}"
            );
            Some(rate)
        }
        Outcome::Skipped(why) => {
            eprintln!("{prog}: {rt} skipped: {why}");
            println!("RESULT bench=randread depth={depth} rt={rt} round={round} skipped=1");
            None
        }
    }
}

/// The command line.
#[derive(Debug)]
pub struct Args {
    /// `--file`: the file read.
    pub path: PathBuf,
    /// `--rounds` (full run).
    pub rounds: usize,
    /// `--secs`: the length of a measurement.
    pub secs: f64,
    /// `--only`: the one peer measured.
    pub only: Option<String>,
    /// `--depth`: the depth of the one measurement.
    pub depth: Option<usize>,
    /// `--peers` (full run).
    pub peers: Vec<String>,
    /// `--depths` (full run).
    pub depths: Vec<usize>,
}

impl Args {
    /// Parses the flags in `it`. `known` are the peers `--only` and
    /// `--peers` accept, `peers` the default of `--peers`; without `full`,
    /// `--rounds`, `--peers` and `--depths` are unknown arguments.
    pub fn parse(
        mut it: impl Iterator<Item = String>,
        known: &[&str],
        peers: &[&str],
        full: bool,
    ) -> Result<Args, String> {
        let peer_name = |name: &str| {
            if known.contains(&name) {
                Ok(name.to_string())
            } else {
                Err(format!("unknown peer {name}"))
            }
        };
        let mut args = Args {
            path: PathBuf::from("/var/tmp/fs_randread.dat"),
            rounds: 5,
            secs: 2.0,
            only: None,
            depth: None,
            peers: peers.iter().map(|p| p.to_string()).collect(),
            depths: DEPTHS.to_vec(),
        };
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--file" => args.path = PathBuf::from(value()?),
                "--rounds" if full => {
                    args.rounds = value()?
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or("--rounds needs a positive number")?
                }
                "--secs" => {
                    args.secs = value()?
                        .parse()
                        .ok()
                        .filter(|&s: &f64| s > 0.0 && s.is_finite())
                        .ok_or("--secs needs a positive number")?
                }
                "--only" => args.only = Some(peer_name(&value()?)?),
                "--peers" if full => {
                    args.peers = value()?
                        .split(',')
                        .map(peer_name)
                        .collect::<Result<_, _>>()?;
                }
                "--depths" if full => {
                    args.depths = value()?
                        .split(',')
                        .map(|d| d.parse().ok().filter(|&n: &usize| n > 0))
                        .collect::<Option<_>>()
                        .ok_or("--depths needs positive numbers, comma-separated")?;
                }
                "--depth" => {
                    args.depth = Some(
                        value()?
                            .parse()
                            .ok()
                            .filter(|&n| n > 0)
                            .ok_or("--depth needs a positive number")?,
                    )
                }
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str], full: bool) -> Result<Args, String> {
        Args::parse(v.iter().map(|s| s.to_string()), &["a", "b"], &["a"], full)
    }

    #[test]
    fn flags_and_their_errors() {
        let a = parse(&[], true).unwrap();
        assert_eq!(a.path, PathBuf::from("/var/tmp/fs_randread.dat"));
        assert_eq!(
            (a.rounds, a.secs, a.peers.clone()),
            (5, 2.0, vec!["a".into()])
        );
        assert_eq!(a.depths, DEPTHS);
        assert!(a.only.is_none() && a.depth.is_none());
        let a = parse(
            &[
                "--file", "/x", "--only", "b", "--depth", "3", "--secs", "0.5",
            ],
            false,
        )
        .unwrap();
        assert_eq!(a.path, PathBuf::from("/x"));
        assert_eq!(
            (a.only.as_deref(), a.depth, a.secs),
            (Some("b"), Some(3), 0.5)
        );
        let a = parse(
            &["--peers", "b,a,b", "--depths", "4,1", "--rounds", "2"],
            true,
        )
        .unwrap();
        assert_eq!(
            (a.peers, a.depths, a.rounds),
            (vec!["b".into(), "a".into(), "b".into()], vec![4, 1], 2)
        );
        for (bad, full, why) in [
            (&["--only", "c"][..], true, "unknown peer c"),
            (&["--peers", "a,c"], true, "unknown peer c"),
            (&["--peers", "a"], false, "unknown argument --peers"),
            (&["--rounds", "2"], false, "unknown argument --rounds"),
            (&["--depths", "1"], false, "unknown argument --depths"),
            (&["--depth", "0"], true, "--depth needs a positive number"),
            (&["--secs", "inf"], true, "--secs needs a positive number"),
            (&["--secs"], true, "--secs needs a value"),
            (&["--what"], true, "unknown argument --what"),
        ] {
            assert_eq!(parse(bad, full).err().as_deref(), Some(why), "{bad:?}");
        }
    }

    #[test]
    fn offsets_are_aligned_in_the_file_and_differ_by_worker() {
        let (mut a, mut b) = (Rng::new(0, 0), Rng::new(0, 1));
        let (xa, xb): (Vec<u64>, Vec<u64>) = (0..64).map(|_| (a.offset(), b.offset())).unzip();
        assert!(xa
            .iter()
            .chain(&xb)
            .all(|&o| o % BLOCK as u64 == 0 && o < FILE_LEN));
        assert_ne!(xa, xb);
        let mut again = Rng::new(0, 0);
        assert!(xa.iter().all(|&o| o == again.offset()), "the same sequence");
    }
}
