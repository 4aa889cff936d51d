//! Child processes: spawned pinned to a core in their own process group,
//! waited for with a deadline (and their resource usage), killed as a group;
//! plus the CPU time of a running process from `/proc/<pid>/stat`.
//!
//! Every process group the suite starts is recorded in a fixed table of
//! atomics, so that a signal handler (Ctrl-C), a panic hook and the normal
//! exit path can all kill whatever is still running.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Process groups still alive (0 = free slot).
static LIVE: [AtomicI32; 256] = [const { AtomicI32::new(0) }; 256];

fn register(pgid: i32) {
    for slot in &LIVE {
        if slot
            .compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
    eprintln!(
        "suite: more than {} live children; {pgid} is not tracked",
        LIVE.len()
    );
}

fn unregister(pgid: i32) {
    for slot in &LIVE {
        if slot
            .compare_exchange(pgid, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
}

/// Sends SIGKILL to every process group the suite started and has not yet
/// reaped. Only async-signal-safe calls: usable from a signal handler.
pub(crate) fn kill_all() {
    for slot in &LIVE {
        let pgid = slot.swap(0, Ordering::SeqCst);
        if pgid > 0 {
            // SAFETY: kill(2) takes no pointers; a negative pid names the
            // process group we created for this child.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    kill_all();
    // SAFETY: signal(2) and raise(3) are async-signal-safe; restoring the
    // default action and re-raising ends the suite with the usual status.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Makes SIGINT, SIGTERM and SIGHUP (and panics) kill every child first.
pub(crate) fn install_cleanup() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `on_signal` is an `extern "C" fn(c_int)` that only makes
        // async-signal-safe calls.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_all();
        previous(info);
    }));
}

/// How a finished child ended.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    /// Exit code, or `None` when killed by a signal.
    pub code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// Everything it wrote on stdout.
    pub stdout: String,
    /// The last part of what it wrote on stderr.
    pub stderr: String,
    /// User + system CPU seconds of the child (all its threads and any
    /// children it waited for), from wait4's rusage.
    pub cpu_secs: f64,
    /// Wall-clock seconds from spawn to exit.
    pub wall_secs: f64,
    /// True when the suite killed it at its deadline.
    pub timed_out: bool,
}

impl Finished {
    /// True for exit code 0.
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// A short description of the exit ("exit status 1", "signal 9").
    pub(crate) fn status(&self) -> String {
        match (self.code, self.signal) {
            (_, _) if self.timed_out => "killed at its deadline".to_string(),
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "unknown status".to_string(),
        }
    }

    /// The first line of stderr that contains `pat`, trimmed.
    pub(crate) fn stderr_line(&self, pat: &str) -> Option<&str> {
        self.stderr.lines().find(|l| l.contains(pat)).map(str::trim)
    }

    /// The status plus the last line of stderr, for a "not measured" note.
    pub(crate) fn describe(&self) -> String {
        let last = self
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        if last.is_empty() {
            self.status()
        } else {
            format!("{} ({})", self.status(), shorten(last, 160))
        }
    }
}

/// Cuts `s` to at most `max` characters.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// A running child, leader of its own process group.
pub(crate) struct Child {
    pid: i32,
    /// The command line as run (with `taskset`), for the report.
    pub cmdline: String,
    start: Instant,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
    done: Option<Finished>,
    /// Everything the child printed on stdout so far.
    live_out: Arc<Mutex<Vec<u8>>>,
}

/// Keeps at most this many trailing bytes of a child's stderr.
const STDERR_KEEP: usize = 8192;

fn reader(
    mut r: impl Read + Send + 'static,
    keep_tail: bool,
    live: Option<Arc<Mutex<Vec<u8>>>>,
) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(live) = &live {
                        if let Ok(mut v) = live.lock() {
                            v.extend_from_slice(&buf[..n]);
                        }
                    }
                    all.extend_from_slice(&buf[..n]);
                    if keep_tail && all.len() > 4 * STDERR_KEEP {
                        all.drain(..all.len() - STDERR_KEEP);
                    }
                }
            }
        }
        if keep_tail && all.len() > STDERR_KEEP {
            all.drain(..all.len() - STDERR_KEEP);
        }
        String::from_utf8_lossy(&all).into_owned()
    })
}

