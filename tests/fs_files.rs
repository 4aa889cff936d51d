//! Integration tests of the `fs` crate: files and paths on the ring.
//!
//! Every test runs on a fresh runtime inside `with_deadline`, so a hang
//! fails the test instead of blocking CI, and no assertion depends on
//! timing (the one time check, `modified()`, allows minutes of slack).
//! Tests take a process-wide lock because two of them count or probe this
//! process's descriptors, which a concurrently running test would disturb.
//! Scratch files live in unique directories under `std::env::temp_dir()`
//! (pid + counter), removed at the end.

use std::future::{poll_fn, Future};
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::rc::Rc;
use std::sync::Mutex;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use fs::{AlignedBuf, File, OpenOptions};
use integration_tests::{payload, with_deadline, TempDir};
use runtime::buf::IoBuf;
use runtime::io::{OwnedRead, OwnedWrite};
use runtime::{spawn, yield_now, Runtime};

/// Generous limit for every test: only a hang gets near it.
const LIMIT: Duration = Duration::from_secs(120);

/// Serialises the tests of this file (see the module docs).
static LOCK: Mutex<()> = Mutex::new(());

/// Runs `make()`'s future on a fresh runtime, under the deadline and the
/// lock.
fn run<M, F>(make: M) -> F::Output
where
    M: FnOnce() -> F + Send + 'static,
    F: Future,
    F::Output: Send + 'static,
{
    let _guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    with_deadline(LIMIT, move || {
        let rt = Runtime::new().expect("cannot start the runtime");
        rt.block_on(make())
    })
}

/// The number of descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("cannot list /proc/self/fd")
        .count()
}

