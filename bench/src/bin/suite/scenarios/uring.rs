//! Scenario `uring` (issue 7): each io_uring facility of the runtime
//! measured both ways in the same invocation, in the setting where it
//! should matter, and a summary of which way won and by how much beside
//! the runtime's current default.
//!
//! Cells (variant A, the plain way, against variant B, the facility):
//!
//! 1. `idle`: 10,000 mostly idle echo connections (`echo_load --rate`),
//!    `echo_server ours` (a `Vec` per connection) against `ours_multishot`
//!    (a shared provided-buffer ring), tokio as a reference: server RSS per
//!    connection, CPU per message, latency; a fresh server per run so that
//!    the RSS baseline is clean. Full mode adds the pair's peak at 1,000
//!    connections.
//! 2. `bundles`: 4 KiB echo × 100 conns, `ours_multishot --no-bundles`
//!    against `ours_multishot` (receive bundles on): peak msgs/s, CPU/msg
//!    at a fixed rate.
//! 3. `sqpoll`: 64 B echo × 100 conns, `ours` against
//!    `ours --sqpoll <ms> --sqpoll-cpu <server core>`.
//! 4. `send_zc`: `send_bench` over loopback in 64 KiB and 1 MiB writes:
//!    `write_all`, `write_all_zc`, `send_zc_fixed`: MB/s and CPU per GB of
//!    both sides.
//! 5. `link_timeout`: `timeout_read` (plain read, `time::timeout` around a
//!    read, `read_timeout` = linked timeout), its own interleaved rounds.
//! 6. `direct`: 64 B echo × 1,000 conns, `ours` against `ours_direct`
//!    (registered files).
//! 7. `fixed buffers`: `fs_randread --depth 32`, `ours` (`read_at`) against
//!    `ours_fixed` (`read_fixed_at`).
//!
//! A variant that cannot run here (e.g. buffers that cannot be registered)
//! says so and is reported as not measured.

use std::fmt::Write as _;

use super::echo::fmt_secs;
use super::files;
use super::uring_cells::{
    config, echo_pair, fixed_files, idle, link_timeout, send_bundle, send_zc, IDLE, QUEUE_FLUSH,
    QUEUE_WAYS, SEND_SIZES, TIMEOUT_WAYS, WAYS,
};
use crate::harness::fleet::Spec;
use crate::harness::model::{human, Cell, Outcome, Ratio};
use crate::harness::{proc, Ctx};

/// What the runtime does today, per facility (edited by hand when the
/// defaults change; the summary table shows it beside the numbers).
pub(crate) const RUNTIME_DEFAULTS: [(&str, &str); 8] = [
    (
        "multishot receive + buffer ring",
        "plain `read` into the caller's buffer; multishot + ring opt-in (`recv_multishot`)",
    ),
    (
        "receive bundles",
        "on when probed (`features().recv_bundle`), for multishot receives",
    ),
    ("SQPOLL", "off; opt-in with `Builder::sqpoll`"),
    (
        "SEND_ZC",
        "opt-in (`send_zc`, `write_all_zc`); `write_all` copies",
    ),
    (
        "send bundles",
        "opt-in (`send_queue`); bundles on when probed, SENDMSG otherwise",
    ),
    (
        "link timeout",
        "opt-in via `read_timeout`; `time::timeout` is the default path",
    ),
    (
        "registered files",
        "opt-in (`TcpListener::incoming_direct`)",
    ),
    (
        "registered buffers",
        "opt-in (`runtime::fixed::FixedBufPool`)",
    ),
];

/// The default of `facility` from [`RUNTIME_DEFAULTS`].
fn runtime_default(facility: &str) -> &'static str {
    RUNTIME_DEFAULTS
        .iter()
        .find(|(f, _)| *f == facility)
        .map(|(_, d)| *d)
        .unwrap_or("—")
}

/// The SQPOLL thread's idle time, in milliseconds.
pub(crate) const SQPOLL_IDLE_MS: u64 = 10;
/// Per-run overhead on top of the measured and warm-up time.
const OVERHEAD: f64 = 0.15;
/// Rounds per cell: the run's, at most 2 (the scenario compares many
/// facilities; 2 rounds keep the full run under 20 minutes).
const ROUNDS: usize = 2;

