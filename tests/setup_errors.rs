//! Tests of the runtime's error reporting when it cannot set up io_uring.
//!
//! Contract under test (`runtime::Runtime::new()` and
//! `runtime::Runtime::builder().build()` both return `io::Result<Runtime>`):
//!
//! * where `io_uring_setup` fails with `EPERM`, `ENOSYS` or `ENOMEM`, the
//!   default runtime runs on the epoll driver (`features().driver`), and
//!   serves TCP, UDP, Unix sockets, files, timers and blocking work there;
//! * a runtime that insists on io_uring (`Builder::driver(DriverKind::IoUring)`)
//!   gets the clear errors below instead:
//! * `io_uring_setup` failing with `EPERM` gives `ErrorKind::PermissionDenied`
//!   and a message naming `kernel.io_uring_disabled` and `seccomp`;
//! * `ENOSYS` gives `ErrorKind::Unsupported` and a message naming the kernel
//!   version needed (`Linux 5.11`);
//! * `ENOMEM` gives `ErrorKind::OutOfMemory` and a message naming
//!   `RLIMIT_MEMLOCK` and `ulimit -l`;
//! * in every case the error wraps a custom error (`get_ref()` is `Some`)
//!   whose `source()` is an `io::Error` carrying the raw errno;
//! * builder values out of range (`entries(0)`, `entries(1 << 20)`) give
//!   `ErrorKind::InvalidInput`.
//!
//! The setup failures are produced for real, not simulated: each parent test
//! re-executes this very test binary (`std::env::current_exe()`) as a child
//! process that runs exactly one child test. The child test installs a
//! seccomp BPF filter on its own thread that makes the `io_uring_setup`
//! system call fail with the chosen errno, then calls the runtime and checks
//! the error. It prints a marker line when every check passed; the parent
//! requires both a successful exit status and that marker, so a child that
//! silently skipped its work fails the parent.
//!
//! The child tests are inert unless the environment says they are the child
//! of this binary for this errno (`SETUP_ERRORS_CHILD_ERRNO` equal to their
//! errno and `SETUP_ERRORS_PARENT_PID` equal to `getppid()`), so a normal
//! `cargo test` run (the parent process) never installs a filter.

use std::io;

use runtime::Runtime;

/// Asserts that `res` is an error of kind `InvalidInput`.
fn assert_invalid_input(what: &str, res: io::Result<Runtime>) {
    match res {
        Ok(_) => panic!("{what}: expected an InvalidInput error, got Ok(Runtime)"),
        Err(err) => assert_eq!(
            err.kind(),
            io::ErrorKind::InvalidInput,
            "{what}: wrong error kind, error: {err} ({err:?})"
        ),
    }
}

#[test]
fn builder_zero_entries_is_invalid_input() {
    assert_invalid_input(
        "Runtime::builder().entries(0).build()",
        Runtime::builder().entries(0).build(),
    );
}

#[test]
fn builder_too_many_entries_is_invalid_input() {
    assert_invalid_input(
        "Runtime::builder().entries(1 << 20).build()",
        Runtime::builder().entries(1 << 20).build(),
    );
}

