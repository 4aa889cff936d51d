//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Runs `f` on its own thread and fails the test if it does not finish
/// within `limit`: a hang becomes a clear failure instead of a stuck CI run.
pub fn with_deadline<F, R>(limit: Duration, f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => {
            let _ = handle.join();
            r
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The closure panicked: re-raise its panic here.
            match handle.join() {
                Err(p) => std::panic::resume_unwind(p),
                Ok(()) => unreachable!("sender dropped without sending"),
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("test did not finish within {limit:?} (hung?)")
        }
    }
}

/// Runs the future made by `make` on a fresh runtime with the default
/// settings, on its own thread, and fails the test if it does not finish
/// within `limit` (see [`with_deadline`]).
pub fn on_runtime<M, F>(limit: Duration, make: M) -> F::Output
where
    M: FnOnce() -> F + Send + 'static,
    F: std::future::Future,
    F::Output: Send + 'static,
{
    with_deadline(limit, move || {
        let rt = runtime::Runtime::new().expect("cannot start the runtime");
        rt.block_on(make())
    })
}

/// A current-thread tokio runtime for the clients of the ecosystem-bridge
/// tests (hyper's client, tokio-rustls), run on their own thread beside
/// the server on this runtime.
pub fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start tokio for a test client")
}

/// The path of the built example program `name`.
///
/// The examples are built once per test process with a nested
/// `cargo build --examples` into `<tmpdir>/example-bins` (pass
/// `env!("CARGO_TARGET_TMPDIR")`), with the sanitizer flags of the
/// AddressSanitizer pass removed: that pass sets `RUSTFLAGS`, which a nested
/// build without `--target` would also apply to the proc-macro crate, which
/// the compiler then cannot load. The example servers therefore run
/// uninstrumented in that pass; the runtime, net and fs code they share with
/// the instrumented tests is covered there directly.
pub fn example_binary(tmpdir: &str, name: &str) -> std::path::PathBuf {
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::OnceLock;

    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ is inside the workspace");
        let target = Path::new(tmpdir).join("example-bins");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = Command::new(cargo)
            .current_dir(workspace)
            .args(["build", "-q", "-p", "examples", "--examples"])
            .arg("--target-dir")
            .arg(&target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTC_BOOTSTRAP")
            .env_remove("CARGO_BUILD_TARGET")
            .status()
            .expect("cannot run cargo to build the examples");
        assert!(status.success(), "building the examples failed");
        target.join("debug").join("examples")
    });
    let path = dir.join(name);
    assert!(
        path.exists(),
        "no example named {name} at {}",
        path.display()
    );
    path
}

/// A running example server, started on a free loopback port; killed and
/// reaped when dropped.
#[derive(Debug)]
pub struct ExampleServer {
    child: std::process::Child,
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
}

impl ExampleServer {
    /// Starts the example `name` (see [`example_binary`]) with a free
    /// loopback address as its argument and waits, bounded, until it
    /// accepts connections. If another process takes the port first, the
    /// server exits at `bind` and a new port is tried (three attempts).
    pub fn start(tmpdir: &str, name: &str) -> ExampleServer {
        ExampleServer::start_with_env(tmpdir, name, &[])
    }

    /// [`start`](Self::start) with these environment variables set for
    /// the server (e.g. `("RUNTIME_DRIVER", "epoll")`).
    pub fn start_with_env(tmpdir: &str, name: &str, env: &[(&str, &str)]) -> ExampleServer {
        use std::process::{Command, Stdio};
        use std::time::Instant;

        let binary = example_binary(tmpdir, name);
        for attempt in 1..=3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("no free port")
                .port();
            let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
            let child = Command::new(&binary)
                .envs(env.iter().copied())
                .arg(addr.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start the {name} example: {e}"));
            let mut server = ExampleServer { child, addr };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                    return server;
                }
                if let Some(status) = server.child.try_wait().expect("try_wait") {
                    assert!(
                        attempt < 3,
                        "the {name} example exited before listening: {status}"
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the {name} example did not listen on {addr} within 60 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        unreachable!("the last attempt either returns or panics")
    }
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory, removed (with its contents) on drop. Its name is
/// unique within the machine (the process id and a counter of this
/// process), so tests running at once never share one.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty directory under `std::env::temp_dir()`, its name ending
    /// in `name`.
    pub fn new(name: &str) -> TempDir {
        TempDir::new_in(&std::env::temp_dir(), name)
    }

    /// A new, empty directory under `base` (which must exist), its name
    /// ending in `name`.
    pub fn new_in(base: &Path, name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("integration-{}-{n}-{name}", std::process::id()));
        std::fs::create_dir_all(&path).expect("cannot create the scratch directory");
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path of `name` in the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `len` deterministic bytes that differ with `seed`.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// How many descriptors of this process are connected TCP sockets whose
/// local port is `port` (listening sockets excluded), from
/// `/proc/net/tcp{,6}` and `/proc/self/fd`: immune to the descriptors
/// other tests of this process open and close meanwhile.
pub fn connected_fds_on_port(port: u16) -> usize {
    let mut inodes = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local_port = cols[1].rsplit(':').next().unwrap();
            let listening = cols[3] == "0A";
            if u16::from_str_radix(local_port, 16).unwrap() == port && !listening {
                inodes.insert(format!("socket:[{}]", cols[9]));
            }
        }
    }
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| inodes.contains(target.to_str().unwrap_or("")))
        .count()
}

/// Whether this run uses the epoll driver by request
/// (`RUNTIME_DRIVER=epoll`, as CI's second pass of the suite does).
pub fn epoll_run() -> bool {
    std::env::var("RUNTIME_DRIVER").as_deref() == Ok("epoll")
}

/// For a test that checks something only io_uring has (the kernel owning
/// a buffer after its future was dropped, SQPOLL, registered buffers, ...):
/// on an epoll run, prints the test's name and `reason` and returns `true`
/// (the test then returns at once); `false` otherwise.
///
/// ```ignore
/// if support::skip_on_epoll("SQPOLL is an io_uring setting") {
///     return;
/// }
/// ```
pub fn skip_on_epoll(reason: &str) -> bool {
    if !epoll_run() {
        return false;
    }
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("<unnamed test>");
    eprintln!("skipped on the epoll driver: {name}: {reason}");
    true
}

/// Runs `future` to completion on the calling thread with no runtime at
/// all: the waker unparks the thread (it may be woken from any thread).
pub fn park_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::TempDir;

    #[test]
    fn temp_dirs_are_distinct_and_removed_on_drop() {
        let a = TempDir::new("a");
        let b = TempDir::new("a");
        assert_ne!(a.path(), b.path());
        assert!(a.path().is_dir() && b.path().is_dir());
        assert_eq!(a.join("f"), a.path().join("f"));
        std::fs::write(a.join("f"), b"x").unwrap();
        let inner = TempDir::new_in(a.path(), "inner");
        assert!(inner.path().starts_with(a.path()));
        let (pa, pb) = (a.path().to_path_buf(), b.path().to_path_buf());
        drop(a);
        assert!(!pa.exists(), "removed with its contents");
        assert!(pb.is_dir(), "the other one stays");
        // `inner` was removed with `a`: dropping it is harmless.
        drop(inner);
        drop(b);
        assert!(!pb.exists());
    }
}
