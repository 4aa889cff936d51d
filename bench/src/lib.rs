//! Shared measurement helpers of the benchmark suite.

pub mod arch;
pub mod client;
pub mod hist;
pub mod randread;
pub mod uring;

use std::io;
use std::net::{TcpListener, ToSocketAddrs};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The listen backlog of every server of the suite, as its contract asks.
pub const BACKLOG: i32 = 4096;

/// The micro-benchmarks of the `core` program, in the order a full run
/// goes through them (also what `suite ab` assumes when a `core` binary
/// does not list its own).
pub const CORE_BENCHES: [&str; 6] = [
    "spawn_join",
    "ping_pong",
    "timers",
    "timers_1ms",
    "nop_1",
    "nop_64",
];

/// Binds `addr` (the first of its addresses that binds) with `SO_REUSEADDR`
/// and listens with a backlog of [`BACKLOG`]. The listener is blocking and
/// close-on-exec.
pub fn listen(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        let bound = (|| {
            let socket = Socket::new(Domain::for_address(a), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            socket.bind(&SockAddr::from(a))?;
            socket.listen(BACKLOG)?;
            Ok::<_, io::Error>(TcpListener::from(socket))
        })();
        match bound {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

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

/// The user + system CPU time so far, in seconds, of this process (`who`
/// = `libc::RUSAGE_SELF`: every thread, io_uring workers included) or of
/// this thread (`libc::RUSAGE_THREAD`), from `getrusage`; NaN if it fails.
pub fn cpu_secs(who: libc::c_int) -> f64 {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the call's duration.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The median (the upper one of an even count), min and max of `v`;
/// `None` when it is empty.
pub fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    Some((*s.get(s.len() / 2)?, s[0], s[s.len() - 1]))
}

/// The per-round ratios `ours[i] / peer[i]` as `1.23x [1.10..1.31]`
/// (median [min..max]), or `-` when a side has no rounds: the summary
/// tables of the benchmark programs.
pub fn ratio_text(ours: &[f64], peer: &[f64]) -> String {
    let r: Vec<f64> = ours.iter().zip(peer).map(|(o, p)| o / p).collect();
    match stats(&r) {
        Some((m, lo, hi)) => format!("{m:.2}x [{lo:.2}..{hi:.2}]"),
        None => "-".to_string(),
    }
}

/// Raises this process's `RLIMIT_NOFILE` soft limit to its hard limit, so
/// that 1,000+ connections (or connection-serving children) fit, and returns
/// the new limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit; the soft limit does not exceed
        // the hard one.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// Raises this process's `RLIMIT_NOFILE` to at least `want` descriptors
/// where it can: the soft limit to the hard one, and the hard one too when
/// it is lower than `want` and the process may raise it (root, or
/// `CAP_SYS_RESOURCE`; up to the kernel's `fs.nr_open`). Returns the soft
/// limit in force afterwards, which may still be below `want`.
pub fn raise_nofile_limit_to(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_max < want {
        let higher = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        // SAFETY: `higher` is a valid rlimit; the call fails without
        // changing anything when the process may not raise the hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &higher) } == 0 {
            return Ok(want);
        }
    }
    raise_nofile_limit()
}

#[cfg(test)]
mod tests {
    #[test]
    fn stats_and_ratio_text() {
        assert_eq!(super::stats(&[3.0, 1.0, 2.0, 4.0]), Some((3.0, 1.0, 4.0)));
        assert_eq!(super::stats(&[]), None);
        assert_eq!(
            super::ratio_text(&[2.0, 3.0, 4.0], &[1.0, 1.0, 2.0]),
            "2.00x [2.00..3.00]"
        );
        assert_eq!(super::ratio_text(&[1.0], &[]), "-");
        assert!(super::cpu_secs(libc::RUSAGE_THREAD) >= 0.0);
    }

    #[test]
    fn nofile_limit_is_raised_to_the_hard_one_at_least() {
        let got = super::raise_nofile_limit_to(64).unwrap();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(got, lim.rlim_cur);
        assert_eq!(lim.rlim_cur, lim.rlim_max, "soft raised to hard");
        assert!(got >= 64);
    }
}
