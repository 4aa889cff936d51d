//! Shared measurement helpers of the benchmark suite.

pub mod arch;
use std::time::{Duration, Instant};

/// Runs `f` (which performs `ops` operations) `rounds` times after one
/// warm-up round and returns the median rate in operations per second.
pub fn median_rate(rounds: usize, ops: u64, mut f: impl FnMut()) -> f64 {
    f();
    let mut rates: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            ops as f64 / start.elapsed().max(Duration::from_nanos(1)).as_secs_f64()
        })
        .collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[rates.len() / 2]
}

/// Prints one result line: ours, the peer's (if any) and their ratio.
pub fn report(name: &str, ours: f64, peer: Option<(&str, f64)>) {
    match peer {
        Some((peer_name, theirs)) => println!(
            "{name:<28} ours {:>12.0}/s   {peer_name} {:>12.0}/s   ratio {:.2}x",
            ours,
            theirs,
            ours / theirs
        ),
        None => println!("{name:<28} ours {ours:>12.0}/s"),
    }
}
