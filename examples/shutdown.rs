//! Graceful shutdown for the example servers (`echo`, `http`, `kv`).
//!
//! On SIGINT or SIGTERM a server stops accepting, lets every connection
//! finish the request it is in the middle of, and exits 0 once no
//! connection is left or after a grace period (`--shutdown-timeout SECS`,
//! 5 s by default), whichever comes first; a second signal ends the wait at
//! once. The pieces:
//!
//! - [`Shutdown::on_signals`] listens for both signals (call it before the
//!   server says it listens, so that a signal sent right after that line is
//!   caught) and starts the shutdown at the first one.
//! - [`Shutdown::started`] is a future that completes once the shutdown
//!   started; a connection keeps one for its whole life and races its reads
//!   against it with [`or_stopped`], which costs a flag test per read.
//! - [`stop_listening`] closes the door at once when the shutdown starts.
//! - [`Shutdown::track`] counts a connection until its guard is dropped;
//!   [`Shutdown::drain`] waits for the count to reach zero, bounded.
//!
//! A `Shutdown` belongs to one runtime (it is `!Send`): a server running on
//! several workers makes one per worker, each with its own signal listeners
//! (`runtime::signal` wakes every listener of a signal, on every runtime),
//! and every worker drains its own connections. [`run_server`] does that
//! for the three servers: with `--threads 1` (the default) one runtime on
//! the main thread, with `--threads N` a [`runtime::Pool`] of N workers,
//! each running this with its own `SO_REUSEPORT` listener on the same port:
//!
//! ```text
//! let listener = TcpListener::bind_reuseport(addr)?;  // plain bind with 1 thread
//! let shutdown = Shutdown::on_signals("http worker 1", args.shutdown_timeout)?;
//! // the last worker to get here prints "http: listening on ..."
//! accept_loop(listener, &shutdown).await;  // returns when the shutdown starts
//! shutdown.drain().await;                  // this worker's connections
//! ```
//!
//! The process exits once every worker has drained; each worker's
//! connections are bounded by the same `--shutdown-timeout`, so the whole
//! wait is too.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use net::TcpListener;
use runtime::signal::{signal, Signal};

/// How long a connection waiting for its next request when the shutdown
/// starts still waits for one: a request the client sent just before is
/// answered (with the connection closing after it) instead of being met by
/// a closed connection.
pub const IDLE_GRACE: Duration = Duration::from_secs(1);

/// The default bound on the wait for connections to finish.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The shutdown state of one server on one runtime; cloning gives another
/// handle to the same state.
#[derive(Clone)]
pub struct Shutdown {
    inner: Rc<Inner>,
}

struct Inner {
    /// The server's name, for the log lines.
    name: String,
    /// How long [`Shutdown::drain`] waits at most.
    timeout: Duration,
    started: Cell<bool>,
    /// A second signal came: stop waiting for connections.
    forced: Cell<bool>,
    /// Wakers of pending [`Started`] futures, by their keys.
    waiters: RefCell<Vec<Option<Waker>>>,
    /// Keys of `waiters` free for reuse.
    free: RefCell<Vec<usize>>,
    /// Connections tracked and not yet finished.
    open: Cell<usize>,
    /// Connections ever tracked.
    served: Cell<usize>,
    /// The task in [`Shutdown::drain`].
    drainer: RefCell<Option<Waker>>,
}

impl Shutdown {
    /// A shutdown that starts only when [`start`](Shutdown::start) is
    /// called; `drain` waits at most `timeout`.
    pub fn new(name: impl Into<String>, timeout: Duration) -> Shutdown {
        Shutdown {
            inner: Rc::new(Inner {
                name: name.into(),
                timeout,
                started: Cell::new(false),
                forced: Cell::new(false),
                waiters: RefCell::new(Vec::new()),
                free: RefCell::new(Vec::new()),
                open: Cell::new(0),
                served: Cell::new(0),
                drainer: RefCell::new(None),
            }),
        }
    }