/// Planned seconds.
pub(crate) fn plan(ctx: &Ctx) -> f64 {
    let ctx = &ctx.rounds_at_most(ROUNDS);
    let c = config(ctx);
    let r = ctx.rounds as f64;
    // Connecting and closing 10,000 connections, and a fresh server.
    let idle_run = c.idle_secs + c.idle_warmup + 1.6;
    let idle = r * IDLE.len() as f64 * idle_run;
    let peak_run = c.peak_secs + c.peak_warmup + OVERHEAD;
    let fixed_run = c.fixed_secs + 0.15 + OVERHEAD;
    // An echo pair: peak and fixed rate, two servers.
    let pair = r * 2.0 * (peak_run + fixed_run) + 0.5;
    let idle_peak = if c.idle_peak { r * 2.0 * peak_run } else { 0.0 };
    // send_bench: ~1.5 GB/s on loopback, plus the process start.
    let send = r * (SEND_SIZES.len() * WAYS.len()) as f64 * (c.send_bytes as f64 / 1.5e9 + 0.1)
        + r * QUEUE_WAYS.len() as f64 * (c.send_bytes as f64 / 4.0 / 0.5e9 + 0.1);
    // timeout_read: ~100k round trips/s, warm-up of a tenth.
    let timeout = (r + 0.1) * TIMEOUT_WAYS.len() as f64 * (c.timeout_trips as f64 / 100e3 + 0.02);
    let randread = r * 2.0 * (c.randread_secs as f64 + 0.35) + 2.0;
    idle + idle_peak + 3.0 * pair + send + timeout + randread
}

/// One row of the summary table.
struct Row {
    facility: &'static str,
    a: String,
    b: String,
    metric: String,
    va: Option<f64>,
    vb: Option<f64>,
    ratio: Option<Ratio>,
    higher_is_better: bool,
}

impl Row {
    /// The row comparing `a` and `b` in `cell`, on the headline figure
    /// (`key` `None`) or an extra one.
    fn new(
        facility: &'static str,
        cell: &Cell,
        a: &str,
        b: &str,
        key: Option<&'static str>,
        metric: String,
        higher_is_better: bool,
    ) -> Row {
        let med = |p: &str| {
            let s = cell.get(p)?;
            match key {
                None => s.median(),
                Some(k) => s.median_extra(k),
            }
        };
        Row {
            facility,
            a: a.to_string(),
            b: b.to_string(),
            metric,
            va: med(a),
            vb: med(b),
            ratio: cell.ratio_of(a, b, key),
            higher_is_better,
        }
    }

    /// Who won, from the per-round ratios: "no difference" when their
    /// range spans 1.0; otherwise the winner and how its figure compares
    /// with the loser's ("+27%" more throughput, "−84%" less cost).
    fn winner(&self) -> String {
        let Some(r) = self.ratio else {
            return "not measured".to_string();
        };
        if r.saturated {
            // The rounds compared measured the load generator, not the
            // servers: no verdict.
            return "unknown (load generator saturated)".to_string();
        }
        // The range spans 1.0, or the median rounds to 1.00x.
        if (r.min <= 1.0 && r.max >= 1.0) || (r.median - 1.0).abs() < 0.005 {
            return "no difference".to_string();
        }
        let b_wins = (r.median > 1.0) == self.higher_is_better;
        // The winner's figure over the loser's.
        let w_over_l = if b_wins { r.median } else { 1.0 / r.median };
        let pct = (w_over_l - 1.0) * 100.0;
        let sign = if pct >= 0.0 { "+" } else { "−" };
        format!(
            "{} ({sign}{:.0}%)",
            if b_wins { &self.b } else { &self.a },
            pct.abs()
        )
    }
}

fn fmt_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.abs() < 100.0 => format!("{v:.2}"),
        Some(v) => human(v),
        None => "—".to_string(),
    }
}