/// Quotes an argument for the shell when it needs it (for the report).
pub(crate) fn shell_quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// Starts `program args` pinned to `core` (through `taskset -c core`, which
/// execs the program so the pid is the program's), in a new process group,
/// with stdin closed and stdout/stderr captured. The child gets SIGKILL if
/// the suite dies.
pub(crate) fn spawn(core: Option<usize>, program: &str, args: &[String]) -> io::Result<Child> {
    spawn_env(core, program, args, &[])
}

/// [`spawn`] with the environment variables `env` set for the child on top
/// of the suite's own; its command line (for the report) starts with them
/// (`KEY=value taskset ...`), as a shell would take it.
pub(crate) fn spawn_env(
    core: Option<usize>,
    program: &str,
    args: &[String],
    env: &[(String, String)],
) -> io::Result<Child> {
    let mut argv: Vec<String> = Vec::new();
    if let Some(c) = core {
        argv.extend(["taskset".to_string(), "-c".to_string(), c.to_string()]);
    }
    argv.push(program.to_string());
    argv.extend(args.iter().cloned());
    let cmdline = env
        .iter()
        .map(|(k, v)| format!("{k}={}", shell_quote(v)))
        .chain(argv.iter().map(|a| shell_quote(a)))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only
    // calls prctl(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {}: {e}", argv[0])))?;
    let pid = child.id() as i32;
    register(pid);
    let live_out = Arc::new(Mutex::new(Vec::new()));
    let out = child
        .stdout
        .take()
        .map(|s| reader(s, false, Some(live_out.clone())));
    let err = child.stderr.take().map(|s| reader(s, true, None));
    // `child` is dropped without waiting: this module reaps the pid itself
    // with wait4, which also yields the resource usage.
    drop(child);
    Ok(Child {
        pid,
        cmdline,
        start: Instant::now(),
        out,
        err,
        done: None,
        live_out,
    })
}

impl Child {
    fn reap(&mut self, flags: libc::c_int) -> bool {
        if self.done.is_some() {
            return true;
        }
        // First see whether it exited without reaping it (WNOWAIT): while
        // it is a zombie its pid, and so its group id, cannot be reused.
        // SAFETY: all-zero is a valid siginfo_t.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is valid and writable; the pid is our unreaped child.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT | flags,
            )
        };
        // SAFETY: waitid filled `info` (or left it zeroed: pid 0).
        if r != 0 || unsafe { info.si_pid() } != self.pid {
            return false;
        }
        let wall = self.start.elapsed().as_secs_f64();
        // The group leader is gone: kill whatever it left in its group
        // (forked workers), so that the readers see end of file.
        // SAFETY: kill(2) takes no pointers.
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        let mut status: libc::c_int = 0;
        // SAFETY: all-zero is a valid rusage.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `status` and `ru` are valid and writable; the pid is our
        // exited, not yet reaped child.
        unsafe { libc::wait4(self.pid, &mut status, 0, &mut ru) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        let cpu = tv(ru.ru_utime) + tv(ru.ru_stime);
        unregister(self.pid);
        let stdout = self
            .out
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let stderr = self
            .err
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let (code, signal) = if libc::WIFEXITED(status) {
            (Some(libc::WEXITSTATUS(status)), None)
        } else if libc::WIFSIGNALED(status) {
            (None, Some(libc::WTERMSIG(status)))
        } else {
            (None, None)
        };
        self.done = Some(Finished {
            code,
            signal,
            stdout,
            stderr,
            cpu_secs: cpu,
            wall_secs: wall,
            timed_out: false,
        });
        true
    }

    /// If the child has exited, how it ended (without blocking).
    pub(crate) fn try_finished(&mut self) -> Option<&Finished> {
        if self.reap(libc::WNOHANG) {
            self.done.as_ref()
        } else {
            None
        }
    }

    /// Waits until the child exits, killing its group at `timeout`.
    pub(crate) fn wait(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let mut timed_out = false;
        while !self.reap(libc::WNOHANG) {
            if Instant::now() >= deadline {
                // SAFETY: kill(2) takes no pointers.
                unsafe { libc::kill(-self.pid, libc::SIGKILL) };
                timed_out = true;
                self.reap(0);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut done = self.done.take().expect("reaped");
        done.timed_out = timed_out;
        done
    }

    /// Kills the child's whole process group and reaps it.
    pub(crate) fn kill(mut self) -> Finished {
        if self.done.is_none() {
            // SAFETY: kill(2) takes no pointers; the pid is not reaped yet,
            // so it (and its group) cannot have been reused.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
            self.reap(0);
        }
        self.done.take().expect("reaped")
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// What the child has printed on stdout so far (while it runs; the
    /// whole of it is in [`Finished::stdout`] once it has exited).
    pub(crate) fn stdout_so_far(&self) -> String {
        self.live_out
            .lock()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.done.is_none() {
            // SAFETY: as in `kill`.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
            self.reap(0);
        }
    }
}

/// utime + stime of `pid` in seconds, from `/proc/<pid>/stat`.
pub(crate) fn proc_cpu_secs(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_cpu_secs(&stat)
}

/// The CPU time of process `pid` so far (all its threads, live or exited,
/// kernel threads of its io_uring such as the SQPOLL one included), in
/// seconds with nanosecond resolution: its CPU-time clock
/// (`clock_getcpuclockid` + `clock_gettime`). Falls back to the 10 ms
/// ticks of `/proc/<pid>/stat`.
pub(crate) fn cpu_secs_precise(pid: i32) -> Option<f64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid place for the clock id.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } == 0 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec for clock_gettime to fill.
        if unsafe { libc::clock_gettime(clock, &mut ts) } == 0 {
            return Some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9);
        }
    }
    proc_cpu_secs(pid)
}

