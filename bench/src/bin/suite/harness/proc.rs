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

/// The CPU time of a process group: every process whose group id is the
/// group's (a server and the workers it forked), each with all its
/// threads, live or exited (its CPU-time clock, ns resolution). The split
/// into user and system time comes from the 10 ms ticks of
/// `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GroupCpu {
    /// Seconds of CPU, user and system together.
    pub total: f64,
    /// Seconds of user time, NaN when unknown (see [`GroupCpu::since`]).
    pub user: f64,
    /// Seconds of system time, NaN when unknown.
    pub system: f64,
    /// The processes counted.
    pub procs: usize,
}

impl GroupCpu {
    /// The CPU used between `before` and this reading. The total is exact;
    /// it is split into user and system time in the proportion of their
    /// ticks, and that split is left unknown (NaN) when the ticks cover
    /// less than half of the total: many processes that each ran for less
    /// than a tick (a forking server's workers) show none.
    pub(crate) fn since(&self, before: &GroupCpu) -> GroupCpu {
        let total = self.total - before.total;
        let (u, s) = (self.user - before.user, self.system - before.system);
        let (user, system) = if u >= 0.0 && s >= 0.0 && u + s >= 0.5 * total && u + s > 0.0 {
            (total * u / (u + s), total * s / (u + s))
        } else {
            (f64::NAN, f64::NAN)
        };
        GroupCpu {
            total,
            user,
            system,
            procs: self.procs.max(before.procs),
        }
    }
}

/// The process group id in the text of a `stat` file.
fn stat_pgrp(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')': state, ppid, pgrp.
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// The CPU time so far of process group `pgid` (see [`GroupCpu`]), from a
/// scan of `/proc`; `None` when no process of the group is left.
pub(crate) fn group_cpu(pgid: i32) -> Option<GroupCpu> {
    let mut g = GroupCpu {
        total: 0.0,
        user: 0.0,
        system: 0.0,
        procs: 0,
    };
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        // A process may exit between the listing and the reads: skip it.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if stat_pgrp(&stat) != Some(pgid) {
            continue;
        }
        let Some((u, s)) = stat_user_system(&stat) else {
            continue;
        };
        let Some(total) = cpu_secs_precise(pid) else {
            continue;
        };
        g.total += total;
        g.user += u;
        g.system += s;
        g.procs += 1;
    }
    (g.procs > 0).then_some(g)
}