/// The seccomp-based tests. Limited to the architectures whose audit
/// architecture value is defined below; the filter is written for one
/// native syscall ABI.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod seccomp {
    use std::io;
    use std::mem::offset_of;
    use std::process::{Command, Stdio};

    use libc::{c_int, c_ulong, sock_filter, sock_fprog};
    use runtime::{DriverKind, Runtime};

    /// Environment variable telling a child test which errno to inject.
    const CHILD_ERRNO_ENV: &str = "SETUP_ERRORS_CHILD_ERRNO";
    /// Environment variable holding the pid of the parent test process; the
    /// child only acts when it equals `getppid()`.
    const PARENT_PID_ENV: &str = "SETUP_ERRORS_PARENT_PID";

    /// `AUDIT_ARCH_X86_64` from `<linux/audit.h>`:
    /// `EM_X86_64 (62) | __AUDIT_ARCH_64BIT (0x8000_0000) | __AUDIT_ARCH_LE (0x4000_0000)`.
    /// Not exported by the `libc` crate.
    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH_NATIVE: u32 = 0xC000_003E;
    /// `AUDIT_ARCH_AARCH64` from `<linux/audit.h>`:
    /// `EM_AARCH64 (183) | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
    /// Not exported by the `libc` crate.
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH_NATIVE: u32 = 0xC000_00B7;

    /// A BPF statement (`BPF_STMT` in `<linux/filter.h>`).
    const fn stmt(code: u32, k: u32) -> sock_filter {
        sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        }
    }

    /// A BPF conditional jump (`BPF_JUMP` in `<linux/filter.h>`): skip `jt`
    /// instructions if the condition holds, `jf` otherwise.
    const fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
        sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }

    /// Builds the filter program: native-arch `io_uring_setup` fails with
    /// `errno`, everything else is allowed.
    fn filter_program(errno: c_int) -> Vec<sock_filter> {
        let arch_offset = offset_of!(libc::seccomp_data, arch) as u32;
        let nr_offset = offset_of!(libc::seccomp_data, nr) as u32;
        let deny = libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA);
        vec![
            // A = seccomp_data.arch
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, arch_offset),
            // if A == native arch skip the next instruction, else fall through
            jump(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                AUDIT_ARCH_NATIVE,
                1,
                0,
            ),
            // foreign arch: allow
            stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
            // A = seccomp_data.nr
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, nr_offset),
            // if A == io_uring_setup fall through to deny, else skip it
            jump(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                libc::SYS_io_uring_setup as u32,
                0,
                1,
            ),
            stmt(libc::BPF_RET | libc::BPF_K, deny),
            stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
        ]
    }

    /// Installs the filter on the calling thread (and threads it creates
    /// later). Only ever called from a child process; see `child_is_active`.
    fn install_filter(errno: c_int) {
        let mut program = filter_program(errno);
        let prog = sock_fprog {
            len: u16::try_from(program.len()).expect("filter too long"),
            filter: program.as_mut_ptr(),
        };

        // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes four further integer
        // arguments, all passed as full-width `c_ulong` (the kernel rejects
        // non-zero garbage in the unused ones); it touches no memory of ours.
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_NO_NEW_PRIVS,
                1 as c_ulong,
                0 as c_ulong,
                0 as c_ulong,
                0 as c_ulong,
            )
        };
        assert_eq!(rc, 0, "PR_SET_NO_NEW_PRIVS: {}", io::Error::last_os_error());

        // SAFETY: `prog` is a valid `sock_fprog` whose `filter` points to
        // `program.len()` initialised `sock_filter`s; both `prog` and
        // `program` outlive the call, and the kernel copies the program
        // before prctl returns, keeping no pointer to our memory.
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as c_ulong,
                &prog as *const sock_fprog,
            )
        };
        assert_eq!(rc, 0, "PR_SET_SECCOMP: {}", io::Error::last_os_error());
        drop(program);
    }

    /// Whether this process is a child spawned by `run_child` for `errno`.
    fn child_is_active(errno: c_int) -> bool {
        let wanted = std::env::var(CHILD_ERRNO_ENV).ok();
        if wanted.as_deref() != Some(errno.to_string().as_str()) {
            return false;
        }
        // SAFETY: getppid has no preconditions and cannot fail.
        let ppid = unsafe { libc::getppid() };
        std::env::var(PARENT_PID_ENV).ok().as_deref() == Some(ppid.to_string().as_str())
    }

    /// The line a child prints once all its checks passed.
    fn marker(errno: c_int) -> String {
        format!("SETUP-ERRORS-CHILD-OK[errno={errno}]")
    }

    /// Checks one setup error against the contract for `errno`.
    fn check_error(
        what: &str,
        res: io::Result<Runtime>,
        errno: c_int,
        kind: io::ErrorKind,
        needles: &[&str],
    ) {
        let err = match res {
            Ok(_) => panic!("{what}: expected an error with io_uring_setup denied, got Ok"),
            Err(err) => err,
        };
        assert_eq!(
            err.kind(),
            kind,
            "{what}: wrong kind, error: {err} ({err:?})"
        );
        let message = err.to_string();
        for needle in needles {
            assert!(
                message.contains(needle),
                "{what}: message lacks {needle:?}: {message:?}"
            );
        }
        let inner = err
            .get_ref()
            .unwrap_or_else(|| panic!("{what}: get_ref() is None, error: {err:?}"));
        let source = std::error::Error::source(inner)
            .unwrap_or_else(|| panic!("{what}: inner error has no source(), error: {err:?}"));
        let os = source
            .downcast_ref::<io::Error>()
            .unwrap_or_else(|| panic!("{what}: source() is not an io::Error: {source:?}"));
        assert_eq!(
            os.raw_os_error(),
            Some(errno),
            "{what}: source() carries the wrong errno: {os:?}"
        );
    }

    /// Body of a child test: inert in the parent, checks for real in the child.
    fn child(errno: c_int, kind: io::ErrorKind, needles: &[&str]) {
        if !child_is_active(errno) {
            return;
        }
        install_filter(errno);
        check_error(
            "Runtime::builder().driver(DriverKind::IoUring).build()",
            Runtime::builder().driver(DriverKind::IoUring).build(),
            errno,
            kind,
            needles,
        );
        // The default runs on epoll instead (the parent removed
        // RUNTIME_DRIVER from the child's environment).
        let rt = Runtime::new().expect("the default runtime falls back to epoll");
        assert_eq!(rt.features().driver, DriverKind::Epoll);
        assert!(!rt.features().send_zc && !rt.features().buffer_rings);
        let rt = Runtime::builder()
            .build()
            .expect("Builder::build falls back to epoll");
        assert_eq!(rt.features().driver, DriverKind::Epoll);
        println!("\n{}", marker(errno));
    }

    /// Body of the child test that serves everything on the default
    /// runtime, which is on epoll under the filter.
    fn child_serving(errno: c_int) {
        if !child_is_active(errno) {
            return;
        }
        install_filter(errno);
        let rt = Runtime::new().expect("the default runtime falls back to epoll");
        assert_eq!(rt.features().driver, DriverKind::Epoll);
        rt.block_on(super::serve_everything());
        println!("\n{}", marker(errno));
    }

    /// Runs `child_test` of this binary in a child process injecting `errno`
    /// and requires it to succeed and print its marker.
    fn run_child(child_test: &str, errno: c_int) {
        let exe = std::env::current_exe().expect("current_exe");
        let output = Command::new(&exe)
            .args(["--exact", child_test, "--nocapture", "--test-threads=1"])
            .env(CHILD_ERRNO_ENV, errno.to_string())
            .env(PARENT_PID_ENV, std::process::id().to_string())
            .env_remove("RUNTIME_DRIVER")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", exe.display()));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "child {child_test} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            output.status
        );
        assert!(
            stdout.contains(&marker(errno)),
            "child {child_test} exited successfully but did not print {:?}:\n\
             --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            marker(errno)
        );
    }

    #[test]
    fn child_io_uring_setup_eperm() {
        child(
            libc::EPERM,
            io::ErrorKind::PermissionDenied,
            &["kernel.io_uring_disabled", "seccomp"],
        );
    }

    #[test]
    fn child_io_uring_setup_enosys() {
        child(libc::ENOSYS, io::ErrorKind::Unsupported, &["Linux 5.11"]);
    }

    #[test]
    fn child_io_uring_setup_enomem() {
        child(
            libc::ENOMEM,
            io::ErrorKind::OutOfMemory,
            &["RLIMIT_MEMLOCK", "ulimit -l"],
        );
    }

    #[test]
    fn child_serving_under_eperm() {
        child_serving(libc::EPERM);
    }

    #[test]
    fn child_serving_under_enosys() {
        child_serving(libc::ENOSYS);
    }

    #[test]
    fn default_runtime_serves_on_epoll_where_io_uring_is_refused() {
        run_child("seccomp::child_serving_under_eperm", libc::EPERM);
    }

    #[test]
    fn default_runtime_serves_on_epoll_without_io_uring() {
        run_child("seccomp::child_serving_under_enosys", libc::ENOSYS);
    }

    #[test]
    fn eperm_is_permission_denied() {
        run_child("seccomp::child_io_uring_setup_eperm", libc::EPERM);
    }

    #[test]
    fn enosys_is_unsupported() {
        run_child("seccomp::child_io_uring_setup_enosys", libc::ENOSYS);
    }

    #[test]
    fn enomem_is_out_of_memory() {
        run_child("seccomp::child_io_uring_setup_enomem", libc::ENOMEM);
    }
}