/// The resident set size of `pid` in bytes (`VmRSS` in
/// `/proc/<pid>/status`).
pub(crate) fn rss_bytes(pid: i32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// utime + stime, in seconds, of the threads of `pid` whose name starts
/// with `prefix` (e.g. `iou-sqp`, io_uring's SQPOLL thread), from
/// `/proc/<pid>/task/*/stat`; `None` if there is no such thread.
pub(crate) fn threads_cpu_secs(pid: i32, prefix: &str) -> Option<f64> {
    let threads = threads_cpu_by_tid(pid, prefix);
    (!threads.is_empty()).then(|| threads.iter().map(|t| t.1).sum())
}

/// (thread id, utime + stime in seconds) of each thread of `pid` whose
/// name starts with `prefix`, from `/proc/<pid>/task/*/stat`.
pub(crate) fn threads_cpu_by_tid(pid: i32, prefix: &str) -> Vec<(i32, f64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(prefix) {
            continue;
        }
        let Ok(tid) = t.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok();
        if let Some(v) = stat.as_deref().and_then(stat_cpu_secs) {
            out.push((tid, v));
        }
    }
    out
}

/// utime + stime in seconds from the text of a `stat` file.
fn stat_cpu_secs(stat: &str) -> Option<f64> {
    stat_user_system(stat).map(|(u, s)| u + s)
}

/// (utime, stime) in seconds from the text of a `stat` file.
fn stat_user_system(stat: &str) -> Option<(f64, f64)> {
    // The command name (field 2) may contain spaces: count from its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11, 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf takes no pointers.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some((utime / hz, stime / hz))
}

