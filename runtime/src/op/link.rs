//! Linked operations: chains of SQEs that the kernel runs one after the
//! other (`IOSQE_IO_LINK`, `IOSQE_IO_HARDLINK`), and per-op deadlines as a
//! linked `IORING_OP_LINK_TIMEOUT` (see `op/timed.rs`).
//!
//! Each operation of a chain is an ordinary [`Op`]: it owns its data until
//! **its own** CQE and gives it back with its own result, whatever happens
//! to the others. A chain is pushed into the submission queue in one piece,
//! after making room for all of it, so the kernel never sees it split in
//! two (a chain ends at the end of a submission batch).
//!
//! A link-timeout SQE gets no slot: the kernel copies its timespec when it
//! reads the SQE, which is before the op it guards can complete (the head
//! of a chain is issued only once the whole chain was read), and the
//! timespec lives in the guarded op's data until that op's CQE anyway. Its
//! own CQE, when there is one (`-ETIME` if it fired, `-ECANCELED` if the op
//! finished first, none for a success under `IOSQE_CQE_SKIP_SUCCESS`), is
//! consumed by the driver and dropped.

use std::fmt;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use io_uring::{squeue, types::Timespec};

use crate::driver::lifecycle::Creates;
use crate::driver::sys;
use crate::op::operation::{Deadline, Operation, Submitted};
use crate::op::submit::{Entry, Op};
use crate::op::timed::{link_timeout, Timed};
use crate::scheduler::{current_ptr, expect_current, Core};

/// A chain of linked operations being built: each [`push`](Link::push)
/// gives the [`Op`] future of one operation; [`submit`](Link::submit)
/// hands the whole chain to the kernel, which starts each operation when
/// the one before it has completed.
///
/// With [`Link::new`] (`IOSQE_IO_LINK`) an operation that fails (a negative
/// result, and for reads and writes also a short count) cancels the rest of
/// the chain: they complete with `ECANCELED`. With [`Link::hard`]
/// (`IOSQE_IO_HARDLINK`) the rest runs anyway.
///
/// Write then fsync, in one submission:
///
/// ```
/// use runtime::op::io_uring::{opcode, types};
/// use runtime::op::Link;
/// use std::os::fd::AsRawFd;
///
/// # runtime::block_on(async {
/// let file = std::fs::File::create(std::env::temp_dir().join("link-doc"))?;
/// let fd = types::Fd(file.as_raw_fd());
/// let mut chain = Link::new();
/// // SAFETY: the SQEs point only into the Vec's heap buffer, owned by the
/// // op until its CQE, and `file` stays open until both ops are done.
/// let (write, sync) = unsafe {
///     (
///         chain.push(b"hello".to_vec(), |b| {
///             opcode::Write::new(fd, b.as_ptr(), b.len() as u32).offset(0).build()
///         }),
///         chain.push((), |_| opcode::Fsync::new(fd).build()),
///     )
/// };
/// chain.submit()?;
/// let ((written, buf), (synced, ())) = (write.await, sync.await);
/// assert_eq!(written.result()?, 5);
/// assert_eq!(synced.result()?, 0);
/// # let _ = buf;
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
///
/// Building a chain allocates (two small vectors; a timed op also boxes its
/// timespec); a plain [`Op::submit`] does not.
///
/// The ops must not be awaited before the chain is submitted: an op of an
/// unsubmitted chain waits until the chain is submitted or dropped
/// (dropping the `Link` unsubmitted completes every op with `ECANCELED`
/// without the kernel seeing any of them).
///
/// io_uring only: on the epoll driver [`capacity`](Link::capacity) is 0,
/// [`submit`](Link::submit) fails with `ErrorKind::Unsupported` and every
/// op of the chain completes with `EOPNOTSUPP`.
pub struct Link {
    core: Rc<Core>,
    /// `IOSQE_IO_LINK` or `IOSQE_IO_HARDLINK`.
    flag: squeue::Flags,
    /// The SQEs in chain order, `user_data` set, link flags not yet.
    entries: Vec<Entry>,
    /// Slot key and `user_data` of each op (link timeouts have none).
    ops: Vec<(usize, u64)>,
    submitted: bool,
}