    /// Listens for SIGINT and SIGTERM from now on, and spawns on the
    /// current runtime the task that starts the shutdown at the first of
    /// them and ends [`drain`](Shutdown::drain)'s wait at the second.
    ///
    /// # Errors
    ///
    /// Those of `runtime::signal::signal`.
    pub fn on_signals(name: impl Into<String>, timeout: Duration) -> io::Result<Shutdown> {
        let shutdown = Shutdown::new(name, timeout);
        let mut int = signal(libc::SIGINT)?;
        let mut term = signal(libc::SIGTERM)?;
        let this = shutdown.clone();
        runtime::spawn(async move {
            let name = &this.inner.name;
            let which = first(&mut int, &mut term).await;
            eprintln!(
                "{name}: {which}: shutting down ({} connections open, waiting up to {:?})",
                this.inner.open.get(),
                this.inner.timeout
            );
            this.start();
            let which = first(&mut int, &mut term).await;
            eprintln!("{name}: {which} again: not waiting any longer");
            this.inner.forced.set(true);
            if let Some(w) = this.inner.drainer.borrow_mut().take() {
                w.wake();
            }
        });
        Ok(shutdown)
    }

    /// Starts the shutdown (again: no effect).
    pub fn start(&self) {
        if self.inner.started.replace(true) {
            return;
        }
        let woken: Vec<Waker> = self
            .inner
            .waiters
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for w in woken {
            w.wake();
        }
    }

    /// Whether the shutdown started.
    pub fn is_started(&self) -> bool {
        self.inner.started.get()
    }

    /// A future that completes once the shutdown started (at once if it
    /// has). It can be polled again after completing, and completes again;
    /// keep one per connection and race reads against it with
    /// [`or_stopped`].
    pub fn started(&self) -> Started {
        Started {
            inner: Rc::clone(&self.inner),
            key: None,
        }
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn track(&self) -> Tracked {
        self.inner.open.set(self.inner.open.get() + 1);
        self.inner.served.set(self.inner.served.get() + 1);
        Tracked {
            inner: Rc::clone(&self.inner),
        }
    }

    /// How many connections were ever [`track`](Shutdown::track)ed.
    pub fn served(&self) -> usize {
        self.inner.served.get()
    }

    /// Waits until every tracked connection is finished, at most the
    /// timeout (or until a second signal), and says how it went. Returns
    /// the number of connections still open, which the caller drops by
    /// returning (the runtime cancels their tasks).
    pub async fn drain(&self) -> usize {
        let inner = &self.inner;
        let all_done = poll_fn(|cx| {
            if inner.open.get() == 0 || inner.forced.get() {
                return Poll::Ready(());
            }
            *inner.drainer.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        });
        let _ = runtime::time::timeout(inner.timeout, all_done).await;
        inner.drainer.borrow_mut().take();
        let left = inner.open.get();
        if left == 0 {
            eprintln!("{}: every connection finished; exiting", inner.name);
        } else {
            eprintln!(
                "{}: closing {left} unfinished connections; exiting",
                inner.name
            );
        }
        left
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("name", &self.inner.name)
            .field("started", &self.inner.started.get())
            .field("open", &self.inner.open.get())
            .finish()
    }
}

/// The future of [`Shutdown::started`].
pub struct Started {
    inner: Rc<Inner>,
    /// This future's entry in `waiters`, once it waited.
    key: Option<usize>,
}

impl Future for Started {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.started.get() {
            return Poll::Ready(());
        }
        let key = match self.key {
            Some(key) => key,
            None => {
                let mut waiters = self.inner.waiters.borrow_mut();
                let key = match self.inner.free.borrow_mut().pop() {
                    Some(key) => key,
                    None => {
                        waiters.push(None);
                        waiters.len() - 1
                    }
                };
                drop(waiters);
                self.key = Some(key);
                key
            }
        };
        let mut waiters = self.inner.waiters.borrow_mut();
        match &mut waiters[key] {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.inner.waiters.borrow_mut()[key] = None;
            self.inner.free.borrow_mut().push(key);
        }
    }
}

impl fmt::Debug for Started {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Started")
            .field("started", &self.inner.started.get())
            .finish()
    }
}

/// Counts one connection for [`Shutdown::drain`] until dropped.
pub struct Tracked {
    inner: Rc<Inner>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let open = self.inner.open.get() - 1;
        self.inner.open.set(open);
        if open == 0 {
            if let Some(w) = self.inner.drainer.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

impl fmt::Debug for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tracked")
    }
}

/// Makes `listener` stop listening at once: connection attempts from now
/// on are refused. (Dropping it may leave the socket listening for a
/// moment, while the ring cancels the accept that holds it.)
pub fn stop_listening(listener: &impl AsRawFd) {
    // SAFETY: shutdown(2) on a descriptor the listener owns and keeps open;
    // on a listening socket it only moves it out of the listening state.
    // Its result does not matter: the listener is dropped next anyway.
    unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR) };
}

