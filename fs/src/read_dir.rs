//! [`read_dir`]: the entries of a directory.
//!
//! io_uring has no `getdents` operation, so the directory is opened and read
//! by `std::fs::read_dir` on the runtime's blocking pool
//! ([`runtime::spawn_blocking`]), a batch of entries per blocking call: the
//! ring never waits for the file system, and a huge directory is neither
//! read at once nor held in memory whole.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use runtime::JoinHandle;

/// How many entries one blocking call reads.
const BATCH: usize = 64;

/// Opens the directory at `path` for reading its entries with
/// [`ReadDir::next_entry`], like `std::fs::read_dir`.
///
/// The entries come in the order the file system gives them, without `.`
/// and `..`. They are read in batches of 64 by `std::fs::read_dir` on the
/// runtime's blocking pool (io_uring has no operation that reads a
/// directory); this call opens the directory and reads the first batch.
///
/// ```
/// # runtime::block_on(async {
/// let dir = std::env::temp_dir().join(format!("read-dir-doc-{}", std::process::id()));
/// fs::create_dir(&dir).await?;
/// fs::write(dir.join("a.txt"), "a").await?;
/// fs::create_dir(dir.join("sub")).await?;
///
/// let mut names = Vec::new();
/// let mut entries = fs::read_dir(&dir).await?;
/// while let Some(entry) = entries.next_entry().await? {
///     let kind = if entry.file_type().await?.is_dir() { "dir" } else { "file" };
///     names.push((entry.file_name().into_string().unwrap(), kind));
/// }
/// names.sort();
/// assert_eq!(names, [("a.txt".to_string(), "file"), ("sub".to_string(), "dir")]);
/// # fs::remove_file(dir.join("a.txt")).await?;
/// # fs::remove_dir(dir.join("sub")).await?;
/// # fs::remove_dir(&dir).await?;
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
///
/// # Errors
///
/// As `std::fs::read_dir`: a missing `path` is `NotFound`, a path that is
/// not a directory is `NotADirectory` (`ENOTDIR`), a directory that may not
/// be read is `PermissionDenied`; the kernel's errno is in the error.
///
/// # Panics
///
/// If no runtime is running on this thread.
pub async fn read_dir<P: AsRef<Path>>(path: P) -> io::Result<ReadDir> {
    let path = path.as_ref().to_path_buf();
    let batch = blocking(move || std::fs::read_dir(path).map(read_batch)).await??;
    Ok(ReadDir {
        entries: batch.entries,
        state: batch.rest.map_or(State::Done, State::Idle),
    })
}

/// The entries of a directory, made by [`read_dir`].
///
/// Dropping a [`next_entry`](ReadDir::next_entry) future before it
/// finishes loses no entry: a batch being read stays with the `ReadDir`,
/// and the next call takes it.
#[derive(Debug)]
pub struct ReadDir {
    /// Entries read and not handed out yet, in order (an error in its place).
    entries: VecDeque<io::Result<DirEntry>>,
    state: State,
}

/// Where the reading of the directory stands.
#[derive(Debug)]
enum State {
    /// More entries may come; no blocking call is running.
    Idle(std::fs::ReadDir),
    /// A blocking call is reading the next batch.
    Reading(JoinHandle<Batch>),
    /// The directory has no more entries.
    Done,
}

/// One batch of entries, and the directory stream if it has more.
#[derive(Debug)]
struct Batch {
    entries: VecDeque<io::Result<DirEntry>>,
    rest: Option<std::fs::ReadDir>,
}

/// Reads up to [`BATCH`] entries from `iter` (on the blocking pool).
fn read_batch(mut iter: std::fs::ReadDir) -> Batch {
    let mut entries = VecDeque::with_capacity(BATCH);
    while entries.len() < BATCH {
        match iter.next() {
            Some(entry) => entries.push_back(entry.map(|e| DirEntry::from_std(&e))),
            None => {
                return Batch {
                    entries,
                    rest: None,
                }
            }
        }
    }
    Batch {
        entries,
        rest: Some(iter),
    }
}

impl ReadDir {
    /// The next entry, or `None` once every entry was returned (and on
    /// every call after that).
    ///
    /// Most calls take an entry already read; every 64th starts a blocking
    /// call that reads the next batch.
    ///
    /// # Errors
    ///
    /// An error reading the directory (`std::fs::ReadDir` yields it in the
    /// place of an entry); the entries after it, if any, come with the
    /// next calls.
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub async fn next_entry(&mut self) -> io::Result<Option<DirEntry>> {
        loop {
            if let Some(entry) = self.entries.pop_front() {
                return entry.map(Some);
            }
            match &mut self.state {
                State::Done => return Ok(None),
                State::Idle(_) => {
                    let State::Idle(iter) = std::mem::replace(&mut self.state, State::Done) else {
                        unreachable!("the state was just matched as Idle");
                    };
                    let read = runtime::spawn_blocking(move || read_batch(iter));
                    self.state = State::Reading(read);
                }
                State::Reading(read) => {
                    // The handle stays in `self.state` while this waits, so
                    // a dropped call leaves it for the next one.
                    let batch = join(read.await)?;
                    self.entries = batch.entries;
                    self.state = batch.rest.map_or(State::Done, State::Idle);
                }
            }
        }
    }
}

/// An entry of a directory, returned by [`ReadDir::next_entry`].
#[derive(Debug)]
pub struct DirEntry {
    path: PathBuf,
    file_name: OsString,
    /// What `std::fs::DirEntry::file_type` said while the batch was read;
    /// `None` if it failed.
    file_type: Option<std::fs::FileType>,
}

impl DirEntry {
    /// The entry as read on the blocking pool: its path, its name and its
    /// type. std's `file_type` takes the type from the directory listing
    /// where the file system records it (no system call: ext4, xfs, btrfs,
    /// tmpfs, ...) and does an `lstat` otherwise, which is why it runs there.
    fn from_std(entry: &std::fs::DirEntry) -> DirEntry {
        DirEntry {
            path: entry.path(),
            file_name: entry.file_name(),
            file_type: entry.file_type().ok(),
        }
    }

    /// The full path of the entry: the path given to [`read_dir`] joined
    /// with the entry's name.
    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The entry's name within its directory (no leading path).
    pub fn file_name(&self) -> OsString {
        self.file_name.clone()
    }

    /// The entry's type, not following a symbolic link (a link is a link,
    /// as with `std::fs::DirEntry::file_type`).
    ///
    /// The type was taken when the entry was read (from the directory
    /// listing, or an `lstat` on the blocking pool where the file system
    /// does not record types), so this usually returns at once. If that
    /// failed (the entry was removed meanwhile, say), the type is asked
    /// again with `std::fs::symlink_metadata` on the blocking pool, and
    /// that error is returned if it fails again: std's `FileType` can only
    /// be made by std, so the ring's `statx` cannot provide it.
    pub async fn file_type(&self) -> io::Result<std::fs::FileType> {
        if let Some(file_type) = self.file_type {
            return Ok(file_type);
        }
        let path = self.path.clone();
        let metadata = blocking(move || std::fs::symlink_metadata(path)).await?;
        Ok(metadata?.file_type())
    }
}

/// Runs `f` on the blocking pool; its result, or a panic of `f` resumed
/// here.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> io::Result<R> {
    join(runtime::spawn_blocking(f).await)
}

/// The output of a blocking call's handle: a panic of the call is resumed
/// here, as `std::fs` would have panicked on this thread.
fn join<R>(res: Result<R, runtime::JoinError>) -> io::Result<R> {
    match res {
        Ok(value) => Ok(value),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(io::Error::other(e.to_string())),
    }
}
