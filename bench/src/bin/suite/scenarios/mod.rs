//! The scenarios, each a user of the harness: what runs, against which
//! peers, and what the report says about it.

pub(crate) mod drivers;
pub(crate) mod echo;
pub(crate) mod ecosystem;
pub(crate) mod executor;
pub(crate) mod files;
pub(crate) mod http;
pub(crate) mod kv;
pub(crate) mod levers;
pub(crate) mod threads;
pub(crate) mod uring;
pub(crate) mod uring_cells;

use crate::harness::model::Outcome;
use crate::harness::Ctx;

/// The scenarios, in the order a full run goes through them.
pub(crate) const SCENARIOS: [&str; 10] = [
    "echo",
    "http",
    "arch",
    "kv",
    "files",
    "executor",
    "uring",
    "ecosystem",
    "threads",
    "drivers",
];

/// Scenarios run only when asked for by name (`--only`), never by a full
/// run: experiments rather than comparisons the report tracks.
pub(crate) const OPT_IN: [&str; 1] = ["levers"];

/// The planned seconds of scenario `name`.
pub(crate) fn plan(ctx: &Ctx, name: &str) -> f64 {
    match name {
        "echo" => echo::plan(ctx),
        "http" => http::plan_http(ctx),
        "arch" => http::plan_arch(ctx),
        "kv" => kv::plan(ctx),
        "files" => files::plan(ctx),
        "executor" => executor::plan(ctx),
        "uring" => uring::plan(ctx),
        "ecosystem" => ecosystem::plan(ctx),
        "threads" => threads::plan(ctx),
        "drivers" => drivers::plan(ctx),
        "levers" => levers::plan(ctx),
        _ => 0.0,
    }
}

/// Runs scenario `name`.
pub(crate) fn run(ctx: &Ctx, name: &str) -> Outcome {
    match name {
        "echo" => echo::run(ctx),
        "http" => http::run_http(ctx),
        "arch" => http::run_arch(ctx),
        "kv" => kv::run(ctx),
        "files" => files::run(ctx),
        "uring" => uring::run(ctx),
        "ecosystem" => ecosystem::run(ctx),
        "threads" => threads::run(ctx),
        "drivers" => drivers::run(ctx),
        "levers" => levers::run(ctx),
        _ => executor::run(ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget: a full run in under 20 minutes. The plan keeps
    /// a margin of half a minute for what it does not count (starting the
    /// suite, writing the report and the charts).
    #[test]
    fn a_full_run_is_planned_under_twenty_minutes() {
        let ctx = Ctx::for_tests(false);
        let total: f64 = SCENARIOS.iter().map(|s| plan(&ctx, s)).sum();
        assert!(total <= 19.5 * 60.0, "{total} s");
        for s in SCENARIOS {
            assert!(plan(&ctx, s) > 0.0, "{s} has no plan");
        }
    }
}
