//! Scenario `levers` (opt-in: `bench/run --only levers`, never part of a
//! full run): which kernel-path levers cut a server's CPU per HTTP request
//! on this kernel (issue 16).
//!
//! The same HTTP protocol code served by `raw_http`, a server written
//! directly on the `io-uring` crate with no runtime, in each of its modes
//! (one lever each: `POLL_FIRST` on the receive after a response, the send
//! linked to the next receive, a multishot receive over provided buffers;
//! see `bench/src/bin/raw_http.rs`), beside `tokio_http` and our `http`
//! example. A second copy of `raw_http --mode plain`, measured in the same
//! rounds, is the noise floor (`ours'` in the table: the harness's name for
//! the A-vs-A copy). Each cell is h2load at a fixed offered rate, the
//! server's CPU per request (user and system apart) and p50/p99, with the
//! peers interleaved in rotated order, as in the `http` scenario.

use crate::harness::fleet::{Fleet, Spec};
use crate::harness::model::{human, Outcome, OURS2};
use crate::harness::{proc, Ctx};

use super::http::{fixed_cell, fixed_note, fixed_overhead, load_for, Fixed, SECS};

/// Connections of every cell.
const CONNS: usize = 50;
/// The offered rates, req/s over all connections: a light and a busy one
/// (about 25% and 60% of the slowest closed-loop peak of the `http`
/// scenario on the 2-core machine it was written on).
const RATES: [f64; 2] = [10_000.0, 30_000.0];
/// The variants of `raw_http` measured, in table order: a mode, then
/// options (`+fixed`: `--fixed`, registered files; `+coop`: `--ring coop`).
const MODES: [&str; 8] = [
    "plain",
    "pollfirst",
    "link",
    "linkpf",
    "multishot",
    "plain+fixed",
    "multishot+fixed",
    "plain+coop",
];

/// The arguments of `raw_http` for variant `name` (see [`MODES`]).
fn raw_args(name: &str) -> Vec<&str> {
    let mut parts = name.split('+');
    let mut args = vec!["--mode", parts.next().unwrap_or("plain")];
    for opt in parts {
        match opt {
            "fixed" => args.push("--fixed"),
            "coop" => args.extend(["--ring", "coop"]),
            _ => {}
        }
    }
    args
}

/// The peers: raw_http in each mode (plain first: the reference), tokio,
/// ours, and the A-vs-A copy of plain.
fn peers(ctx: &Ctx) -> Vec<Spec> {
    let raw = ctx.bin("raw_http");
    let mut v: Vec<Spec> = MODES
        .iter()
        .map(|m| Spec::new(m, &raw, &raw_args(m)))
        .collect();
    v.push(Spec::new("tokio_http", &ctx.bin("tokio_http"), &[]));
    v.push(Spec::new("ours", &ctx.example("http"), &[]));
    v.push(Spec::new(OURS2, &raw, &["--mode", "plain"]));
    v
}

/// Rounds per cell: the run's (3 by default, 2 with `--quick`).
fn rounds(ctx: &Ctx) -> usize {
    ctx.rounds
}

/// Planned seconds.
pub(crate) fn plan(ctx: &Ctx) -> f64 {
    let n = (MODES.len() + 3) as f64;
    RATES.len() as f64 * rounds(ctx) as f64 * n * (f64::from(SECS) + fixed_overhead(CONNS))
        + n * 0.1
}

/// Scenario `levers`.
pub(crate) fn run(ctx: &Ctx) -> Outcome {
    let tag = "levers";
    let mut out = Outcome {
        name: "levers",
        title: "Kernel-path levers on a raw io_uring HTTP server".to_string(),
        no_targets: true,
        ..Default::default()
    };
    out.notes.push(format!(
        "`raw_http --mode M` serves the `http` example's protocol (same parser and `Conn::process`) directly on the io-uring crate, one thread, one enter per loop turn. Modes: `plain` recv -> send -> recv; `pollfirst` the recv after a response carries IORING_RECVSEND_POLL_FIRST; `link` the send (MSG_WAITALL) is IOSQE_IO_LINKed to the next recv, both in one enter; `linkpf` both; `multishot` one multishot recv per connection over provided buffers; `+fixed` connections accepted straight into the ring's table of registered files (IOSQE_FIXED_FILE on every op, no descriptor); `+coop` a SINGLE_ISSUER | COOP_TASKRUN | TASKRUN_FLAG ring instead of SINGLE_ISSUER | DEFER_TASKRUN. `plain` is the reference (B/A = this row / plain, lower is cheaper); `{OURS2}` is a second `raw_http --mode plain`, the A-vs-A noise floor; `tokio_http` and `ours` (examples/http) are there for scale."
    ));
    if !proc::program_in_path("h2load") {
        out.notes
            .push("not measured: h2load is not installed (bench/run installs it)".to_string());
        return out;
    }
    let specs = peers(ctx);
    let names: Vec<String> = specs.iter().map(|s| s.peer.clone()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut fleet = Fleet::start(ctx, &mut out, specs);
    let rounds = rounds(ctx);
    let mut cells = Vec::new();
    for rate in RATES {
        let load = load_for(rate, CONNS);
        let f = Fixed {
            label: format!("{} req/s, {} conns", human(load.offered()), load.conns),
            x: load.offered(),
            load,
            rounds,
        };
        let mut cell = fixed_cell(ctx, &mut out, &mut fleet, tag, &names, f);
        cell.vs_first = true;
        cells.push(cell);
    }
    fleet.stop();
    out.notes.push(format!(
        "Fixed rates {} req/s over {CONNS} connections, {rounds} rounds each.",
        RATES
            .iter()
            .map(|r| human(*r))
            .collect::<Vec<_>>()
            .join(" and ")
    ));
    out.notes.push(fixed_note(ctx));
    out.tables.push((
        "Server CPU per request at a fixed offered rate (B/A: this row / raw_http plain)"
            .to_string(),
        cells,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_map_to_arguments() {
        assert_eq!(raw_args("plain"), ["--mode", "plain"]);
        assert_eq!(
            raw_args("multishot+fixed"),
            ["--mode", "multishot", "--fixed"]
        );
        assert_eq!(
            raw_args("plain+coop"),
            ["--mode", "plain", "--ring", "coop"]
        );
    }
}
