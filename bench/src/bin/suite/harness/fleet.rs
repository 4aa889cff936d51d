//! The servers of one scenario: each peer started once, pinned to the
//! server core, checked before every run and restarted (once) if it died.

use std::net::SocketAddr;
use std::time::Duration;

use super::model::Outcome;
use super::proc::{self, Server};
use super::Ctx;

/// How to start one peer's server (the address is appended).
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// The peer's name in tables.
    pub peer: String,
    /// Program path (relative to the workspace root) or name in `$PATH`.
    pub program: String,
    /// Arguments before the address (or with `{addr}`/`{port}` in them).
    pub args: Vec<String>,
    /// Environment variables set for the server, on top of the suite's
    /// own (e.g. `RUNTIME_DRIVER=epoll`); shown in the commands run.
    pub env: Vec<(String, String)>,
}

impl Spec {
    /// A spec from string slices.
    pub(crate) fn new(peer: &str, program: &str, args: &[&str]) -> Self {
        Spec {
            peer: peer.to_string(),
            program: program.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
        }
    }

    /// The same spec with environment variable `key` set to `value`.
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

struct Entry {
    spec: Spec,
    server: Option<Server>,
    restarts: usize,
    down: Option<String>,
}

/// The running servers of a scenario.
pub(crate) struct Fleet {
    entries: Vec<Entry>,
    core: Option<usize>,
}

/// How long a server has to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(5);

fn start(spec: &Spec, core: Option<usize>, out: &mut Outcome) -> Result<Server, String> {
    let args: Vec<&str> = spec.args.iter().map(String::as_str).collect();
    let s = proc::start_server_env(core, &spec.program, &args, &spec.env, START_TIMEOUT)?;
    out.command(&s.child.cmdline);
    Ok(s)
}

impl Fleet {
    /// Starts every peer; those that fail are recorded as unavailable.
    pub(crate) fn start(ctx: &Ctx, out: &mut Outcome, specs: Vec<Spec>) -> Fleet {
        let mut entries = Vec::new();
        for spec in specs {
            let (server, down) = match start(&spec, ctx.server_core, out) {
                Ok(s) => (Some(s), None),
                Err(why) => {
                    ctx.log(&format!("  {}: not measured: {why}", spec.peer));
                    out.unavailable(&spec.peer, &why);
                    (None, Some(why))
                }
            };
            entries.push(Entry {
                spec,
                server,
                restarts: 0,
                down,
            });
        }
        Fleet {
            entries,
            core: ctx.server_core,
        }
    }

    /// The peers that are up, in the order given.
    pub(crate) fn peers(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.down.is_none())
            .map(|e| e.spec.peer.clone())
            .collect()
    }

    /// The address of `peer`'s server, after checking that it still runs
    /// (it is restarted once per scenario if it died).
    pub(crate) fn addr(&mut self, peer: &str, out: &mut Outcome) -> Result<SocketAddr, String> {
        let core = self.core;
        let e = self
            .entries
            .iter_mut()
            .find(|e| e.spec.peer == peer)
            .ok_or_else(|| format!("unknown peer {peer}"))?;
        if let Some(why) = &e.down {
            return Err(why.clone());
        }
        let died = match e.server.as_mut() {
            Some(s) => s.child.try_finished().map(|f| f.describe()),
            None => Some("not running".to_string()),
        };
        if let Some(how) = died {
            if e.restarts >= 1 {
                let why = format!("server died again ({how})");
                e.down = Some(why.clone());
                out.unavailable(peer, &why);
                return Err(why);
            }
            e.restarts += 1;
            eprintln!("suite: {peer}'s server died ({how}); restarting it");
            match start(&e.spec, core, out) {
                Ok(s) => e.server = Some(s),
                Err(why) => {
                    let why = format!("server died ({how}) and did not restart: {why}");
                    e.down = Some(why.clone());
                    out.unavailable(peer, &why);
                    return Err(why);
                }
            }
        }
        Ok(e.server.as_ref().expect("running").addr)
    }

    /// The process id of `peer`'s server, if it runs.
    pub(crate) fn pid(&self, peer: &str) -> Option<i32> {
        let e = self.entries.iter().find(|e| e.spec.peer == peer)?;
        Some(e.server.as_ref()?.child.pid())
    }

    /// Stops every server.
    pub(crate) fn stop(self) {
        for e in self.entries {
            if let Some(s) = e.server {
                s.child.kill();
            }
        }
    }
}
