//! The measuring machinery every scenario uses: child processes pinned to
//! a core (`proc`), a scenario's servers (`fleet`), the HTTP load generator
//! h2load at a fixed rate (`h2load`), samples and their
//! statistics (`model`), the rounds of a cell (`rounds`), and the report
//! (`report`, `chart`). Nothing here knows a scenario.

pub(crate) mod chart;
pub(crate) mod fleet;
pub(crate) mod h2load;
pub(crate) mod model;
pub(crate) mod proc;
pub(crate) mod report;
pub(crate) mod rounds;

use std::path::PathBuf;
use std::time::Instant;

/// Rounds per cell of a full run (a scenario may take fewer).
pub(crate) const FULL_ROUNDS: usize = 3;
/// Rounds per cell of a quick run.
pub(crate) const QUICK_ROUNDS: usize = 2;

/// What every scenario needs to know about this run.
#[derive(Clone)]
pub(crate) struct Ctx {
    /// Quick mode: fewer rounds and a smaller matrix.
    pub quick: bool,
    /// Rounds per cell.
    pub rounds: usize,
    /// The core servers are pinned to.
    pub server_core: Option<usize>,
    /// The core load generators and measuring programs are pinned to.
    pub loader_core: Option<usize>,
    /// False when the font could not be loaded: no charts.
    pub charts: bool,
    /// Where the report and its `charts/` go: `bench/` for a run of every
    /// scenario, `target/bench-partial/` for a partial one.
    pub out_dir: PathBuf,
    /// When the run started (for the progress lines).
    pub start: Instant,
    /// Workers of the servers of the `threads` scenario (`--threads`).
    pub threads: usize,
}

impl Ctx {
    /// This context with at most `max` rounds per cell (a scenario with
    /// many cells keeps the full run under 20 minutes so).
    pub(crate) fn rounds_at_most(&self, max: usize) -> Ctx {
        Ctx {
            rounds: self.rounds.min(max),
            ..self.clone()
        }
    }
}

#[cfg(test)]
impl Ctx {
    /// A context for the scenarios' unit tests: quick or full mode's
    /// rounds, servers on core 0 and load on core 1, no charts, 2 workers.
    pub(crate) fn for_tests(quick: bool) -> Ctx {
        Ctx {
            quick,
            rounds: if quick { QUICK_ROUNDS } else { FULL_ROUNDS },
            server_core: Some(0),
            loader_core: Some(1),
            charts: false,
            out_dir: std::env::temp_dir(),
            start: Instant::now(),
            threads: 2,
        }
    }
}

impl Ctx {
    /// Path of a bench binary, relative to the workspace root.
    pub(crate) fn bin(&self, name: &str) -> String {
        format!("target/release/{name}")
    }

    /// Path of an example binary, relative to the workspace root.
    pub(crate) fn example(&self, name: &str) -> String {
        format!("target/release/examples/{name}")
    }

    /// Prints a progress line with the elapsed time.
    pub(crate) fn log(&self, msg: &str) {
        let t = self.start.elapsed().as_secs();
        println!("[{:02}:{:02}] {msg}", t / 60, t % 60);
    }
}
