//! Files and paths on the io_uring runtime.
//!
//! Every operation here is an io_uring submission, built only with the
//! public [`runtime::op`] API: opening is `IORING_OP_OPENAT`, reads and
//! writes are `READ`/`WRITE`/`READV`/`WRITEV` at explicit offsets,
//! [`File::sync_all`] is `FSYNC`, metadata is `STATX`, and
//! [`remove_file`], [`remove_dir`], [`create_dir`] and [`rename`] are
//! `UNLINKAT`, `MKDIRAT` and `RENAMEAT`. Nothing blocks the ring and no
//! thread pool is involved, but for [`read_dir`]: io_uring has no operation
//! that reads a directory, so `std::fs::read_dir` runs on the runtime's
//! blocking pool, 64 entries per call.
//!
//! Reads first take what the page cache holds at once: one
//! `preadv2(RWF_NOWAIT)` on the runtime's thread, which costs less than a
//! trip through the ring when the bytes are cached; only the rest (a page
//! the cache lacks) goes through the ring. A file whose reads keep
//! finding nothing cached rests from the attempt for a while (1, 2, 4, ...
//! up to 64 reads after 4 misses in a row), so reads from the device cost
//! almost nothing more. Files opened with `O_DIRECT` skip that attempt, and `runtime::Builder::nowait_reads(false)` turns it
//! off. A task reading cached bytes in a loop still lets the others run:
//! past a budget of such reads between two turns of the ring, its reads
//! go through the ring.
//!
//! ```
//! # runtime::block_on(async {
//! let dir = std::env::temp_dir().join(format!("fs-doc-{}", std::process::id()));
//! fs::create_dir(&dir).await?;
//! let path = dir.join("hello.txt");
//!
//! fs::write(&path, "hello, ring").await?;
//! assert_eq!(fs::read(&path).await?, b"hello, ring");
//!
//! let file = fs::File::open(&path).await?;
//! let (res, buf) = file.read_at(Vec::with_capacity(4), 7).await;
//! assert_eq!(res?, 4);
//! assert_eq!(buf, b"ring");
//! assert_eq!(file.metadata().await?.len(), 11);
//! file.close().await?;
//!
//! fs::remove_file(&path).await?;
//! fs::remove_dir(&dir).await?;
//! # Ok::<(), std::io::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Buffers
//!
//! Like every I/O method of the runtime, reads and writes take their buffer
//! by value and hand it back in a [`BufResult`](runtime::BufResult): the
//! kernel owns the buffer while the operation is in flight. A read fills a
//! `Vec<u8>`'s spare capacity and extends its length; a write sends
//! `buf[..len]`. For `O_DIRECT` (through [`OpenOptions::custom_flags`]) use
//! [`AlignedBuf`] (the runtime's [`runtime::buf::AlignedBuf`], re-exported
//! here), whose memory has the alignment the device needs.
//!
//! # Descriptors
//!
//! A [`File`] keeps its descriptor in a [`runtime::op::SharedFd`], and every
//! operation on it holds a clone until its completion arrives. Dropping a
//! `File` therefore never closes a descriptor the kernel is still using: the
//! close (itself an `IORING_OP_CLOSE`) happens when the last operation
//! finishes. [`File::close`] closes at once and reports the result.
//!
//! # Errors
//!
//! Errors are [`std::io::Error`]s carrying the kernel's errno: a missing
//! file is [`NotFound`](std::io::ErrorKind::NotFound), `create_new` on an
//! existing file is [`AlreadyExists`](std::io::ErrorKind::AlreadyExists), a
//! write on a read-only handle is `EBADF`. Paths with an interior NUL byte,
//! offsets past `i64::MAX` and contradictory [`OpenOptions`] are
//! [`InvalidInput`](std::io::ErrorKind::InvalidInput). A single operation
//! moves at most `u32::MAX` bytes (the kernel caps it lower still): longer
//! requests return a short count, which the `*_all`/`*_exact` variants loop
//! over.
//!
//! On the epoll driver (`runtime::DriverKind::Epoll`, where io_uring is
//! refused) every operation runs on the runtime's blocking pool with the
//! same results (but reads the page cache serves at once); `File::write_all_at_synced` writes and syncs one after
//! the other (no chain), registered files (`File::register`) answer
//! `ErrorKind::Unsupported`, and `read_fixed_at` / `write_fixed_at` are
//! plain reads and writes (a `FixedBufPool` is never registered there).
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod cpath;
mod file;
mod fixed;
mod linked;
mod metadata;
mod open_options;
mod path;
mod read_dir;
mod rw;

pub use file::File;
pub use metadata::Metadata;
pub use open_options::OpenOptions;
pub use path::{
    create_dir, metadata, read, remove_dir, remove_file, rename, symlink_metadata, write,
};
pub use read_dir::{read_dir, DirEntry, ReadDir};
pub use runtime::buf::AlignedBuf;