/// The summary table, in markdown.
fn summary_md(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### Summary: which way won\n");
    let _ = writeln!(
        s,
        "B/A is the median of the per-round ratios B/A of the figure (min–max over the rounds); the winner is the better side by that median, with the winner's figure relative to the loser's (+ more throughput, − less cost), \"no difference\" when the range spans 1.0 (or the median rounds to 1.00x), \"unknown\" when only rounds where the load generator saturated its core could be compared (the figures are then the client's limit). \"Runtime default\" is what the runtime does today (a table in `bench/src/bin/suite/scenarios/uring.rs`).\n"
    );
    let _ = writeln!(
        s,
        "| facility | variant A | variant B | metric | A | B | B/A median [min–max] | winner | runtime default |"
    );
    let _ = writeln!(s, "|---|---|---|---|---:|---:|---:|---|---|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.facility,
            r.a,
            r.b,
            r.metric,
            fmt_num(r.va),
            fmt_num(r.vb),
            r.ratio.map(|x| x.show()).unwrap_or_else(|| "—".to_string()),
            r.winner(),
            runtime_default(r.facility)
        );
    }
    s
}

/// The summary, for the terminal.
fn summary_terminal(ctx: &Ctx, rows: &[Row]) {
    ctx.log("  [uring] summary (B/A median [min–max] → winner):");
    for r in rows {
        ctx.log(&format!(
            "    {:<32} {} vs {}: {}: {} vs {}, {} → {}",
            r.facility,
            r.a,
            r.b,
            r.metric,
            fmt_num(r.va),
            fmt_num(r.vb),
            r.ratio.map(|x| x.show()).unwrap_or_else(|| "—".to_string()),
            r.winner()
        ));
    }
}

