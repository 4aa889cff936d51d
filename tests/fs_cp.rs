//! Integration tests of the `cp` and `cat` examples, run as the real
//! programs.
//!
//! The examples are built once per test run with `cargo build -p examples`
//! into a private target directory under `CARGO_TARGET_TMPDIR` (so the
//! nested build never waits for the outer cargo's lock, and never inherits
//! sanitizer flags meant for this test binary), then run with
//! `std::process::Command`. Every test is bounded by `with_deadline`;
//! nothing depends on timing. Scratch files live in unique directories
//! under `std::env::temp_dir()`, removed at the end.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use integration_tests::{with_deadline, TempDir};

/// Covers a cold build of the examples plus a 256 MiB copy and compare.
const LIMIT: Duration = Duration::from_secs(900);

/// The directory holding the built examples.
fn examples_dir() -> PathBuf {
    integration_tests::example_binary(env!("CARGO_TARGET_TMPDIR"), "cp")
        .parent()
        .expect("the binary is in a directory")
        .to_path_buf()
}

/// Runs an example with `args` (and `stdin` as its input) to completion.
fn run_example(name: &str, args: &[&Path], stdin: &[u8]) -> Output {
    let mut child = Command::new(examples_dir().join(name))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run the {name} example: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(stdin).expect("cannot feed stdin");
    drop(input);
    child
        .wait_with_output()
        .expect("cannot wait for the example")
}

/// Writes `len` bytes of a deterministic non-repeating pattern to `path`.
fn write_pattern(path: &Path, len: usize, seed: u64) {
    let mut file = std::fs::File::create(path).expect("cannot create the source");
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        for word in chunk[..n].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
        file.write_all(&chunk[..n])
            .expect("cannot write the source");
        left -= n;
    }
}

/// Asserts that two files have the same length and the same bytes,
/// reporting the first difference.
fn assert_same_file(a: &Path, b: &Path) {
    let (la, lb) = (
        std::fs::metadata(a).unwrap().len(),
        std::fs::metadata(b).unwrap().len(),
    );
    assert_eq!(la, lb, "lengths differ");
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut ba, mut bb) = (vec![0u8; 8 << 20], vec![0u8; 8 << 20]);
    let mut offset = 0u64;
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            let mut rest = [0u8; 1];
            assert_eq!(fb.read(&mut rest).unwrap(), 0, "copy is longer");
            return;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            let at = (0..n).find(|&i| ba[i] != bb[i]).unwrap();
            panic!("files differ at byte {}", offset + at as u64);
        }
        offset += n as u64;
    }
}

/// `cp` copies a 256 MiB file (plus an odd tail, so the last chunk is
/// short) byte for byte over a longer existing destination, which ends with
/// the source's length; it reports the bytes and the rate. A second copy
/// with `--depth 3` of a smaller file agrees too.
#[test]
fn cp_copies_256_mib_byte_for_byte() {
    with_deadline(LIMIT, || {
        let dir = TempDir::new("big");
        let (src, dst) = (dir.join("src"), dir.join("dst"));
        let len = (256 << 20) + 12_345;
        write_pattern(&src, len, 1);
        write_pattern(&dst, len + (3 << 20), 2);

        let out = run_example("cp", &[&src, &dst], b"");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "cp failed: {stderr}");
        assert!(
            stdout.contains(&format!("copied {len} bytes")) && stdout.contains("MB/s"),
            "unexpected report: {stdout}"
        );
        assert_same_file(&src, &dst);

        let small = dir.join("small");
        write_pattern(&small, 5 * 128 * 1024 + 77, 3);
        let depth = Path::new("--depth");
        let out = run_example(
            "cp",
            &[&small, &dir.join("small2"), depth, Path::new("3")],
            b"",
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("depth 3"));
        assert_same_file(&small, &dir.join("small2"));
    });
}

/// `cp` with a missing source, a directory, the same file twice, or bad
/// arguments exits with an error message and a failure status, never a
/// panic; an empty source gives an empty copy.
#[test]
fn cp_reports_bad_input_clearly() {
    with_deadline(LIMIT, || {
        let dir = TempDir::new("cp-errors");
        let file = dir.join("file");
        write_pattern(&file, 1000, 4);
        let missing = dir.join("missing");
        let cases: Vec<(Vec<&Path>, i32, &str)> = vec![
            (vec![&missing, &file], 1, "No such file"),
            (vec![dir.path(), &missing], 1, "is a directory"),
            (vec![&file, &file], 1, "same file"),
            (vec![&file], 2, "usage"),
            (
                vec![&file, &missing, Path::new("--depth"), Path::new("0")],
                2,
                "usage",
            ),
            (vec![&file, &missing, Path::new("--depth")], 2, "usage"),
            (
                vec![&file, &missing, Path::new("--nope")],
                2,
                "unknown option",
            ),
        ];
        for (args, code, message) in cases {
            let out = run_example("cp", &args, b"");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
            assert!(stderr.contains(message), "{args:?}: {stderr}");
            assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        }
        assert_eq!(
            std::fs::metadata(&file).unwrap().len(),
            1000,
            "cp a a kept a"
        );
        assert!(!missing.exists());

        let empty = dir.join("empty");
        std::fs::write(&empty, b"").unwrap();
        let out = run_example("cp", &[&empty, &dir.join("empty2")], b"");
        assert!(out.status.success());
        assert_eq!(std::fs::metadata(dir.join("empty2")).unwrap().len(), 0);
    });
}

/// `cat` writes its files (and `-`, standard input) in order to standard
/// output; a missing file is reported, skipped, and makes the status 1.
#[test]
fn cat_streams_files_in_order() {
    with_deadline(LIMIT, || {
        let dir = TempDir::new("cat");
        let (a, b) = (dir.join("a"), dir.join("b"));
        write_pattern(&a, 300_000, 5);
        std::fs::write(&b, b"second file\n").unwrap();
        let stdin = b"from stdin\n";
        let out = run_example("cat", &[&a, Path::new("-"), &b], stdin);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut expected = std::fs::read(&a).unwrap();
        expected.extend_from_slice(stdin);
        expected.extend_from_slice(b"second file\n");
        assert!(out.stdout == expected, "cat output differs");

        let missing = dir.join("missing");
        let out = run_example("cat", &[&b, &missing, &b], b"");
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(out.stdout, b"second file\nsecond file\n");
        assert!(String::from_utf8_lossy(&out.stderr).contains("No such file"));

        let out = run_example("cat", &[], b"");
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
    });
}