/// Polls `fut` until it completes (`Some(output)`) or `stop` does (`None`);
/// `fut` stays where it is, to be awaited further or dropped.
pub async fn or_stopped<F: Future>(
    mut fut: Pin<&mut F>,
    mut stop: Pin<&mut Started>,
) -> Option<F::Output> {
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        match stop.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Waits for the next of SIGINT and SIGTERM and says which came.
async fn first(int: &mut Signal, term: &mut Signal) -> &'static str {
    let mut int = std::pin::pin!(int.recv());
    let mut term = std::pin::pin!(term.recv());
    poll_fn(|cx| {
        if int.as_mut().poll(cx).is_ready() {
            Poll::Ready("SIGINT")
        } else if term.as_mut().poll(cx).is_ready() {
            Poll::Ready("SIGTERM")
        } else {
            Poll::Pending
        }
    })
    .await
}

/// The command line of a server example:
/// `[ADDR] [--threads N] [--shutdown-timeout SECS]`.
#[derive(Debug, Clone)]
pub struct ServerArgs {
    /// The address to listen on.
    pub addr: String,
    /// The bound on the wait for connections at shutdown.
    pub shutdown_timeout: Duration,
    /// How many workers serve (each a runtime on its own thread with its
    /// own listener on the same port); 1, the default, is one runtime on
    /// the main thread.
    pub threads: usize,
}

impl ServerArgs {
    /// Parses the command line (`default_addr` if no address is given);
    /// prints the usage and exits with status 2 on a malformed one.
    pub fn parse(name: &str, default_addr: &str) -> ServerArgs {
        match ServerArgs::parse_from(std::env::args().skip(1), default_addr) {
            Ok(args) => args,
            Err(e) => {
                eprintln!("{name}: {e}");
                eprintln!("usage: {name} [ADDR] [--threads N] [--shutdown-timeout SECS]");
                std::process::exit(2);
            }
        }
    }

    /// Parses `args` (without the program name).
    pub fn parse_from(
        args: impl IntoIterator<Item = String>,
        default_addr: &str,
    ) -> Result<ServerArgs, String> {
        let mut addr = None;
        let mut shutdown_timeout = DEFAULT_TIMEOUT;
        let mut threads = 1;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--shutdown-timeout" {
                let value = args
                    .next()
                    .ok_or("--shutdown-timeout needs a number of seconds")?;
                shutdown_timeout = value
                    .parse::<f64>()
                    .ok()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .ok_or(format!("--shutdown-timeout: not a duration: {value}"))?;
            } else if arg == "--threads" {
                let value = args.next().ok_or("--threads needs a number of workers")?;
                threads = value
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!(
                        "--threads: not a number of workers (1 or more): {value}"
                    ))?;
            } else if arg.starts_with('-') {
                return Err(format!("unknown option {arg}"));
            } else if addr.is_none() {
                addr = Some(arg);
            } else {
                return Err(format!("unexpected argument {arg}"));
            }
        }
        Ok(ServerArgs {
            addr: addr.unwrap_or_else(|| default_addr.to_string()),
            shutdown_timeout,
            threads,
        })
    }
}