/// Runs the scenario.
pub(crate) fn run(ctx: &Ctx) -> Outcome {
    let ctx = &ctx.rounds_at_most(ROUNDS);
    let c = config(ctx);
    let mut out = Outcome {
        name: "uring",
        title: "io_uring facilities".to_string(),
        no_targets: true,
        ..Default::default()
    };
    out.notes.push(format!(
        "Each facility against the plain way, in the same invocation, {} rounds with the variants interleaved (A B A B ...). Tables give medians; their ratio column is B/A (each row over the cell's first row), the median of the per-round ratios with their min and max. Servers on core {}, load generators and measuring programs on core {}: with 2 cores, kernel threads (SQPOLL, io-wq, softirq work) share those cores.",
        ctx.rounds,
        ctx.server_core.map(|x| x.to_string()).unwrap_or_else(|| "–".into()),
        ctx.loader_core.map(|x| x.to_string()).unwrap_or_else(|| "–".into()),
    ));
    for bin in ["echo_server", "echo_load"] {
        if !proc::program_in_path(&ctx.bin(bin)) {
            out.notes
                .push(format!("not measured: target/release/{bin} is missing"));
            return out;
        }
    }
    let mut rows = Vec::new();
    let echo_server = ctx.bin("echo_server");

    // 1. Idle connections: multishot + ring against a buffer per connection.
    let idle_cell = idle(ctx, &mut out, &c);
    out.notes.push(format!(
        "idle: a fresh `echo_server <variant>` per run; its VmRSS (/proc/<pid>/status) before any connection, then `echo_load --conns {} --size 64 --rate {:.0} --marks` (each connection sends every {:.0} s on average); RSS per connection = (the larger VmRSS at the start and end of the measured window − the RSS before) / {}; CPU per message = the server's CPU time (its CPU-time clock, all threads) over the {} s window / messages echoed in it. Buffers the kernel holds for sockets are not in the RSS.",
        c.idle_conns,
        c.idle_rate,
        c.idle_conns as f64 / c.idle_rate,
        c.idle_conns,
        fmt_secs(c.idle_secs)
    ));
    let k = c.idle_conns / 1000;
    compare(
        &mut rows,
        "multishot receive + buffer ring",
        &idle_cell,
        ("ours", "ours_multishot"),
        vec![
            (None, format!("RSS KiB per idle conn ({k}k conns)"), false),
            (
                Some("CPU µs/msg"),
                format!("CPU µs/msg, {k}k mostly idle conns"),
                false,
            ),
            (
                Some("p99 µs"),
                format!("p99 µs, {k}k mostly idle conns"),
                false,
            ),
        ],
    );
    out.tables.push((
        "Idle connections: RSS per connection".to_string(),
        vec![idle_cell],
    ));
    if c.idle_peak {
        let specs = vec![
            Spec::new("ours", &echo_server, &["ours"]),
            Spec::new("ours_multishot", &echo_server, &["ours_multishot"]),
        ];
        let (peak, _) = echo_pair(ctx, &mut out, &c, "multishot", specs, (64, 1000), false);
        compare(
            &mut rows,
            "multishot receive + buffer ring",
            &peak,
            ("ours", "ours_multishot"),
            vec![(None, "peak msgs/s, 64 B × 1000 conns".to_string(), true)],
        );
        out.tables
            .push(("Multishot receive: peak throughput".to_string(), vec![peak]));
    }

    // 2. Receive bundles on 4 KiB echo.
    let specs = vec![
        Spec::new(
            "ours_multishot_nobundle",
            &echo_server,
            &["ours_multishot", "--no-bundles"],
        ),
        Spec::new("ours_multishot", &echo_server, &["ours_multishot"]),
    ];
    let (peak, cpu) = echo_pair(ctx, &mut out, &c, "bundles", specs, (4096, 100), true);
    pair_rows(
        &mut rows,
        "receive bundles",
        &peak,
        cpu.as_ref(),
        "ours_multishot_nobundle",
        "ours_multishot",
        "4 KiB × 100 conns",
    );
    out.tables.push((
        "Receive bundles".to_string(),
        std::iter::once(peak).chain(cpu).collect(),
    ));

    // 3. SQPOLL on 64 B echo.
    let mut sq_args = vec![
        "ours".to_string(),
        "--sqpoll".into(),
        SQPOLL_IDLE_MS.to_string(),
    ];
    if let Some(core) = ctx.server_core {
        sq_args.extend(["--sqpoll-cpu".into(), core.to_string()]);
    }
    let sq_args: Vec<&str> = sq_args.iter().map(String::as_str).collect();
    let specs = vec![
        Spec::new("ours", &echo_server, &["ours"]),
        Spec::new("ours_sqpoll", &echo_server, &sq_args),
    ];
    let (peak, cpu) = echo_pair(ctx, &mut out, &c, "sqpoll", specs, (64, 100), true);
    pair_rows(
        &mut rows,
        "SQPOLL",
        &peak,
        cpu.as_ref(),
        "ours",
        "ours_sqpoll",
        "64 B × 100 conns",
    );
    out.notes.push(format!(
        "sqpoll: `echo_server ours --sqpoll {SQPOLL_IDLE_MS} --sqpoll-cpu <server core>`: the SQ kernel thread (`iou-sqp-<pid>`) is pinned to the server's own core, since the other core runs the load generator; on 2 cores it competes with the server thread, so this is SQPOLL's worst case, not its best. The server's CPU time includes that thread (it belongs to the server's thread group); the column \"of which SQ thread\" shows its share, from /proc/<pid>/task/*/stat (10 ms ticks)."
    ));
    out.tables.push((
        "SQPOLL".to_string(),
        std::iter::once(peak).chain(cpu).collect(),
    ));

    // 4. SEND_ZC, with and without registered buffers.
    if proc::program_in_path(&ctx.bin("send_bench")) {
        let cells = send_zc(ctx, &mut out, &c);
        for cell in &cells {
            let size = format!("{} KiB writes", cell.x as usize >> 10);
            compare(
                &mut rows,
                "SEND_ZC",
                cell,
                ("write_all", "write_all_zc"),
                vec![
                    (None, format!("MB/s, {size}"), true),
                    (
                        Some("total CPU s/GB"),
                        format!("sender + reader CPU s/GB, {size}"),
                        false,
                    ),
                ],
            );
            compare(
                &mut rows,
                "registered buffers",
                cell,
                ("write_all_zc", "send_zc_fixed"),
                vec![(None, format!("MB/s, {size}"), true)],
            );
        }
        out.notes.push(format!(
            "send_zc: `send_bench reader` (std, blocking reads into 1 MiB, on the server core) and `send_bench send --way <way> --size <S> --bytes {}` (our runtime, on the loader core; one write in flight, the same buffer reused); MB/s from the first write until the reader's byte count comes back; CPU per GB (10^9 bytes) of the sender (getrusage) and of the reader (its CPU-time clock). On loopback the kernel copies even a SEND_ZC payload on the receive side, and part of the receiver's TCP work runs on the sender's core: compare the total.",
            c.send_bytes
        ));
        if !cells.is_empty() {
            out.tables.push(("SEND_ZC".to_string(), cells));
        }
    } else {
        out.notes
            .push("send_zc: not measured: target/release/send_bench is missing".to_string());
    }

    // 4b. Send bundles: a SendQueue through SENDMSG or as bundles.
    if proc::program_in_path(&ctx.bin("send_bench")) {
        let cells = send_bundle(ctx, &mut out, &c);
        for cell in &cells {
            compare(
                &mut rows,
                "send bundles",
                cell,
                ("queue_sendmsg", "queue_bundle"),
                vec![
                    (None, "MB/s, 64 × 1 KiB pieces per flush".to_string(), true),
                    (
                        Some("sender CPU s/GB"),
                        "sender CPU s/GB".to_string(),
                        false,
                    ),
                ],
            );
        }
        out.notes.push(format!(
            "send bundles: `send_bench send --way <queue_sendmsg|queue_bundle> --size {QUEUE_FLUSH} --bytes {}` against the same reader: a `net::SendQueue` filled with 1 KiB pieces (fresh `Vec`s) and flushed every 64 KiB, either through its fallback (one `IORING_OP_SENDMSG` gathering the pieces) or as one bundled `IORING_OP_SEND` taking them from the queue's buffer ring.",
            c.send_bytes / 4
        ));
        if !cells.is_empty() {
            out.tables.push(("Send bundles".to_string(), cells));
        }
    }

    // 5. Link timeouts against the runtime's timers.
    match link_timeout(ctx, &mut out, &c) {
        Ok(cell) => {
            compare(
                &mut rows,
                "link timeout",
                &cell,
                ("time_timeout", "read_timeout"),
                vec![(None, "round trips/s".to_string(), true)],
            );
            out.notes.push("link_timeout: `timeout_read N --rounds R` (one process, on the loader core): two tasks bounce one byte over a Unix socket pair; the reads carry a 1 s deadline that never passes, either as `runtime::time::timeout` around `read` (a runtime timer per read) or as `read_timeout` (`IORING_OP_LINK_TIMEOUT` linked to the read); `plain_read` (no deadline) is the reference. The program interleaves the ways in every round.".to_string());
            out.tables.push(("Link timeout".to_string(), vec![cell]));
        }
        Err(e) => out.notes.push(format!("link_timeout: not measured: {e}")),
    }

    // 6. Registered files on 64 B echo at 1,000 connections.
    let specs = vec![
        Spec::new("ours", &echo_server, &["ours"]),
        Spec::new("ours_direct", &echo_server, &["ours_direct"]),
    ];
    let (peak, cpu) = echo_pair(ctx, &mut out, &c, "direct", specs, (64, 1000), true);
    pair_rows(
        &mut rows,
        "registered files",
        &peak,
        cpu.as_ref(),
        "ours",
        "ours_direct",
        "64 B × 1000 conns",
    );
    out.tables.push((
        "Registered files".to_string(),
        std::iter::once(peak).chain(cpu).collect(),
    ));

    // 7. Registered buffers on file reads.
    match fixed_files(ctx, &mut out, &c) {
        Ok(cell) => {
            compare(
                &mut rows,
                "registered buffers",
                &cell,
                ("ours", "ours_fixed"),
                vec![(None, "4 KiB random reads/s, depth 32".to_string(), true)],
            );
            out.notes.push(format!(
                "fixed buffers: `fs_randread --only <ours|ours_fixed> --depth 32 --secs {}` on {} (warm page cache): 32 tasks each reading 4 KiB at random aligned offsets, `read_at` into a `Vec` against `read_fixed_at` into a registered buffer.",
                c.randread_secs,
                files::DATA
            ));
            out.tables
                .push(("Registered buffers (files)".to_string(), vec![cell]));
        }
        Err(e) => out.notes.push(format!("fixed buffers: not measured: {e}")),
    }
    out.notes.push(format!(
        "Echo cells (bundles, sqpoll, direct): peak = `echo_load` closed loop for {} s after {} s of warm-up; CPU/msg = the server's CPU time (its CPU-time clock) over an `echo_load --rate R --warmup 0` run of {} s divided by the messages echoed, R being half the slower variant's peak.",
        fmt_secs(c.peak_secs),
        fmt_secs(c.peak_warmup),
        fmt_secs(c.fixed_secs)
    ));

    // A variant that is not built in has only failed rounds saying so:
    // drop them, the table then says "not measured: <why>" once.
    for (_, cells) in &mut out.tables {
        for cell in cells {
            for ser in &mut cell.series {
                let down = out.unavailable.iter().any(|(p, _)| *p == ser.peer);
                if down && ser.rounds.iter().all(|r| r.is_err()) {
                    ser.rounds.clear();
                }
            }
        }
    }
    summary_terminal(ctx, &rows);
    out.extra_md.push(summary_md(&rows));
    out
}