impl Link {
    /// Starts a chain whose failed op cancels the rest (`IOSQE_IO_LINK`).
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let chain = runtime::op::Link::new();
    /// assert!(chain.is_empty());
    /// # });
    /// ```
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub fn new() -> Link {
        Link::with_flag(squeue::Flags::IO_LINK, "runtime::op::Link::new")
    }

    /// Starts a chain whose ops run one after the other whatever their
    /// results (`IOSQE_IO_HARDLINK`).
    ///
    /// ```
    /// use runtime::op::{io_uring::opcode, Link};
    /// # runtime::block_on(async {
    /// let mut chain = Link::hard();
    /// // SAFETY: NOPs point at no memory.
    /// let (a, b) = unsafe {
    ///     (chain.push((), |_| opcode::Nop::new().build()), chain.push((), |_| opcode::Nop::new().build()))
    /// };
    /// chain.submit()?;
    /// assert_eq!(a.await.0.result()?, 0);
    /// assert_eq!(b.await.0.result()?, 0);
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub fn hard() -> Link {
        Link::with_flag(squeue::Flags::IO_HARDLINK, "runtime::op::Link::hard")
    }

    fn with_flag(flag: squeue::Flags, what: &str) -> Link {
        Link {
            core: expect_current(what),
            flag,
            entries: Vec::new(),
            ops: Vec::new(),
            submitted: false,
        }
    }

