//! File reads served at once from the page cache (`preadv2(RWF_NOWAIT)`,
//! `runtime::Builder::nowait_reads`, `runtime::op::Read::cached_first`):
//! the bytes are right whichever way a read goes (all cached, partly
//! cached, evicted, `O_DIRECT`, past the end), the attempt is skipped where
//! it must be, it can be turned off, and a task reading cached bytes in a
//! loop still lets another task run.
//!
//! Which way a read went is seen in `runtime::metrics().nowait_completions`;
//! where the file system here refuses `RWF_NOWAIT` (checked with a raw
//! `preadv2` first) the tests only check the bytes. Eviction
//! (`posix_fadvise(DONTNEED)`) is a request the kernel may ignore, so no
//! test depends on it having happened. Every test runs on a fresh runtime
//! of the driver `RUNTIME_DRIVER` names (run the file with
//! `RUNTIME_DRIVER=epoll` too), inside `with_deadline`; nothing is timed.

use std::cell::Cell;
use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use fs::{AlignedBuf, File, OpenOptions};
use integration_tests::{payload, with_deadline, TempDir};
use runtime::io::OwnedRead;
use runtime::op::{Operation, Read, SharedFd};
use runtime::{Builder, DriverKind};

/// Generous limit for every test: only a hang gets near it.
const LIMIT: Duration = Duration::from_secs(120);

/// Runs `make()`'s future on a fresh runtime built by `builder`, under the
/// deadline.
fn run_with<M, F>(builder: Builder, make: M) -> F::Output
where
    M: FnOnce() -> F + Send + 'static,
    F: Future,
    F::Output: Send + 'static,
{
    with_deadline(LIMIT, move || {
        let rt = builder.build().expect("cannot start the runtime");
        rt.block_on(make())
    })
}

/// [`run_with`] on a default runtime.
fn run<M, F>(make: M) -> F::Output
where
    M: FnOnce() -> F + Send + 'static,
    F: Future,
    F::Output: Send + 'static,
{
    run_with(Builder::new(), make)
}

/// Writes `data` to a new file at `path` and reads it back once with std,
/// so that its pages are in the page cache.
fn cached_file(path: &Path, data: &[u8]) {
    std::fs::write(path, data).expect("cannot write the test file");
    assert_eq!(
        std::fs::read(path).expect("cannot read the test file"),
        data
    );
}

/// Whether `preadv2(RWF_NOWAIT)` works on the (cached) file at `path`: if
/// not, reads at once are never made there and the tests check bytes only.
fn nowait_works(path: &Path) -> bool {
    let file = std::fs::File::open(path).expect("cannot open the test file");
    let mut byte = 0u8;
    let iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    // SAFETY: one iovec pointing at a live local byte.
    let ret = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, 0, libc::RWF_NOWAIT) };
    if ret < 0 {
        eprintln!(
            "RWF_NOWAIT does not work on {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    ret >= 0
}

/// Asks the kernel to drop the file's pages from the page cache (written
/// back first); it may keep some.
fn evict(path: &Path) {
    let file = std::fs::File::open(path).expect("cannot open the test file");
    file.sync_all().expect("cannot sync the test file");
    // SAFETY: plain advice on an open descriptor; no memory involved.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise(DONTNEED)");
}

/// Reads `len` bytes at `pos` of `path` with std into the page cache,
/// without readahead (`POSIX_FADV_RANDOM` on that open file).
fn cache_range(path: &Path, pos: u64, len: usize) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).expect("cannot open the test file");
    // SAFETY: plain advice on an open descriptor; no memory involved.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
    assert_eq!(rc, 0, "posix_fadvise(RANDOM)");
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, pos)
        .expect("cannot read the test file");
}

fn nowait_count() -> u64 {
    runtime::metrics().nowait_completions
}