/// TCP (single and multishot accepts, connect, reads, writes, shutdown),
/// UDP, Unix streams and listeners, files and paths, timers and blocking
/// work, all on the runtime this runs on (the epoll driver, in the child
/// processes above). Panics on any difference from what is expected.
#[cfg_attr(
    not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )),
    allow(dead_code)
)]
async fn serve_everything() {
    use std::time::Duration;

    // TCP: an echo server on the multishot accept stream.
    let listener = net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let server = runtime::spawn(async move {
        let mut incoming = listener.incoming();
        for _ in 0..3 {
            let stream = incoming.next().await.expect("never ends").expect("accept");
            runtime::spawn(async move {
                let mut buf = Vec::with_capacity(4096);
                loop {
                    let (res, b) = stream.read(buf).await;
                    if !matches!(res, Ok(n) if n > 0) {
                        return;
                    }
                    let (res, b) = stream.write_all(b).await;
                    res.expect("echo write");
                    buf = b;
                    buf.clear();
                }
            });
        }
    });
    for i in 0..3u8 {
        let stream = net::TcpStream::connect(addr).await.expect("connect");
        let msg = vec![i; 100_000];
        let (res, _) = stream.write_all(msg.clone()).await;
        res.expect("write_all");
        let (res, got) = stream.read_exact(Vec::with_capacity(msg.len())).await;
        res.expect("read_exact");
        assert_eq!(got, msg);
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        let (res, _) = stream.read(Vec::with_capacity(8)).await;
        assert_eq!(res.expect("eof"), 0);
    }
    server.await.expect("server task");

    // TCP: a single accept, and a refused connection.
    let listener = net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let client = runtime::spawn(async move {
        let s = net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"ping".to_vec()).await.0.expect("write");
    });
    let (stream, peer) = listener.accept().await.expect("accept");
    assert!(peer.ip().is_loopback());
    let (res, got) = stream.read_exact(Vec::with_capacity(4)).await;
    res.expect("read");
    assert_eq!(got, b"ping");
    client.await.expect("client");
    drop(listener);
    let err = net::TcpStream::connect(addr)
        .await
        .expect_err("nobody listens");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);

    // UDP.
    let a = net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    let b = net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    let b_addr = b.local_addr().expect("udp addr");
    a.send_to(b"datagram".to_vec(), b_addr)
        .await
        .0
        .expect("send_to");
    let (res, got) = b.recv_from(Vec::with_capacity(64)).await;
    let (n, from) = res.expect("recv_from");
    assert_eq!((n, &got[..]), (8, &b"datagram"[..]));
    assert_eq!(from, a.local_addr().expect("udp addr"));

    // Unix: a pair, and a listener.
    let (x, y) = net::UnixStream::pair().expect("pair");
    x.write_all(b"unix".to_vec()).await.0.expect("unix write");
    let (res, got) = y.read_exact(Vec::with_capacity(4)).await;
    res.expect("unix read");
    assert_eq!(got, b"unix");
    let dir = std::env::temp_dir().join(format!("epoll-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("sock");
    let ul = net::UnixListener::bind(&path).expect("unix bind");
    let p2 = path.clone();
    let client = runtime::spawn(async move {
        let s = net::UnixStream::connect(&p2).await.expect("unix connect");
        s.write_all(b"hello".to_vec()).await.0.expect("write");
    });
    let (s, _) = ul.accept().await.expect("unix accept");
    let (res, got) = s.read_exact(Vec::with_capacity(5)).await;
    res.expect("read");
    assert_eq!(got, b"hello");
    client.await.expect("client");

    // Files and paths, on the blocking pool.
    let file_path = dir.join("data");
    fs::write(&file_path, b"file contents".to_vec())
        .await
        .expect("fs::write");
    assert_eq!(
        fs::read(&file_path).await.expect("fs::read"),
        b"file contents"
    );
    let file = fs::File::open(&file_path).await.expect("open");
    let (res, got) = file.read_at(Vec::with_capacity(4), 5).await;
    assert_eq!(res.expect("read_at"), 4);
    assert_eq!(got, b"cont");
    assert_eq!(file.metadata().await.expect("metadata").len(), 13);
    file.close().await.expect("close");
    let err = fs::File::open(dir.join("missing"))
        .await
        .expect_err("no such file");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    fs::remove_file(&file_path).await.expect("remove_file");

    // Timers, and a read that times out.
    runtime::time::sleep(Duration::from_millis(5)).await;
    let (q, _r) = net::UnixStream::pair().expect("pair");
    let waited =
        runtime::time::timeout(Duration::from_millis(20), q.read(Vec::with_capacity(8))).await;
    assert!(waited.is_err(), "nothing was sent");

    // Blocking work.
    let v = runtime::spawn_blocking(|| 6 * 7)
        .await
        .expect("spawn_blocking");
    assert_eq!(v, 42);

    // io_uring-only facilities say so.
    let err = runtime::op::direct_table().expect_err("no direct descriptors on epoll");
    assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
    drop(ul);
    let _ = std::fs::remove_dir_all(&dir);
}