/// Whether `fd` is an open descriptor of this process.
fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// 128 tasks write 256 KiB each at distinct offsets of one file at once;
/// reading the file back in reverse order of the chunks gives every chunk
/// intact, and the file is exactly 32 MiB.
#[test]
fn concurrent_writes_at_distinct_offsets_read_back_in_reverse() {
    run(|| async {
        const TASKS: usize = 128;
        const CHUNK: usize = 256 * 1024;
        let dir = TempDir::new("concurrent");
        let path = dir.join("data");
        let file = Rc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .await
                .unwrap(),
        );
        let writers: Vec<_> = (0..TASKS)
            .map(|i| {
                let file = file.clone();
                spawn(async move {
                    let data = payload(i as u64, CHUNK);
                    let (res, back) = file.write_all_at(data, (i * CHUNK) as u64).await;
                    res.unwrap();
                    assert_eq!(back.len(), CHUNK, "the buffer comes back whole");
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        assert_eq!(file.metadata().await.unwrap().len(), (TASKS * CHUNK) as u64);
        for i in (0..TASKS).rev() {
            let (res, buf) = file
                .read_exact_at(Vec::with_capacity(CHUNK), (i * CHUNK) as u64)
                .await;
            res.unwrap();
            assert!(buf == payload(i as u64, CHUNK), "chunk {i} differs");
        }
        // The same through the whole-file reader.
        let all = fs::read(&path).await.unwrap();
        assert_eq!(all.len(), TASKS * CHUNK);
        assert!(all[..CHUNK] == payload(0, CHUNK)[..]);
        Rc::try_unwrap(file).unwrap().close().await.unwrap();
    });
}

/// `writev_at` with 64 buffers of different sizes writes their
/// concatenation; `readv_at` with 64 buffers of other sizes scatters it
/// back in order, appending to a `Vec`'s existing contents.
#[test]
fn vectored_io_with_64_buffers() {
    run(|| async {
        let dir = TempDir::new("vectored");
        let path = dir.join("data");
        let sizes: Vec<usize> = (0..64).map(|i| 100 + i * 37).collect();
        let total: usize = sizes.iter().sum();
        let data = payload(7, total);
        let mut bufs = Vec::new();
        let mut at = 0;
        for &n in &sizes {
            bufs.push(data[at..at + n].to_vec());
            at += n;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .unwrap();
        let (res, bufs) = file.writev_at(bufs, 10).await;
        assert_eq!(res.unwrap(), total);
        assert_eq!(bufs.len(), 64);
        assert_eq!(file.metadata().await.unwrap().len(), (10 + total) as u64);

        // Read back with a different split, each Vec already holding a marker
        // byte that the read must append after.
        let read_sizes: Vec<usize> = (0..64).map(|i| 50 + ((i * 53) % 200)).collect();
        let room: usize = read_sizes.iter().sum();
        let bufs: Vec<Vec<u8>> = read_sizes
            .iter()
            .map(|&n| {
                let mut v = Vec::with_capacity(n + 1);
                v.push(0xAA);
                v
            })
            .collect();
        // Vec::with_capacity may round up: count the real room.
        let real_room: usize = bufs.iter().map(|v| v.capacity() - 1).sum();
        assert!(real_room >= room);
        let (res, bufs) = file.readv_at(bufs, 10).await;
        let n = res.unwrap();
        assert_eq!(n, real_room.min(total));
        let mut got = Vec::new();
        for b in &bufs {
            assert_eq!(b[0], 0xAA, "existing contents are kept");
            got.extend_from_slice(&b[1..]);
        }
        assert_eq!(got.len(), n);
        assert!(got[..] == data[..n]);

        // Boxed slices are overwritten from their start.
        let boxes: Vec<Box<[u8]>> = (0..64).map(|_| vec![0u8; 16].into_boxed_slice()).collect();
        let (res, boxes) = file.readv_at(boxes, 10).await;
        assert_eq!(res.unwrap(), 64 * 16);
        assert!(boxes.concat() == data[..64 * 16]);
        file.close().await.unwrap();
    });
}

/// Reads near the end of a file return short counts, reads at or past it
/// return 0, and `read_exact_at` across it fails with `UnexpectedEof`
/// keeping the bytes it got.
#[test]
fn short_reads_at_end_of_file() {
    run(|| async {
        let dir = TempDir::new("short");
        let path = dir.join("data");
        let data = payload(3, 1000);
        fs::write(&path, data.clone()).await.unwrap();
        let file = File::open(&path).await.unwrap();

        let (res, buf) = file.read_at(Vec::with_capacity(4096), 900).await;
        assert_eq!(res.unwrap(), 100);
        assert!(buf[..] == data[900..]);
        let (res, buf) = file.read_at(buf, 1000).await;
        assert_eq!(res.unwrap(), 0);
        assert_eq!(buf.len(), 100, "an empty read leaves the buffer alone");
        let (res, _) = file.read_at(Vec::with_capacity(10), 1 << 40).await;
        assert_eq!(res.unwrap(), 0);

        let (res, buf) = file.read_exact_at(Vec::with_capacity(200), 900).await;
        assert_eq!(res.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        assert!(buf[..] == data[900..], "the bytes read stay in the buffer");
        let (res, buf) = file
            .read_exact_at(vec![0u8; 1000].into_boxed_slice(), 0)
            .await;
        res.unwrap();
        assert!(buf[..] == data[..]);

        // A buffer far larger than one SQE can describe: the length is
        // clamped (not wrapped) and the read is simply short. Only address
        // space is reserved; the kernel touches 1000 bytes.
        let huge = Vec::with_capacity((u32::MAX as usize) + 101);
        let (res, huge) = file.read_at(huge, 0).await;
        assert_eq!(res.unwrap(), 1000);
        assert!(huge[..] == data[..]);
        drop(huge);
        file.close().await.unwrap();
    });
}

/// Every error of the "Bad input", and the other argument checks,
/// are `io::Error`s of the right kind, never panics; buffers come back.
#[test]
fn bad_input_gives_errors_of_the_right_kind() {
    run(|| async {
        let dir = TempDir::new("errors");
        let missing = dir.join("missing");
        let existing = dir.join("existing");
        fs::write(&existing, "hello").await.unwrap();

        // Missing files.
        assert_eq!(
            File::open(&missing).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            fs::read(&missing).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            fs::metadata(&missing).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            fs::remove_file(&missing).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            fs::rename(&missing, dir.join("x"))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            fs::create_dir(dir.join("no/such/parent"))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );

        // Write on a read-only handle: EBADF, and the buffer comes back.
        let ro = File::open(&existing).await.unwrap();
        let (res, buf) = ro.write_at(b"data".to_vec(), 0).await;
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EBADF));
        assert_eq!(buf, b"data");
        let (res, _) = ro.write_all_at(b"data".to_vec(), 0).await;
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EBADF));
        let (res, _) = ro.writev_at(vec![b"a".to_vec(), b"b".to_vec()], 0).await;
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EBADF));
        // And reading a write-only one.
        let wo = OpenOptions::new()
            .write(true)
            .open(&existing)
            .await
            .unwrap();
        let (res, _) = wo.read_at(Vec::with_capacity(8), 0).await;
        assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::EBADF));
        drop(wo);

        // create_new on an existing file.
        let err = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&existing)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(
            fs::create_dir(dir.path()).await.unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );

        // read_exact_at past the end.
        let (res, buf) = ro.read_exact_at(Vec::with_capacity(10), 100).await;
        assert_eq!(res.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        assert!(buf.is_empty());

        // Offsets past i64::MAX.
        let (res, _) = ro.read_at(Vec::with_capacity(10), u64::MAX).await;
        assert_eq!(res.unwrap_err().kind(), ErrorKind::InvalidInput);
        let (res, _) = ro.write_at(b"x".to_vec(), 1 << 63).await;
        assert_eq!(res.unwrap_err().kind(), ErrorKind::InvalidInput);

        // Interior NUL in a path, for every path-taking call.
        let nul = dir.join("bad\0name");
        let kinds = [
            File::open(&nul).await.err().map(|e| e.kind()),
            File::create(&nul).await.err().map(|e| e.kind()),
            fs::read(&nul).await.err().map(|e| e.kind()),
            fs::write(&nul, "x").await.err().map(|e| e.kind()),
            fs::metadata(&nul).await.err().map(|e| e.kind()),
            fs::symlink_metadata(&nul).await.err().map(|e| e.kind()),
            fs::remove_file(&nul).await.err().map(|e| e.kind()),
            fs::remove_dir(&nul).await.err().map(|e| e.kind()),
            fs::create_dir(&nul).await.err().map(|e| e.kind()),
            fs::rename(&nul, &existing).await.err().map(|e| e.kind()),
            fs::rename(&existing, &nul).await.err().map(|e| e.kind()),
        ];
        for (i, kind) in kinds.into_iter().enumerate() {
            assert_eq!(kind, Some(ErrorKind::InvalidInput), "call {i}");
        }

        // Invalid option combinations, as std rejects them.
        for opts in [
            OpenOptions::new(),
            OpenOptions::new().read(true).create(true).clone(),
            OpenOptions::new().read(true).truncate(true).clone(),
            OpenOptions::new().append(true).truncate(true).clone(),
        ] {
            assert_eq!(
                opts.open(&existing).await.unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }

        // Directory errors.
        let sub = dir.join("sub");
        fs::create_dir(&sub).await.unwrap();
        fs::write(sub.join("f"), "x").await.unwrap();
        assert_eq!(
            fs::remove_dir(&sub).await.unwrap_err().raw_os_error(),
            Some(libc::ENOTEMPTY)
        );
        assert_eq!(
            fs::remove_file(&sub).await.unwrap_err().raw_os_error(),
            Some(libc::EISDIR)
        );
        assert!(
            File::open(&existing).await.is_ok(),
            "nothing above broke the file"
        );
        ro.close().await.unwrap();
    });
}