/// The user and the system CPU seconds of `pid` so far, apart (utime and
/// stime of `/proc/<pid>/stat`, in clock ticks of usually 10 ms).
pub(crate) fn proc_user_system_secs(pid: i32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_user_system(&stat)
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub(crate) fn free_port() -> io::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A server that is up: the child and the address it listens on.
pub(crate) struct Server {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The running process.
    pub child: Child,
}

/// Starts a server pinned to `core` with the listen address appended as
/// its last argument (unless `args` already holds `{addr}`/`{port}`
/// placeholders, which are substituted), and waits until a TCP connect
/// succeeds. On failure returns a reason fit for `not measured: <reason>`.
pub(crate) fn start_server(
    core: Option<usize>,
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<Server, String> {
    start_server_env(core, program, args, &[], timeout)
}

/// [`start_server`] with the environment variables `env` set for the
/// server (see [`spawn_env`]).
pub(crate) fn start_server_env(
    core: Option<usize>,
    program: &str,
    args: &[&str],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<Server, String> {
    if !std::path::Path::new(program).exists() && !program_in_path(program) {
        return Err(format!("{program} not found"));
    }
    let port = free_port().map_err(|e| format!("no free port: {e}"))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut argv: Vec<String> = Vec::new();
    let mut substituted = false;
    for a in args {
        if a.contains("{addr}") || a.contains("{port}") {
            substituted = true;
        }
        argv.push(
            a.replace("{addr}", &addr.to_string())
                .replace("{port}", &port.to_string()),
        );
    }
    if !substituted {
        argv.push(addr.to_string());
    }
    let mut child = spawn_env(core, program, &argv, env).map_err(|e| e.to_string())?;
    let start = Instant::now();
    loop {
        if let Some(f) = child.try_finished() {
            let mut why = format!("exited at once: {}", f.describe());
            if f.success() && f.stderr.trim().is_empty() {
                why.push_str(" (still a placeholder?)");
            }
            return Err(why);
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(Server { addr, child });
        }
        if start.elapsed() >= timeout {
            let f = child.kill();
            return Err(format!(
                "never listened on {addr} within {:.0} s{}",
                timeout.as_secs_f64(),
                if f.stderr.trim().is_empty() {
                    String::new()
                } else {
                    format!(" ({})", shorten(f.stderr.trim(), 160))
                }
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True if `name` is an executable in `$PATH`.
pub(crate) fn program_in_path(name: &str) -> bool {
    if name.contains('/') {
        return std::path::Path::new(name).exists();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// Runs a command to completion (not pinned) and returns its stdout, for
/// machine facts such as `git rev-parse HEAD`.
pub(crate) fn capture(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if out.status.success() {
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        None
    }
}

/// Runs a measuring program to completion pinned to `core`, with a deadline.
pub(crate) fn run(
    core: Option<usize>,
    program: &str,
    args: &[String],
    timeout: Duration,
) -> Result<(String, Finished), String> {
    let child = spawn(core, program, args).map_err(|e| e.to_string())?;
    let cmdline = child.cmdline.clone();
    let f = child.wait(timeout);
    Ok((cmdline, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_apart_from_a_stat_line() {
        // SAFETY: sysconf takes no pointers.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        // A command name with a space and a ')' in it, utime 250, stime 50.
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 10 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        let (u, s) = stat_user_system(stat).unwrap();
        assert!((u - 250.0 / hz).abs() < 1e-9 && (s - 50.0 / hz).abs() < 1e-9);
        assert!((stat_cpu_secs(stat).unwrap() - 300.0 / hz).abs() < 1e-9);
        assert!(stat_user_system("42 (x) S 1").is_none());
        let me = std::process::id() as i32;
        assert!(proc_user_system_secs(me).is_some());
        assert!(proc_user_system_secs(-1).is_none());
    }

    #[test]
    fn spawn_env_sets_the_variables_and_shows_them() {
        let env = [("SUITE_TEST_VAR".to_string(), "a b".to_string())];
        let args = [
            "-c".to_string(),
            "printf %s \"$SUITE_TEST_VAR\"".to_string(),
        ];
        let child = spawn_env(None, "sh", &args, &env).unwrap();
        assert!(
            child.cmdline.starts_with("SUITE_TEST_VAR='a b' sh -c "),
            "{}",
            child.cmdline
        );
        let f = child.wait(Duration::from_secs(30));
        assert!(f.success(), "{}", f.describe());
        assert_eq!(f.stdout, "a b");
        // Without: the variable is not set (the suite itself has none).
        let child = spawn(None, "sh", &args).unwrap();
        assert_eq!(child.wait(Duration::from_secs(30)).stdout, "");
    }
}