/// Runs a server until SIGINT or SIGTERM and its connections drained: the
/// `main` of `echo`, `http` and `kv`.
///
/// `serve(listener, shutdown)` is one worker's accept loop: it spawns a
/// task per connection (each [`track`](Shutdown::track)ed) and returns once
/// the shutdown started and the listener stopped listening. `announce`
/// makes the line printed to stdout once the server listens (tests and the
/// benchmarks read the address from its last word).
///
/// With `args.threads == 1` this is exactly what `#[runtime::main]` over
/// the one worker's body would be: a runtime on the main thread, a plain
/// `bind`, and errors returned (a runtime that cannot start: a message and
/// exit status 1, as `#[runtime::main]` does).
///
/// With N > 1: the address is resolved to one socket address, whose port
/// (a real one, also for port 0) is held by a socket bound with
/// `SO_REUSEPORT` but not listening, which receives no connections. Then a
/// [`runtime::Pool`] of N workers each binds its own listener there with
/// [`TcpListener::bind_reuseport`] (the kernel spreads connections over
/// them), makes its own [`Shutdown`] (named `"<name> worker <i>"` in the log
/// lines) and runs `serve`; the last worker ready drops the placeholder
/// socket and prints the one `announce` line. On a signal the first worker
/// to hear it stops every worker's listener at once (new connections are
/// refused from then on), and every worker drains its own connections,
/// then prints how many it served (`<name> worker <i>: served <n>
/// connections`); this returns when every worker is done. A worker that cannot listen
/// ends the process with status 1.
///
/// # Errors
///
/// With one thread, those of the bind, of [`Shutdown::on_signals`] and of
/// printing the address. With more: an address that does not resolve or
/// cannot be bound, and the pool's.
pub fn run_server<S, Fut>(
    name: &'static str,
    args: &ServerArgs,
    announce: fn(SocketAddr) -> String,
    serve: S,
) -> io::Result<()>
where
    S: Fn(TcpListener, Shutdown) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    if args.threads == 1 {
        let rt = match runtime::Runtime::builder().build() {
            Ok(rt) => rt,
            Err(error) => {
                eprintln!("error: cannot start the runtime: {error}");
                std::process::exit(1)
            }
        };
        return rt.block_on(async {
            let listener = TcpListener::bind(args.addr.as_str())?;
            // Before the line that says we listen: a signal after it is
            // caught.
            let shutdown = Shutdown::on_signals(name, args.shutdown_timeout)?;
            println!("{}", announce(listener.local_addr()?));
            serve(listener, shutdown.clone()).await;
            shutdown.drain().await;
            Ok(())
        });
    }
    let (placeholder, addr) = hold_port(&args.addr)?;
    let placeholder = Arc::new(Mutex::new(Some(placeholder)));
    // A duplicate of every worker's listener, so that the first worker to
    // start its shutdown stops every listener at once (see below).
    let doors: Arc<Mutex<Vec<OwnedFd>>> = Arc::new(Mutex::new(Vec::new()));
    let ready = Arc::new(AtomicUsize::new(0));
    let serve = Arc::new(serve);
    let threads = args.threads;
    let timeout = args.shutdown_timeout;
    let pool = runtime::Pool::builder().threads(threads).build()?;
    pool.run(|i| {
        let (placeholder, ready, serve) = (placeholder.clone(), ready.clone(), serve.clone());
        let doors = doors.clone();
        async move {
            let worker = format!("{name} worker {i}");
            let listener = TcpListener::bind_reuseport(addr)
                .and_then(|l| {
                    // SAFETY: the listener's descriptor is open for this
                    // borrow, which only duplicates it.
                    let fd = unsafe { BorrowedFd::borrow_raw(l.as_raw_fd()) };
                    doors.lock().unwrap().push(fd.try_clone_to_owned()?);
                    Ok(l)
                })
                .unwrap_or_else(|e| {
                    eprintln!("{worker}: cannot listen on {addr}: {e}");
                    std::process::exit(1)
                });
            let shutdown = Shutdown::on_signals(worker.clone(), timeout).unwrap_or_else(|e| {
                eprintln!("{worker}: cannot listen for signals: {e}");
                std::process::exit(1)
            });
            // The workers hear a signal one after the other. Were each to
            // stop only its own listener, the connections the first one
            // closes (`Connection: close`) would reconnect to a listener
            // still open, and be reset when that one stops with them in
            // its queue. So the first to start stops them all (shutdown(2)
            // on a duplicate acts on the shared socket; the duplicates
            // stay open until this function returns, so no descriptor
            // number here is ever reused).
            let started = shutdown.started();
            runtime::spawn(async move {
                started.await;
                for door in doors.lock().unwrap().iter() {
                    stop_listening(door);
                }
            });
            // Every worker listens and hears signals: say so, once.
            if ready.fetch_add(1, Ordering::AcqRel) + 1 == threads {
                drop(placeholder.lock().unwrap().take());
                println!("{}", announce(addr));
            }
            serve(listener, shutdown.clone()).await;
            shutdown.drain().await;
            eprintln!("{worker}: served {} connections", shutdown.served());
        }
    });
    Ok(())
}

/// Resolves `addr` and binds a TCP socket to the first of its addresses
/// that can be bound, with `SO_REUSEADDR` and `SO_REUSEPORT` and without
/// listening: it holds the port (the real one, if `addr`'s port is 0) for
/// the workers' listeners, and no connection is ever queued on it.
fn hold_port(addr: &str) -> io::Result<(socket2::Socket, SocketAddr)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        let bound = Socket::new(Domain::for_address(a), Type::STREAM, Some(Protocol::TCP))
            .and_then(|s| {
                s.set_reuse_address(true)?;
                s.set_reuse_port(true)?;
                s.bind(&a.into())?;
                let local = s.local_addr()?.as_socket().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "not an IP socket address")
                })?;
                Ok((s, local))
            });
        match bound {
            Ok(held) => return Ok(held),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} resolves to no address"),
        )
    }))
}
