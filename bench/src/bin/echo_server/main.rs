//! The TCP echo server of the benchmark suite, on each runtime in turn.
//!
//! ```text
//! echo_server <runtime> [flags] <addr>
//! ```
//!
//! `<runtime>` is one of `ours`, `ours_multishot` (multishot receive into a
//! provided buffer ring), `ours_direct` (connections accepted straight into
//! the fixed file table),
//! `tokio`, `raw`, `monoio`, `tokio_uring`, `glommio`, `compio`. Every
//! variant does the same thing, so that only the runtime differs: one
//! thread; per connection a 16 KiB buffer; read what arrives, write all of
//! it back, until the peer closes; `TCP_NODELAY` on accepted sockets. The
//! listening socket has `SO_REUSEADDR` and a backlog of 4096
//! ([`bench::listen`] makes one so). Serves until killed; prints nothing on
//! stdout. At start the soft limit on open descriptors is raised to the hard
//! limit, for every runtime, so that thousands of connections work.
//!
//! Flags of our runtime's variants (the `uring` scenario, issue 7):
//!
//! - `--no-bundles` (`ours_multishot`): receive without bundles
//!   (`RecvMulti::bundles(false)`); the default uses them where the kernel
//!   has them.
//! - `--sqpoll <idle ms>` (`ours`, `ours_multishot`, `ours_direct`): the
//!   runtime polls its submission queue from a kernel thread
//!   (`IORING_SETUP_SQPOLL`) that sleeps after `idle ms` without work.
//! - `--sqpoll-cpu <cpu>`: pins that kernel thread to `cpu` (needs
//!   `--sqpoll`).

mod compio_rt;
mod glommio_rt;
mod monoio_rt;
mod ours;
mod ours_direct;
mod ours_multishot;
mod raw;
mod tokio_rt;
mod tokio_uring_rt;

use std::net::SocketAddr;
use std::time::Duration;

/// Size of each connection's buffer, the same for every runtime.
pub const BUF_SIZE: usize = 16 * 1024;

const USAGE: &str = "usage: echo_server <ours|ours_multishot|ours_direct|tokio|raw|monoio|tokio_uring|glommio|compio> [--no-bundles] [--sqpoll <idle ms>] [--sqpoll-cpu <cpu>] <addr>";

/// Options of our runtime's variants.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opts {
    /// Receive bundles in `ours_multishot` (on unless `--no-bundles`).
    pub no_bundles: bool,
    /// `IORING_SETUP_SQPOLL` with this idle time.
    pub sqpoll: Option<Duration>,
    /// The CPU of the SQPOLL thread.
    pub sqpoll_cpu: Option<u32>,
}

impl Opts {
    /// Our runtime, built with these options.
    pub fn runtime(&self) -> std::io::Result<runtime::Runtime> {
        let mut b = runtime::Builder::new();
        if let Some(idle) = self.sqpoll {
            b = b.sqpoll(idle);
        }
        if let Some(cpu) = self.sqpoll_cpu {
            b = b.sqpoll_cpu(cpu);
        }
        b.build()
    }
}

/// Parses `<runtime> [flags] <addr>`.
fn parse() -> Result<(String, Opts, SocketAddr), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        return Err("a runtime and an address are required".into());
    }
    let rt = args[0].clone();
    let last = &args[args.len() - 1];
    let addr: SocketAddr = last
        .parse()
        .map_err(|e| format!("bad address {last:?}: {e}"))?;
    let mut opts = Opts::default();
    let mut it = args[1..args.len() - 1].iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--no-bundles" => opts.no_bundles = true,
            "--sqpoll" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|e| format!("bad --sqpoll idle time: {e}"))?;
                opts.sqpoll = Some(Duration::from_millis(ms));
            }
            "--sqpoll-cpu" => {
                opts.sqpoll_cpu = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("bad --sqpoll-cpu: {e}"))?,
                )
            }
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    let ours = rt.starts_with("ours");
    if !ours && (opts.sqpoll.is_some() || opts.sqpoll_cpu.is_some()) {
        return Err(format!("--sqpoll is for our runtime, not {rt}"));
    }
    if opts.no_bundles && rt != "ours_multishot" {
        return Err("--no-bundles is for ours_multishot".into());
    }
    Ok((rt, opts, addr))
}

fn main() {
    let (rt, opts, addr) = match parse() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("echo_server: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = bench::raise_nofile_limit() {
        // Not fatal: only many connections need it.
        eprintln!("echo_server: cannot raise the descriptor limit: {e}");
    }
    let result = match rt.as_str() {
        "ours" => ours::run(addr, opts),
        "ours_multishot" => ours_multishot::run(addr, opts),
        "ours_direct" => ours_direct::run(addr, opts),
        "tokio" => tokio_rt::run(addr),
        "raw" => raw::run(addr),
        "monoio" => monoio_rt::run(addr),
        "tokio_uring" => tokio_uring_rt::run(addr),
        "glommio" => glommio_rt::run(addr),
        "compio" => compio_rt::run(addr),
        other => {
            eprintln!("echo_server: unknown runtime {other:?}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("echo_server {rt}: {e}");
        std::process::exit(1);
    }
}
