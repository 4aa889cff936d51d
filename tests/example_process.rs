//! A running example server (`echo`, `http`, `kv`) in a child process, for
//! the tests that start the real examples (`graceful.rs`,
//! `threads_servers.rs`): started on `127.0.0.1:0`, its address read from
//! the line it prints when it listens, its stderr collected line by line.

// Each test crate that includes this module uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Generous limit for a whole test, building the examples included.
pub(crate) const LIMIT: Duration = Duration::from_secs(300);

/// How long a client waits for bytes before failing.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A running example server; killed (and reaped) if the test ends first.
pub(crate) struct Server {
    pub(crate) child: std::process::Child,
    pub(crate) addr: SocketAddr,
    /// The server's stderr lines, as they come.
    stderr: mpsc::Receiver<String>,
    /// Every stderr line so far, for failure messages.
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts example `name` on a free port with `args` after the address.
    pub(crate) fn start(name: &str, args: &[&str]) -> Server {
        let binary = integration_tests::example_binary(env!("CARGO_TARGET_TMPDIR"), name);
        let mut child = Command::new(binary)
            .arg("127.0.0.1:0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {name} example: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("reading the listening line");
        let addr = line
            .trim_end()
            .rsplit(' ')
            .next()
            .map(|a| a.trim_start_matches("http://"))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no address in its first line {line:?}"));
        let (tx, stderr) = mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let log2 = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { return };
                log2.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        Server {
            child,
            addr,
            stderr,
            log,
        }
    }

    /// Sends `sig` to the server.
    pub(crate) fn signal(&self, sig: i32) {
        // SAFETY: plain syscall on our own child, not yet reaped (so its pid
        // cannot have been reused); checked.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits until the server writes a stderr line containing `what`.
    pub(crate) fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "the server never said {what:?}; its stderr:\n{}",
                    self.log.lock().unwrap()
                ),
            }
        }
    }

    /// Sends `sig` and waits until the server says it is shutting down.
    pub(crate) fn shut_down(&self, sig: i32) {
        self.signal(sig);
        self.wait_for("shutting down");
    }

    /// Waits (bounded) for the server to exit and returns its status.
    pub(crate) fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every stderr line so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Every stderr line, once the server has closed its stderr (it
    /// exited): waits (bounded) for the reader to reach the end.
    pub(crate) fn full_log(&self) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return self.log(),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the server's stderr never ended:\n{}", self.log())
                }
            }
        }
    }

    /// Waits for the server to exit and checks it exited 0.
    pub(crate) fn expect_clean_exit(&mut self) {
        let status = self.wait();
        assert!(
            status.success(),
            "the server exited with {status}; its stderr:\n{}",
            self.log.lock().unwrap()
        );
    }

    /// A client connection to the server.
    pub(crate) fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