/// 1,000 files are created, written and dropped (100 at a time, by
/// concurrent tasks) and afterwards the process has exactly as many
/// descriptors open as before: the asynchronous closes all happened.
#[test]
fn thousand_files_leak_no_descriptor() {
    run(|| async {
        let dir = Rc::new(TempDir::new("leak"));
        // Let the runtime settle anything it opens lazily.
        for _ in 0..3 {
            yield_now().await;
        }
        let before = open_fds();
        for wave in 0..10 {
            let tasks: Vec<_> = (0..100)
                .map(|i| {
                    let dir = dir.clone();
                    spawn(async move {
                        let n = wave * 100 + i;
                        let file = File::create(dir.join(&format!("f{n}"))).await.unwrap();
                        let (res, _) = file.write_all_at(format!("file {n}").into_bytes(), 0).await;
                        res.unwrap();
                        drop(file);
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        }
        // The closes were queued by the drops; let the ring run them.
        let mut turns = 0;
        while open_fds() > before && turns < 10_000 {
            yield_now().await;
            turns += 1;
        }
        assert_eq!(open_fds(), before, "descriptors leaked");
        assert_eq!(fs::read(dir.join("f999")).await.unwrap(), b"file 999");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1000);
    });
}

/// Dropping a `File` (and its read's future) while the read is in flight
/// does not close the descriptor under the kernel: it stays open until the
/// read's (cancelled) completion arrives, and is closed after it.
#[test]
fn drop_while_read_in_flight_keeps_the_descriptor_until_completion() {
    if integration_tests::skip_on_epoll("a pipe read runs on the blocking pool on epoll, and a read(2) in progress cannot be cancelled") {
        return;
    }
    run(|| async {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills the two-int array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 returned two fresh descriptors that we now own.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let reader = File::from(r);
        let writer = File::from(w);
        let raw = reader.as_raw_fd();
        {
            // The pipe is empty: the read stays in flight.
            let mut read = pin!(reader.read(Vec::with_capacity(16)));
            poll_fn(|cx| {
                assert!(read.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
        }
        drop(reader);
        assert!(fd_is_open(raw), "closed while the kernel still used it");
        let mut turns = 0;
        while fd_is_open(raw) && turns < 10_000 {
            yield_now().await;
            turns += 1;
        }
        assert!(
            !fd_is_open(raw),
            "never closed after the cancelled read completed"
        );
        writer.close().await.unwrap();
    });
}

/// The stream traits read and write at the file position: a pipe round
/// trip, and sequential writes that append in a regular file.
#[test]
fn stream_traits_use_the_file_position() {
    run(|| async {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills the two-int array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 returned two fresh descriptors that we now own.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let (reader, writer) = (File::from(r), File::from(w));
        let (res, _) = writer.write_all(b"through the pipe".to_vec()).await;
        res.unwrap();
        let (res, buf) = reader.read_exact(Vec::with_capacity(16)).await;
        res.unwrap();
        assert_eq!(buf, b"through the pipe");

        let dir = TempDir::new("cursor");
        let file = File::create(dir.join("f")).await.unwrap();
        for part in ["one ", "two ", "three"] {
            let (res, _) = file.write_all(part).await;
            res.unwrap();
        }
        let (res, _) = file.writev(vec![" four", " five"]).await;
        assert_eq!(res.unwrap(), 10);
        assert_eq!(
            fs::read(dir.join("f")).await.unwrap(),
            b"one two three four five"
        );
    });
}

/// `metadata` (on a handle and by path) reports length, type, permissions
/// and a modification time close to now; `symlink_metadata` sees links.
#[test]
fn metadata_fields() {
    run(|| async {
        let dir = TempDir::new("metadata");
        let path = dir.join("f");
        // SAFETY: umask only changes this process's mask; set it back at once.
        let umask = unsafe {
            let m = libc::umask(0o022);
            libc::umask(m);
            m
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&path)
            .await
            .unwrap();
        let (res, _) = file.write_all_at(vec![1u8; 12345], 0).await;
        res.unwrap();
        file.sync_all().await.unwrap();
        file.sync_data().await.unwrap();
        let m = file.metadata().await.unwrap();
        assert_eq!(m.len(), 12345);
        assert!(m.is_file() && !m.is_dir() && !m.is_symlink() && !m.is_empty());
        assert_eq!(m.permissions().mode() & 0o777, 0o640 & !umask);
        let modified = m.modified().unwrap();
        let now = SystemTime::now();
        let skew = match now.duration_since(modified) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        assert!(
            skew < Duration::from_secs(300),
            "modified {modified:?} is far from now {now:?}"
        );
        assert!(m.accessed().is_ok());
        // Birth time is optional; when reported it is not after the change.
        if let Ok(created) = m.created() {
            assert!(created <= modified + Duration::from_secs(1));
        }
        assert!(format!("{m:?}").contains("12345"));

        let by_path = fs::metadata(&path).await.unwrap();
        assert_eq!((by_path.ino(), by_path.len()), (m.ino(), 12345));
        assert_eq!(by_path.nlink(), 1);
        // SAFETY: getuid has no preconditions.
        assert_eq!(by_path.uid(), unsafe { libc::getuid() });

        let d = fs::metadata(dir.path()).await.unwrap();
        assert!(d.is_dir() && !d.is_file());

        let link = dir.join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(fs::symlink_metadata(&link).await.unwrap().is_symlink());
        assert!(fs::metadata(&link).await.unwrap().is_file());
        file.close().await.unwrap();
    });
}

/// The path functions: `create_dir`, `rename`, `remove_file`, `remove_dir`,
/// whole-file `read`/`write` (including an empty file and a `/proc` file
/// that reports size 0 but has contents), and `close` returning `Ok`.
#[test]
fn path_functions_and_whole_file_io() {
    run(|| async {
        let dir = TempDir::new("paths");
        let sub = dir.join("sub");
        fs::create_dir(&sub).await.unwrap();
        assert!(fs::metadata(&sub).await.unwrap().is_dir());

        let a = sub.join("a");
        let big = payload(11, 3 * 1024 * 1024 + 17);
        fs::write(&a, big.clone()).await.unwrap();
        assert!(fs::read(&a).await.unwrap() == big);
        fs::write(&a, "short").await.unwrap();
        assert_eq!(fs::read(&a).await.unwrap(), b"short", "write truncates");

        let b = sub.join("b");
        fs::rename(&a, &b).await.unwrap();
        assert_eq!(
            fs::metadata(&a).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(fs::read(&b).await.unwrap(), b"short");

        fs::write(&a, Vec::new()).await.unwrap();
        assert!(fs::read(&a).await.unwrap().is_empty());
        assert!(fs::metadata(&a).await.unwrap().is_empty());

        let stat = fs::read("/proc/self/stat").await.unwrap();
        assert!(!stat.is_empty(), "read past a zero size hint");
        assert!(stat.ends_with(b"\n"));

        // Append mode: positional writes on Linux go to the end.
        let f = OpenOptions::new().append(true).open(&b).await.unwrap();
        let (res, _) = f.write_all_at(" and more", 0).await;
        res.unwrap();
        f.close().await.unwrap();
        assert_eq!(fs::read(&b).await.unwrap(), b"short and more");

        let f = File::create(sub.join("c")).await.unwrap();
        assert!(f.close().await.is_ok());
        let f = File::from_std(std::fs::File::open(&b).unwrap());
        let (res, buf) = f.read_at(Vec::with_capacity(5), 0).await;
        assert_eq!((res.unwrap(), &buf[..]), (5, &b"short"[..]));
        f.close().await.unwrap();

        for name in ["a", "b", "c"] {
            fs::remove_file(sub.join(name)).await.unwrap();
        }
        fs::remove_dir(&sub).await.unwrap();
        assert_eq!(
            fs::metadata(&sub).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
    });
}

/// `O_DIRECT` reads (and writes) with `AlignedBuf` where the file system
/// allows it. If opening with `O_DIRECT` gives `EINVAL` under the temporary
/// directory, `/var/tmp` and the target directory, the file systems here do
/// not support it: the test says so and skips its remainder.
#[test]
fn o_direct_with_aligned_buffers() {
    run(|| async {
        const ALIGN: usize = 4096;
        const LEN: usize = 1024 * 1024;
        let data = payload(21, LEN);
        let bases = [
            std::env::temp_dir(),
            PathBuf::from("/var/tmp"),
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        ];
        let mut found = None;
        for base in &bases {
            let dir = TempDir::new_in(base, "direct");
            let path = dir.join("data");
            fs::write(&path, data.clone()).await.unwrap();
            match OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path)
                .await
            {
                Ok(file) => {
                    found = Some((dir, file));
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    eprintln!("O_DIRECT not supported under {}: {e}", base.display());
                }
                Err(e) => panic!("opening with O_DIRECT under {}: {e}", base.display()),
            }
        }
        let Some((_dir, file)) = found else {
            eprintln!("skipping the O_DIRECT test: no file system here supports O_DIRECT");
            return;
        };

        // Reads of 64 KiB at aligned offsets, in scrambled order.
        let mut buf = AlignedBuf::new(64 * 1024, ALIGN);
        for k in 0..16 {
            let block = (k * 7) % 16;
            let pos = block * 64 * 1024;
            buf.clear();
            let (res, b) = file.read_exact_at(buf, pos as u64).await;
            buf = b;
            res.unwrap();
            assert!(buf[..] == data[pos..pos + 64 * 1024], "block {block}");
            assert_eq!(buf.as_ptr() as usize % ALIGN, 0);
        }
        // A short read at the end: O_DIRECT reads stop at end of file.
        buf.clear();
        let (res, b) = file.read_at(buf, (LEN - ALIGN) as u64).await;
        buf = b;
        assert_eq!(res.unwrap(), ALIGN);
        assert!(buf[..] == data[LEN - ALIGN..]);

        // An aligned direct write, read back the same way.
        let mut out = AlignedBuf::new(2 * ALIGN, ALIGN);
        out.fill_spare(0x5A);
        let (res, _) = file.write_all_at(out, ALIGN as u64).await;
        res.unwrap();
        buf.clear();
        let (res, buf) = file
            .read_exact_at(buf.slice(..2 * ALIGN), ALIGN as u64)
            .await;
        res.unwrap();
        let buf = buf.into_inner();
        assert_eq!(buf.len(), 2 * ALIGN);
        assert!(buf.iter().all(|&x| x == 0x5A));
        file.close().await.unwrap();
    });
}

/// A dropped `open` future leaks no descriptor, whether the open had
/// completed or not: the runtime closes what nobody claimed.
#[test]
fn dropped_open_futures_leak_nothing() {
    run(|| async {
        let dir = TempDir::new("dropped-open");
        let path = dir.join("f");
        fs::write(&path, "x").await.unwrap();
        yield_now().await;
        let before = open_fds();
        for _ in 0..100 {
            let mut open = pin!(File::open(&path));
            poll_fn(|cx| {
                let _ = open.as_mut().poll(cx);
                Poll::Ready(())
            })
            .await;
        }
        let mut turns = 0;
        while open_fds() > before && turns < 10_000 {
            yield_now().await;
            turns += 1;
        }
        assert_eq!(open_fds(), before);
        Ok::<(), io::Error>(())
    })
    .unwrap();
}

// ---------------------------------------------------------------------------
// read_dir
// ---------------------------------------------------------------------------

/// Every entry of `dir`: (name, path, type), sorted by name.
async fn list(dir: &Path) -> io::Result<Vec<(String, PathBuf, std::fs::FileType)>> {
    let mut entries = fs::read_dir(dir).await?;
    let mut out = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name().into_string().expect("a UTF-8 name");
        out.push((name, entry.path(), entry.file_type().await?));
    }
    // The end is sticky.
    assert!(entries.next_entry().await?.is_none());
    assert!(entries.next_entry().await?.is_none());
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Files, a subdirectory, a symbolic link to a file and a dangling one:
/// every entry once (no `.` or `..`), with its path and its type, links
/// not followed; the same answer as std.
#[test]
fn read_dir_lists_files_dirs_and_links() {
    run(|| async {
        let dir = TempDir::new("read-dir");
        std::fs::write(dir.join("a.txt"), b"a").unwrap();
        std::fs::write(dir.join("b.bin"), b"bb").unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub").join("inner"), b"not listed").unwrap();
        std::os::unix::fs::symlink("a.txt", dir.join("link")).unwrap();
        std::os::unix::fs::symlink("missing", dir.join("dangling")).unwrap();

        let got = list(dir.path()).await.unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["a.txt", "b.bin", "dangling", "link", "sub"]);
        for (name, path, ty) in &got {
            assert_eq!(path, &dir.join(name));
            let std_ty = std::fs::symlink_metadata(path).unwrap().file_type();
            assert_eq!(ty, &std_ty, "{name}: not std's type");
        }
        let ty = |n: &str| got.iter().find(|e| e.0 == n).unwrap().2;
        assert!(ty("a.txt").is_file() && ty("b.bin").is_file());
        assert!(ty("sub").is_dir());
        assert!(ty("link").is_symlink() && ty("dangling").is_symlink());

        // An empty directory has no entries.
        std::fs::create_dir(dir.join("empty")).unwrap();
        assert!(list(&dir.join("empty")).await.unwrap().is_empty());

        // Debug on the public types.
        let mut entries = fs::read_dir(dir.path()).await.unwrap();
        assert!(format!("{entries:?}").contains("ReadDir"));
        let entry = entries.next_entry().await.unwrap().unwrap();
        let debug = format!("{entry:?}");
        assert!(debug.contains("DirEntry"), "{debug}");
        assert!(
            debug.contains(entry.file_name().to_str().unwrap()),
            "{debug}"
        );
    });
}

/// More entries than one batch (64): each exactly once, also when a
/// `next_entry` future is dropped while its batch is being read on the
/// blocking pool (the next call takes that batch).
#[test]
fn read_dir_reads_big_directories_in_batches_and_survives_a_dropped_call() {
    run(|| async {
        const N: usize = 300;
        let dir = TempDir::new("read-dir-big");
        for i in 0..N {
            std::fs::write(dir.join(&format!("f{i:04}")), b"").unwrap();
        }
        let got = list(dir.path()).await.unwrap();
        let names: Vec<String> = got.into_iter().map(|(n, _, _)| n).collect();
        let want: Vec<String> = (0..N).map(|i| format!("f{i:04}")).collect();
        assert_eq!(names, want);

        let mut entries = fs::read_dir(dir.path()).await.unwrap();
        let mut seen = Vec::new();
        let mut dropped = 0;
        loop {
            // Poll each call once first: one that has to wait for a batch
            // is dropped, and the call after it must still get that batch.
            let first = {
                let mut call = pin!(entries.next_entry());
                poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await
            };
            let entry = match first {
                Poll::Ready(entry) => entry,
                Poll::Pending => {
                    dropped += 1;
                    entries.next_entry().await
                }
            };
            match entry.unwrap() {
                Some(e) => seen.push(e.file_name().into_string().unwrap()),
                None => break,
            }
        }
        assert!(dropped >= N / 64, "only {dropped} calls waited for a batch");
        seen.sort();
        assert_eq!(seen, want, "an entry was lost or repeated");
    });
}

/// A missing path is `NotFound`, a file is `NotADirectory` (`ENOTDIR`).
#[test]
fn read_dir_errors() {
    run(|| async {
        let dir = TempDir::new("read-dir-errors");
        let err = fs::read_dir(dir.join("missing")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));

        std::fs::write(dir.join("file"), b"x").unwrap();
        let err = fs::read_dir(dir.join("file")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotADirectory);
        assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR));
    });
}