/// Reads of a cached file at aligned and unaligned offsets, crossing page
/// boundaries, with `read_at`, `read_exact_at` and `readv_at`, give the
/// file's bytes; where `RWF_NOWAIT` works they were served at once.
#[test]
fn cached_reads_give_the_bytes_at_once() {
    run(|| async {
        const LEN: usize = 1 << 20;
        let dir = TempDir::new("cached");
        let path = dir.join("data");
        let data = payload(1, LEN);
        cached_file(&path, &data);
        let works = nowait_works(&path);
        let file = File::open(&path).await.unwrap();
        let before = nowait_count();
        let mut reads = 0;

        let spots = [
            (0, 4096),
            (4096 * 7, 4096),
            (3000, 5000),
            (LEN - 10, 10),
            (12345, 70000),
        ];
        for (pos, len) in spots {
            let (res, buf) = file.read_at(Vec::with_capacity(len), pos as u64).await;
            assert_eq!(res.unwrap(), len, "read_at({len}) at {pos}");
            assert!(buf[..] == data[pos..pos + len], "bytes at {pos}");
            reads += 1;
        }
        // Appending to a Vec that already holds bytes.
        let mut buf = Vec::with_capacity(300);
        buf.extend_from_slice(b"head");
        let (res, buf) = file.read_at(buf, 100).await;
        assert_eq!(res.unwrap(), 296);
        assert_eq!(&buf[..4], b"head");
        assert!(buf[4..] == data[100..396]);
        reads += 1;

        let (res, buf) = file.read_exact_at(Vec::with_capacity(9999), 777).await;
        res.unwrap();
        assert!(buf[..] == data[777..777 + 9999]);
        reads += 1;

        let bufs = vec![
            Vec::with_capacity(10),
            Vec::with_capacity(5000),
            Vec::with_capacity(3),
        ];
        let (res, bufs) = file.readv_at(bufs, 4090).await;
        assert_eq!(res.unwrap(), 5013);
        let joined: Vec<u8> = bufs.concat();
        assert!(joined[..] == data[4090..4090 + 5013]);
        reads += 1;

        let done = nowait_count() - before;
        if works {
            assert_eq!(done, reads, "every read of a cached file is served at once");
        }
        file.close().await.unwrap();
    });
}