/// Pushes a summary row comparing `a` and `b` in `cell` for each figure
/// `(key, metric, higher_is_better)`, `key` `None` for the headline one.
fn compare(
    rows: &mut Vec<Row>,
    facility: &'static str,
    cell: &Cell,
    (a, b): (&str, &str),
    figures: Vec<(Option<&'static str>, String, bool)>,
) {
    for (key, metric, higher_is_better) in figures {
        rows.push(Row::new(
            facility,
            cell,
            a,
            b,
            key,
            metric,
            higher_is_better,
        ));
    }
}

/// The summary rows of an echo pair: peak msgs/s and CPU per message.
fn pair_rows(
    rows: &mut Vec<Row>,
    facility: &'static str,
    peak: &Cell,
    cpu: Option<&Cell>,
    a: &str,
    b: &str,
    what: &str,
) {
    let peak_msgs = (None, format!("peak msgs/s, {what}"), true);
    compare(rows, facility, peak, (a, b), vec![peak_msgs]);
    if let Some(cpu) = cpu {
        let cpu_msg = (None, format!("CPU µs/msg, {what}"), false);
        compare(rows, facility, cpu, (a, b), vec![cpu_msg]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::model::Sample;

    fn row(rs: &[f64], higher_is_better: bool) -> Row {
        let mut c = Cell::new("x".into(), 1.0, &["a", "b"], "u");
        c.vs_first = true;
        for &r in rs {
            c.get_mut("a").unwrap().rounds.push(Ok(Sample::new(100.0)));
            c.get_mut("b")
                .unwrap()
                .rounds
                .push(Ok(Sample::new(100.0 * r)));
        }
        Row::new("SQPOLL", &c, "a", "b", None, "m".into(), higher_is_better)
    }

    #[test]
    fn winner_follows_the_ratio_and_its_direction() {
        assert_eq!(row(&[1.2, 1.3, 1.25], true).winner(), "b (+25%)");
        assert_eq!(row(&[1.2, 1.3, 1.25], false).winner(), "a (−20%)");
        assert_eq!(row(&[0.5, 0.5], true).winner(), "a (+100%)");
        assert_eq!(row(&[0.5, 0.5], false).winner(), "b (−50%)");
        assert_eq!(row(&[0.9, 1.1, 1.3], true).winner(), "no difference");
        assert_eq!(row(&[1.004], true).winner(), "no difference");
        assert_eq!(row(&[], true).winner(), "not measured");
        let mut sat = row(&[1.5, 1.6], true);
        if let Some(r) = sat.ratio.as_mut() {
            r.saturated = true;
        }
        assert_eq!(sat.winner(), "unknown (load generator saturated)");
    }

    #[test]
    fn every_facility_has_a_default() {
        for f in [
            "multishot receive + buffer ring",
            "receive bundles",
            "SQPOLL",
            "SEND_ZC",
            "link timeout",
            "registered files",
            "registered buffers",
        ] {
            assert_ne!(runtime_default(f), "—", "{f}");
        }
        let md = summary_md(&[row(&[2.0], true)]);
        assert!(
            md.contains("| SQPOLL | a | b | m | 100 | 200 | 2.00x [2.00–2.00] | b (+100%) | off;")
        );
    }
}