/// Waits, at most `max`, until process group `pgid` has settled: over
/// 100 ms it used under 3% of a core and its number of processes did not
/// change (a server still closing thousands of connections, or its forked
/// workers still exiting, would otherwise run into the next measurement).
/// Returns whether it settled.
pub(crate) fn wait_settled(pgid: i32, max: Duration) -> bool {
    let start = Instant::now();
    let mut last = group_cpu(pgid);
    while start.elapsed() < max {
        std::thread::sleep(Duration::from_millis(100));
        let now = group_cpu(pgid);
        match (last, now) {
            (Some(a), Some(b)) if a.procs == b.procs && b.total - a.total < 0.003 => return true,
            (_, None) => return true,
            _ => {}
        }
        last = now;
    }
    false
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

/// Where a process spends its CPU time, user or kernel mode, by sampling:
/// `perf record -e cpu-clock -F <freq> -p <pid>` from [`start`] to
/// [`finish`], then the samples' instruction pointers counted on either
/// side of the kernel's address range.
///
/// The scheduler's own split (`utime`/`stime`, [`user_system_ticks`]) is
/// a sample too, one per tick (4 ms at HZ=250), and for a server that
/// wakes for a few microseconds per request it can be far off: the kv
/// example at 13k commands/s had no user tick at all in three 3-second
/// windows, where this sampler (its own high-resolution timer on the
/// process's CPU time) finds a fifth of its time in user mode, as `perf
/// report` does. The cost: one interrupt per 1/freq seconds of the
/// process's CPU time (0.5 ms at 2 kHz, a few microseconds each).
///
/// [`start`]: ModeSampler::start
/// [`finish`]: ModeSampler::finish
pub(crate) struct ModeSampler {
    child: Child,
    file: std::path::PathBuf,
}

impl ModeSampler {
    /// Starts sampling `pid` at `freq` Hz of its CPU time, `perf` pinned
    /// to `core`; `None` if `perf` is not installed or does not start.
    pub(crate) fn start(core: Option<usize>, pid: i32, freq: u32) -> Option<ModeSampler> {
        if !program_in_path("perf") {
            return None;
        }
        let file =
            std::env::temp_dir().join(format!("suite-modes-{}-{pid}.data", std::process::id()));
        let args: Vec<String> = [
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-F",
            &freq.to_string(),
            "-p",
            &pid.to_string(),
            "-o",
            &file.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut child = spawn(core, "perf", &args).ok()?;
        // Attaching takes perf a while (a few hundred ms on a busy 2-core
        // machine): wait until it holds a perf event, or has given up.
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            if child.try_finished().is_some() || Instant::now() >= give_up {
                return None;
            }
            if holds_perf_event(child.pid()) {
                return Some(ModeSampler { child, file });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops sampling and counts the samples: (user, kernel); `None` if
    /// perf failed or took no sample.
    pub(crate) fn finish(self) -> Option<(u64, u64)> {
        // SAFETY: kill(2) takes no pointers; the pid is our child, not
        // reaped yet (so not reused).
        unsafe { libc::kill(self.child.pid(), libc::SIGINT) };
        // It exits with 130 after writing its file: the file says whether
        // it worked.
        let _ = self.child.wait(Duration::from_secs(10));
        let counted = Command::new("perf")
            .args(["script", "-F", "ip", "-i"])
            .arg(&self.file)
            .stderr(Stdio::null())
            .output()
            .ok()
            .map(|out| count_modes(&String::from_utf8_lossy(&out.stdout)));
        let _ = std::fs::remove_file(&self.file);
        counted.filter(|(u, k)| u + k > 0)
    }
}

/// Whether process `pid` has a perf event open (`anon_inode:[perf_event]`
/// among its descriptors).
fn holds_perf_event(pid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    dir.flatten().any(|e| {
        std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains("perf_event"))
    })
}

/// Counts `perf script -F ip` lines: (user, kernel), a kernel address
/// being one in the upper half of the address space.
fn count_modes(script: &str) -> (u64, u64) {
    let (mut user, mut kernel) = (0, 0);
    for ip in script
        .lines()
        .filter_map(|l| u64::from_str_radix(l.trim(), 16).ok())
    {
        if ip >= 1 << 63 {
            kernel += 1;
        } else {
            user += 1;
        }
    }
    (user, kernel)
}

/// The raw user and system CPU seconds of process `pid` so far (the sum
/// over its live threads), from the kernel's taskstats interface (generic
/// netlink): the tick-sampled `utime` and `stime` of each thread as the
/// scheduler counted them, one tick (1/HZ) at a time.
///
/// `/proc/<pid>/stat` gives these scaled so that their sum matches the
/// precise run time, with the ratio of the whole life of the process: the
/// difference of two readings over a few seconds of a long-running server
/// then splits user and system by that lifetime ratio and its drift, not
/// by what the window did (one window's system time came out 30 times
/// another's for the same server). The raw counts have no such drift:
/// over a window, user / (user + system) is the share of the ticks that
/// found the process in user mode. `None` when taskstats cannot be used
/// (no `CONFIG_TASKSTATS`, no permission).
pub(crate) fn user_system_ticks(pid: i32) -> Option<(f64, f64)> {
    let nl = taskstats::Netlink::open()?;
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let (mut user, mut sys, mut any) = (0.0, 0.0, false);
    for t in dir.flatten() {
        let Ok(tid) = t.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A thread that exited since the listing has no stats: skip it.
        if let Some((u, s)) = nl.thread_cpu_usecs(tid) {
            user += u as f64 * 1e-6;
            sys += s as f64 * 1e-6;
            any = true;
        }
    }
    any.then_some((user, sys))
}

/// A minimal client of the taskstats generic-netlink family: its family id
/// and `TASKSTATS_CMD_GET` for one thread.
mod taskstats {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// `GENL_ID_CTRL`, the generic-netlink controller.
    const GENL_ID_CTRL: u16 = 0x10;
    const CTRL_CMD_GETFAMILY: u8 = 3;
    const CTRL_ATTR_FAMILY_ID: u16 = 1;
    const CTRL_ATTR_FAMILY_NAME: u16 = 2;
    const TASKSTATS_CMD_GET: u8 = 1;
    const TASKSTATS_CMD_ATTR_PID: u16 = 1;
    const TASKSTATS_TYPE_STATS: u16 = 3;
    const TASKSTATS_TYPE_AGGR_PID: u16 = 4;
    /// Offsets of `ac_utime` and `ac_stime` (µs, u64) in `struct
    /// taskstats`; the structure only grows at its end (version 1 had them).
    const AC_UTIME: usize = 152;
    const AC_STIME: usize = 160;
    const NLMSG_ERROR: u16 = 2;
    /// nlmsghdr (16) + genlmsghdr (4).
    const HEADERS: usize = 20;

    /// An open generic-netlink socket and the taskstats family id.
    pub(super) struct Netlink {
        fd: OwnedFd,
        family: u16,
    }

    impl Netlink {
        pub(super) fn open() -> Option<Netlink> {
            // SAFETY: socket(2) takes no pointers.
            let fd = unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                    libc::NETLINK_GENERIC,
                )
            };
            if fd < 0 {
                return None;
            }
            // SAFETY: `fd` was just opened and is owned by nothing else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let mut nl = Netlink {
                fd,
                family: GENL_ID_CTRL,
            };
            let reply = nl.request(
                GENL_ID_CTRL,
                CTRL_CMD_GETFAMILY,
                CTRL_ATTR_FAMILY_NAME,
                b"TASKSTATS\0",
            )?;
            let id = attrs(reply.get(HEADERS..)?)
                .find(|(ty, _)| *ty == CTRL_ATTR_FAMILY_ID)
                .and_then(|(_, v)| Some(u16::from_ne_bytes(v.get(..2)?.try_into().ok()?)))?;
            nl.family = id;
            Some(nl)
        }

        /// (ac_utime, ac_stime) of thread `tid`, in µs.
        pub(super) fn thread_cpu_usecs(&self, tid: u32) -> Option<(u64, u64)> {
            let reply = self.request(
                self.family,
                TASKSTATS_CMD_GET,
                TASKSTATS_CMD_ATTR_PID,
                &tid.to_ne_bytes(),
            )?;
            let (_, aggr) =
                attrs(reply.get(HEADERS..)?).find(|(ty, _)| *ty == TASKSTATS_TYPE_AGGR_PID)?;
            let (_, stats) = attrs(aggr).find(|(ty, _)| *ty == TASKSTATS_TYPE_STATS)?;
            let u64_at = |off: usize| {
                Some(u64::from_ne_bytes(
                    stats.get(off..off + 8)?.try_into().ok()?,
                ))
            };
            Some((u64_at(AC_UTIME)?, u64_at(AC_STIME)?))
        }

        /// Sends one request with one attribute and returns the reply
        /// message (`None` for an error reply or a failed call).
        fn request(&self, ty: u16, cmd: u8, attr: u16, value: &[u8]) -> Option<Vec<u8>> {
            let attr_len = 4 + value.len();
            let len = HEADERS + align4(attr_len);
            let mut msg = Vec::with_capacity(len);
            msg.extend_from_slice(&(len as u32).to_ne_bytes());
            msg.extend_from_slice(&ty.to_ne_bytes());
            msg.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
            msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
            msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
            msg.extend_from_slice(&[cmd, 1, 0, 0]); // genlmsghdr: cmd, version
            msg.extend_from_slice(&(attr_len as u16).to_ne_bytes());
            msg.extend_from_slice(&attr.to_ne_bytes());
            msg.extend_from_slice(value);
            msg.resize(len, 0);
            // SAFETY: an all-zero sockaddr_nl is valid; nl_family is set below.
            let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            // SAFETY: `msg` and `to` are valid for the lengths given.
            let sent = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    msg.as_ptr().cast(),
                    msg.len(),
                    0,
                    (&to as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if sent != msg.len() as isize {
                return None;
            }
            let mut buf = vec![0u8; 8192];
            // SAFETY: `buf` is valid and writable for its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < HEADERS as isize {
                return None;
            }
            buf.truncate(n as usize);
            let msg_len = u32::from_ne_bytes(buf[..4].try_into().ok()?) as usize;
            let msg_ty = u16::from_ne_bytes(buf[4..6].try_into().ok()?);
            if msg_ty == NLMSG_ERROR || msg_len > buf.len() {
                return None;
            }
            buf.truncate(msg_len);
            Some(buf)
        }
    }

    fn align4(n: usize) -> usize {
        (n + 3) & !3
    }

    /// The netlink attributes in `buf`: (type, value).
    fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
        std::iter::from_fn(move || {
            let len = u16::from_ne_bytes(buf.get(..2)?.try_into().ok()?) as usize;
            let ty = u16::from_ne_bytes(buf.get(2..4)?.try_into().ok()?) & 0x3fff;
            if len < 4 || len > buf.len() {
                return None;
            }
            let value = &buf[4..len];
            buf = buf.get(align4(len).min(buf.len())..).unwrap_or_default();
            Some((ty, value))
        })
    }
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
        assert_eq!(stat_pgrp(stat), Some(42));
        assert_eq!(stat_pgrp("42 (x) S"), None);
    }

    #[test]
    fn group_cpu_counts_the_group_and_splits_since() {
        // This test process leads no group of its own in general; its own
        // group holds at least itself.
        // SAFETY: getpgrp takes no arguments and cannot fail.
        let pgid = unsafe { libc::getpgrp() };
        let g = group_cpu(pgid).expect("this process's group");
        assert!(g.procs >= 1 && g.total > 0.0);
        assert!(group_cpu(-7).is_none());
        let before = GroupCpu {
            total: 1.0,
            user: 0.5,
            system: 0.5,
            procs: 1,
        };
        let after = GroupCpu {
            total: 2.0,
            user: 0.8,
            system: 1.4,
            procs: 3,
        };
        let d = after.since(&before);
        assert!((d.total - 1.0).abs() < 1e-9);
        assert!((d.user - 0.25).abs() < 1e-9 && (d.system - 0.75).abs() < 1e-9);
        assert_eq!(d.procs, 3);
        // Ticks covering under half of the total: no split.
        let few = GroupCpu {
            total: 2.0,
            user: 0.6,
            system: 0.6,
            procs: 3,
        };
        let d = few.since(&before);
        assert!(d.user.is_nan() && d.system.is_nan());
        assert!((d.total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_sleeping_group_settles_and_a_missing_one_too() {
        let child = spawn(None, "sleep", &["5".to_string()]).unwrap();
        assert!(wait_settled(child.pid(), Duration::from_secs(5)));
        let f = child.kill();
        assert!(!f.success());
        assert!(wait_settled(-7, Duration::from_secs(1)));
    }

    #[test]
    fn taskstats_counts_this_process() {
        // This process has run for a while: its ticks are there, and the
        // user ticks grow with a busy loop.
        let pid = std::process::id() as i32;
        let Some((u0, s0)) = user_system_ticks(pid) else {
            // No taskstats here (kernel option or permission): nothing to test.
            return;
        };
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(7));
        }
        std::hint::black_box(x);
        let (u1, s1) = user_system_ticks(pid).expect("taskstats answered once");
        assert!(u1 >= u0 && s1 >= s0);
        assert!(u1 + s1 > u0 + s0, "no tick counted in 200 ms of busy loop");
        assert_eq!(user_system_ticks(-1), None);
    }

    #[test]
    fn perf_samples_are_told_apart_by_address() {
        let script =
            "    55d0c0a1b2c3\n ffffffff81234567\nffffffffa0000000\n\n7f00deadbeef\njunk\n";
        assert_eq!(count_modes(script), (2, 2));
        assert_eq!(count_modes(""), (0, 0));
    }

    #[test]
    fn mode_sampler_sees_a_busy_process() {
        // A child busy in user mode (a shell counting; bounded, and killed
        // with its group at the end). Not this test process: `perf record
        // -p` gives up when one of the process's threads exits while it
        // attaches, and the other tests' threads come and go. perf may be
        // missing or not allowed here, and then there is nothing to check.
        let busy = spawn(
            None,
            "sh",
            &[
                "-c".to_string(),
                "i=0; while [ $i -lt 50000000 ]; do i=$((i+1)); done".to_string(),
            ],
        )
        .unwrap();
        let Some(sampler) = ModeSampler::start(None, busy.pid(), 1000) else {
            busy.kill();
            return;
        };
        // Until the child has run 0.3 s of CPU since sampling began (on a
        // loaded machine that takes longer than 0.3 s), at most 30 s.
        let at_start = cpu_secs_precise(busy.pid()).unwrap_or(0.0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while cpu_secs_precise(busy.pid()).is_some_and(|t| t < at_start + 0.3)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let modes = sampler.finish();
        busy.kill();
        let (user, _kernel) = modes.expect("samples of a busy process");
        assert!(user > 0);
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