    /// Appends the operation that `build` makes from `data` and returns its
    /// future, which resolves once the chain was submitted and the
    /// operation's own CQE arrived (or the chain was dropped unsubmitted).
    ///
    /// ```
    /// use runtime::op::{io_uring::opcode, Link};
    /// # runtime::block_on(async {
    /// let mut chain = Link::new();
    /// // SAFETY: a NOP points at no memory.
    /// let nop = unsafe { chain.push(7u32, |_| opcode::Nop::new().build()) };
    /// assert_eq!(chain.len(), 1);
    /// chain.submit()?;
    /// let (c, seven) = nop.await;
    /// assert_eq!((c.result()?, seven), (0, 7));
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Safety
    ///
    /// As for [`Op::submit`]: every pointer in the SQE points into heap
    /// memory owned by `data` or into `'static` memory, and every descriptor
    /// it names stays open until the operation completes. The SQE must not
    /// set link flags itself.
    ///
    /// # Panics
    ///
    /// If the runtime running now is not the one the chain was made on:
    /// SQEs name direct descriptors and registered buffers by their index
    /// in the running runtime's tables, which would mean something else in
    /// the chain's ring.
    pub unsafe fn push<T: 'static>(
        &mut self,
        mut data: T,
        build: impl FnOnce(&mut T) -> Entry,
    ) -> Op<T> {
        self.check_runtime();
        let entry = build(&mut data);
        let creates = sys::creates(&entry);
        // SAFETY: forwarded from the caller.
        unsafe { self.push_entry(data, entry, creates) }
    }

    /// Appends a typed operation and returns the future of its output,
    /// which resolves once the chain was submitted and the operation's own
    /// CQE arrived (or the chain was dropped unsubmitted: `ECANCELED`).
    ///
    /// ```
    /// use runtime::op::{Fsync, Link, Write, SharedFd};
    ///
    /// # runtime::block_on(async {
    /// let file = std::fs::File::create(std::env::temp_dir().join("link-op-doc"))?;
    /// let fd = SharedFd::new(file.into());
    /// let mut chain = Link::new();
    /// let write = chain.push_op(Write::new(&fd, b"hello".to_vec(), 0));
    /// let sync = chain.push_op(Fsync::new(&fd, false));
    /// chain.submit()?;
    /// let (written, _buf) = write.await;
    /// assert_eq!(written?, 5);
    /// sync.await?;
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Panics
    ///
    /// As for [`push`](Self::push).
    pub fn push_op<O: Operation>(&mut self, mut op: O) -> Submitted<O> {
        self.check_runtime();
        let entry = op.sqe();
        let creates = op.creates();
        // SAFETY: `O: Operation` promises the SQE points only at memory the
        // value owns through heap allocations (or 'static memory) and names
        // descriptors it keeps open, and sets no link flags.
        Submitted::from_op(unsafe { self.push_entry(op, entry, creates) })
    }

    /// Appends a typed operation guarded by a linked
    /// `IORING_OP_LINK_TIMEOUT` (see [`push_timed`](Self::push_timed)); on
    /// timeout its output carries `ETIMEDOUT` (`ErrorKind::TimedOut`).
    ///
    /// # Panics
    ///
    /// As for [`push`](Self::push).
    pub fn push_op_timed<O: Operation>(&mut self, mut op: O, timeout: Duration) -> Deadline<O> {
        self.check_runtime();
        let entry = op.sqe();
        let creates = op.creates();
        // SAFETY: as in `push_op`.
        let timed = unsafe { self.push_timed_entry(op, entry, creates, timeout) };
        Deadline::from_timed(timed)
    }

    fn check_runtime(&self) {
        assert!(
            std::ptr::eq(Rc::as_ptr(&self.core), current_ptr()),
            "runtime::op::Link::push called on another runtime than the one the chain was \
             made on; make the chain where it is pushed to"
        );
    }

    /// Reserves the slot of one op of the chain and queues its SQE.
    ///
    /// # Safety
    ///
    /// As for [`push`](Self::push), for `entry` and `data`.
    unsafe fn push_entry<T: 'static>(&mut self, data: T, entry: Entry, creates: Creates) -> Op<T> {
        let (key, entry) = self.core.driver.borrow_mut().reserve(entry, creates);
        self.ops.push((key, entry.get_user_data()));
        self.entries.push(entry);
        // SAFETY: the slot was reserved for this op; its SQE is pushed by
        // `submit`, or the slot completed locally by `drop`.
        unsafe { Op::from_reserved(self.core.clone(), key, data) }
    }

    /// Appends an operation guarded by a linked `IORING_OP_LINK_TIMEOUT`:
    /// if it has not completed `timeout` after it started, the kernel
    /// cancels it and the future gives `ErrorKind::TimedOut`. In a
    /// [`Link::new`] chain the ops after it are then cancelled too; in a
    /// [`Link::hard`] chain they run.
    ///
    /// In a [`Link::new`] chain an op is also cancelled, with the same
    /// `ECANCELED`, when an op before it failed; its `Timed` future reports
    /// that as `TimedOut` too: the earlier ops' results tell the two apart.
    ///
    /// ```
    /// use runtime::op::{io_uring::{opcode, types}, Link};
    /// use std::time::Duration;
    /// # runtime::block_on(async {
    /// let (mut fds, mut chain) = ([0i32; 2], Link::new());
    /// // SAFETY: pipe2 fills the two-int array.
    /// assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    /// // SAFETY: the read fills the Vec's heap buffer, owned by the op; the
    /// // pipe stays open until the op is over.
    /// let read = unsafe {
    ///     chain.push_timed(vec![0u8; 8], |b| {
    ///         opcode::Read::new(types::Fd(fds[0]), b.as_mut_ptr(), 8).build()
    ///     }, Duration::from_millis(10))
    /// };
    /// chain.submit()?;
    /// let (res, _buf) = read.await; // nobody writes to the pipe
    /// assert_eq!(res.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    /// # unsafe { libc::close(fds[0]); libc::close(fds[1]); }
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Safety
    ///
    /// As for [`Link::push`].
    pub unsafe fn push_timed<T: 'static>(
        &mut self,
        mut data: T,
        build: impl FnOnce(&mut T) -> Entry,
        timeout: Duration,
    ) -> Timed<T> {
        self.check_runtime();
        let entry = build(&mut data);
        let creates = sys::creates(&entry);
        // SAFETY: forwarded from the caller.
        unsafe { self.push_timed_entry(data, entry, creates, timeout) }
    }

    /// Queues an op's SQE followed by its link timeout.
    ///
    /// # Safety
    ///
    /// As for [`push`](Self::push), for `entry` and `data`.
    unsafe fn push_timed_entry<T: 'static>(
        &mut self,
        data: T,
        entry: Entry,
        creates: Creates,
        timeout: Duration,
    ) -> Timed<T> {
        let ts = Box::new(Timespec::from(timeout));
        let ts_ptr: *const Timespec = &*ts;
        // SAFETY: forwarded from the caller; the timespec is boxed in the
        // op's data.
        let op = unsafe { self.push_entry((data, ts), entry, creates) };
        let skip = self.core.driver.borrow().skip_success_flag();
        self.entries.push(link_timeout(ts_ptr, skip));
        Timed { op }
    }

    /// The number of SQEs in the chain so far (a timed op counts two).
    ///
    /// ```
    /// # runtime::block_on(async {
    /// assert_eq!(runtime::op::Link::new().len(), 0);
    /// # });
    /// ```
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The most SQEs a chain may have on this runtime: the submission
    /// queue's size (`Builder::entries`, rounded up to a power of two).
    ///
    /// ```
    /// let rt = runtime::Runtime::builder().entries(8).build()?;
    /// rt.block_on(async {
    ///     assert_eq!(runtime::op::Link::new().capacity(), 8);
    /// });
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.core.driver.borrow().max_chain()
    }

    /// Whether nothing was pushed yet.
    ///
    /// ```
    /// # runtime::block_on(async {
    /// assert!(runtime::op::Link::hard().is_empty());
    /// # });
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Hands the chain to the kernel, in one piece, with the next batch.
    ///
    /// ```
    /// use runtime::op::{io_uring::opcode, Link};
    /// # runtime::block_on(async {
    /// let mut chain = Link::new();
    /// // SAFETY: a NOP points at no memory.
    /// let nop = unsafe { chain.push((), |_| opcode::Nop::new().build()) };
    /// chain.submit()?;
    /// assert_eq!(nop.await.0.result()?, 0);
    /// # Ok::<(), std::io::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the chain has more SQEs than the submission queue
    /// has entries (`Builder::entries`): the kernel would run it as two
    /// chains. No op is submitted then, and every op of the chain completes
    /// with `EINVAL`, its data handed back.
    pub fn submit(mut self) -> io::Result<()> {
        self.submitted = true;
        let last = self.entries.len().saturating_sub(1);
        for entry in &mut self.entries[..last] {
            *entry = entry.clone().flags(self.flag);
        }
        let released;
        let result = {
            let mut driver = self.core.driver.borrow_mut();
            // SAFETY: every op's data is owned by its `Op` (or parked in its
            // slot) until its CQE, per the `push` contract; link timeouts
            // point at a timespec boxed in the data of the op they guard.
            let pushed = unsafe { driver.push_chain(&self.entries) };
            match &pushed {
                Ok(()) => {
                    // Ops whose futures were dropped before the chain went
                    // out: cancel them now that the kernel has them.
                    for &(key, user_data) in &self.ops {
                        if driver.is_ignored(key) {
                            driver.cancel(user_data);
                        }
                    }
                }
                Err(_) => {
                    for &(_, user_data) in &self.ops {
                        driver.complete_locally(user_data, -libc::EINVAL);
                    }
                }
            }
            released = driver.take_released();
            pushed
        };
        drop(released);
        result
    }
}

impl Default for Link {
    /// The same as [`Link::new`].
    ///
    /// ```
    /// # runtime::block_on(async {
    /// let chain = runtime::op::Link::default();
    /// assert_eq!(chain.len(), 0);
    /// # });
    /// ```
    fn default() -> Link {
        Link::new()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if self.submitted {
            return;
        }
        // Never pushed: no CQE will come, so complete the slots here.
        let released = {
            let mut driver = self.core.driver.borrow_mut();
            for &(_, user_data) in &self.ops {
                driver.complete_locally(user_data, -libc::ECANCELED);
            }
            driver.take_released()
        };
        drop(released);
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("hard", &(self.flag == squeue::Flags::IO_HARDLINK))
            .field("sqes", &self.entries.len())
            .field("submitted", &self.submitted)
            .finish()
    }
}