/// Reads at and past the end of a short file: the bytes up to the end,
/// then 0, for a file whose end is in the middle of a page and for one
/// that ends on a page boundary; `read_exact_at` past the end is
/// `UnexpectedEof` with the bytes that were there.
#[test]
fn short_files_and_the_end_of_file() {
    run(|| async {
        let dir = TempDir::new("short");
        for len in [100usize, 8192] {
            let path = dir.join(&format!("short-{len}"));
            let data = payload(2, len);
            cached_file(&path, &data);
            let file = File::open(&path).await.unwrap();
            for pos in [0, len / 2, len - 1] {
                let (res, buf) = file.read_at(Vec::with_capacity(16384), pos as u64).await;
                assert_eq!(res.unwrap(), len - pos, "len {len} pos {pos}");
                assert!(buf[..] == data[pos..]);
            }
            for pos in [len, len + 1, 1 << 20] {
                let (res, buf) = file.read_at(Vec::with_capacity(64), pos as u64).await;
                assert_eq!(res.unwrap(), 0, "len {len} pos {pos}");
                assert!(buf.is_empty());
            }
            let bufs = vec![Vec::with_capacity(len / 2), Vec::with_capacity(len)];
            let (res, bufs) = file.readv_at(bufs, 0).await;
            assert_eq!(res.unwrap(), len);
            assert!(bufs.concat()[..] == data[..]);

            let (res, buf) = file.read_exact_at(Vec::with_capacity(len + 50), 0).await;
            assert_eq!(res.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
            assert!(buf[..] == data[..], "the bytes before the end are kept");
            file.close().await.unwrap();
        }
    });
}

/// A read whose first pages are cached and the next ones not gives every
/// byte asked for (the rest goes through the ring or the pool), with
/// `read_at`, `readv_at` and `read_exact_at`; so do reads of a file
/// evicted from the cache.
#[test]
fn partly_cached_and_evicted_files_read_in_full() {
    run(|| async {
        const LEN: usize = 256 * 1024;
        let dir = TempDir::new("partly");
        let path = dir.join("data");
        let data = payload(3, LEN);
        cached_file(&path, &data);
        let file = File::open(&path).await.unwrap();

        evict(&path);
        cache_range(&path, 0, 4096);
        cache_range(&path, 8192, 4096);
        let (res, buf) = file.read_at(Vec::with_capacity(65536), 0).await;
        assert_eq!(res.unwrap(), 65536, "no short count where the cache stops");
        assert!(buf[..] == data[..65536]);

        evict(&path);
        cache_range(&path, 65536, 4096);
        let bufs = vec![
            Vec::with_capacity(3000),
            Vec::with_capacity(3000),
            Vec::with_capacity(10000),
        ];
        let (res, bufs) = file.readv_at(bufs, 65536).await;
        assert_eq!(res.unwrap(), 16000);
        assert!(bufs.concat()[..] == data[65536..65536 + 16000]);

        evict(&path);
        cache_range(&path, 131072, 4096);
        let (res, buf) = file.read_exact_at(Vec::with_capacity(40000), 131072).await;
        res.unwrap();
        assert!(buf[..] == data[131072..131072 + 40000]);

        // Evicted: every 4 KiB block, in a scrambled order.
        evict(&path);
        for k in 0..LEN / 4096 {
            let pos = (k * 37) % (LEN / 4096) * 4096;
            let (res, buf) = file.read_at(Vec::with_capacity(4096), pos as u64).await;
            assert_eq!(res.unwrap(), 4096);
            assert!(buf[..] == data[pos..pos + 4096], "block at {pos}");
        }
        file.close().await.unwrap();
    });
}

/// Reads at the file position (`OwnedRead`) of a cached file follow on
/// from each other, and a pipe (not a regular file: never tried at once)
/// reads as before.
#[test]
fn reads_at_the_file_position_and_of_pipes() {
    run(|| async {
        const LEN: usize = 100_000;
        let dir = TempDir::new("cursor");
        let path = dir.join("data");
        let data = payload(4, LEN);
        cached_file(&path, &data);
        let file = File::open(&path).await.unwrap();
        let mut got = Vec::new();
        loop {
            let (res, buf) = OwnedRead::read(&file, Vec::with_capacity(7000)).await;
            if res.unwrap() == 0 {
                break;
            }
            got.extend_from_slice(&buf);
        }
        assert!(got == data);

        let (r, w) = std::io::pipe().unwrap();
        std::io::Write::write_all(&mut &w, b"through a pipe").unwrap();
        let reader = File::from(OwnedFd::from(r));
        let before = nowait_count();
        let (res, buf) = OwnedRead::read(&reader, Vec::with_capacity(64)).await;
        assert_eq!(res.unwrap(), 14);
        assert_eq!(buf, b"through a pipe");
        assert_eq!(nowait_count(), before, "a pipe is not read at once");
        drop(w);
        let (res, _) = OwnedRead::read(&reader, Vec::with_capacity(64)).await;
        assert_eq!(res.unwrap(), 0);
    });
}

/// A file opened with `O_DIRECT` is never read at once (that read would
/// wait for the device); its reads are right. Skipped where no file system
/// here takes `O_DIRECT`.
#[test]
fn o_direct_files_skip_the_attempt() {
    run(|| async {
        const LEN: usize = 64 * 1024;
        let data = payload(5, LEN);
        let bases = [
            std::env::temp_dir(),
            PathBuf::from("/var/tmp"),
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        ];
        let mut found = None;
        for base in &bases {
            let dir = TempDir::new_in(base, "direct");
            let path = dir.join("data");
            cached_file(&path, &data);
            match OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path)
                .await
            {
                Ok(file) => {
                    found = Some((dir, file));
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => panic!("opening with O_DIRECT under {}: {e}", base.display()),
            }
        }
        let Some((_dir, file)) = found else {
            eprintln!("skipping: no file system here supports O_DIRECT");
            return;
        };
        let before = nowait_count();
        for k in 0..8 {
            let pos = (k * 5) % 16 * 4096;
            let (res, buf) = file.read_at(AlignedBuf::new(4096, 4096), pos as u64).await;
            assert_eq!(res.unwrap(), 4096);
            assert!(buf[..] == data[pos..pos + 4096]);
        }
        assert_eq!(nowait_count(), before, "O_DIRECT reads go the usual way");
        file.close().await.unwrap();
    });
}

/// With `Builder::nowait_reads(false)` no read is made at once, and the
/// bytes are the same.
#[test]
fn nowait_reads_can_be_turned_off() {
    run_with(Builder::new().nowait_reads(false), || async {
        let dir = TempDir::new("off");
        let path = dir.join("data");
        let data = payload(6, 50_000);
        cached_file(&path, &data);
        let file = File::open(&path).await.unwrap();
        for pos in [0usize, 4096, 33333] {
            let (res, buf) = file.read_at(Vec::with_capacity(8192), pos as u64).await;
            let n = res.unwrap();
            assert_eq!(n, 8192.min(data.len() - pos));
            assert!(buf[..] == data[pos..pos + n]);
        }
        assert_eq!(nowait_count(), 0);
        file.close().await.unwrap();
    });
}

/// `Read::cached_first` on a direct descriptor (a ring-only slot, no
/// descriptor number) and reads of a registered file (whose operations
/// name its slot) skip the attempt and read through the ring. io_uring
/// only: the epoll driver has no direct descriptors.
#[test]
fn direct_and_registered_descriptors_skip_the_attempt() {
    run(|| async {
        if runtime::features().driver != DriverKind::IoUring {
            eprintln!("skipping: direct descriptors need io_uring");
            return;
        }
        let dir = TempDir::new("directfd");
        let path = dir.join("data");
        let data = payload(7, 10_000);
        cached_file(&path, &data);
        let std_file = std::fs::File::open(&path).unwrap();
        let fd = SharedFd::new(std_file.into()).into_direct().unwrap();
        assert!(fd.is_direct());
        let before = nowait_count();
        let (res, buf) = Read::new(&fd, Vec::with_capacity(5000), 1000)
            .cached_first()
            .submit()
            .await;
        assert_eq!(res.unwrap(), 5000);
        assert!(buf[..] == data[1000..6000]);
        assert_eq!(nowait_count(), before);

        let file = File::open(&path).await.unwrap().register().unwrap();
        assert!(file.is_registered());
        let (res, buf) = file.read_at(Vec::with_capacity(3000), 2000).await;
        assert_eq!(res.unwrap(), 3000);
        assert!(buf[..] == data[2000..5000]);
        assert_eq!(nowait_count(), before);
        file.close().await.unwrap();
    });
}

/// A task reading a cached file in a loop lets another task run: its
/// reads complete at once, but past a budget per turn of the driver they
/// wait (through the ring, or a yield on the epoll driver). Without that,
/// the loop would read `MAX` times before the other task ever ran.
#[test]
fn a_loop_of_cached_reads_lets_other_tasks_run() {
    run(|| async {
        const MAX: usize = 100_000;
        let dir = TempDir::new("fair");
        let path = dir.join("data");
        let data = payload(8, 4096);
        cached_file(&path, &data);
        let file = File::open(&path).await.unwrap();
        let ran = Rc::new(Cell::new(false));
        let flag = ran.clone();
        let other = runtime::spawn(async move { flag.set(true) });
        let mut reads = 0;
        let mut buf = Vec::with_capacity(4096);
        while !ran.get() && reads < MAX {
            buf.clear();
            let (res, b) = file.read_at(buf, 0).await;
            assert_eq!(res.unwrap(), 4096);
            buf = b;
            reads += 1;
        }
        assert!(ran.get(), "the other task never ran in {reads} reads");
        assert!(reads < MAX);
        other.await.unwrap();
        file.close().await.unwrap();
    });
}
