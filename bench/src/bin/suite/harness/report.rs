//! The results as a terminal summary and as BENCHMARKS.md (bench/ for a
//! full run, target/bench-partial/ for a partial one).

use std::fmt::Write as _;

use super::model::{beyond, human, Beyond, Cell, Outcome, Ratio, Target, OURS2, SATURATED};
use super::Ctx;

/// Facts about the machine and the build, for the report's header.
pub(crate) struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Online CPUs.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    /// `git rev-parse HEAD`, with a mark when the tree has changes.
    pub commit: String,
    /// UTC date and time of the run.
    pub date: String,
    /// `rustc --version`.
    pub rustc: String,
    /// Versions of the load tools.
    pub tools: Vec<(String, String)>,
}

/// The reference peer of a cell (ours, listed first).
fn reference(cell: &Cell) -> &str {
    cell.series
        .first()
        .map(|s| s.peer.as_str())
        .unwrap_or("ours")
}

fn extras_keys(cells: &[Cell]) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = Vec::new();
    for c in cells {
        for s in &c.series {
            for r in s.rounds.iter().flatten() {
                for (k, _) in &r.extras {
                    if !keys.contains(k) {
                        keys.push(k);
                    }
                }
            }
        }
    }
    keys
}

fn fmt_value(v: f64, unit: &str) -> String {
    if unit.contains("µs") || unit == "MB/s" {
        format!("{v:.2}")
    } else {
        human(v)
    }
}

fn fmt_extra(key: &str, v: f64) -> String {
    if key.contains("µs") {
        if v >= 1000.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    } else if key == "secs" {
        format!("{v:.3}")
    } else {
        human(v)
    }
}

/// One markdown table for a list of cells.
fn table_md(cells: &[Cell], unavailable: &[(String, String)]) -> String {
    let keys = extras_keys(cells);
    let mut s = String::new();
    let unit = cells.first().map(|c| c.unit).unwrap_or("");
    let lower = cells.first().is_some_and(|c| !c.higher_is_better);
    let vs_first = cells.first().is_some_and(|c| c.vs_first);
    let _ = write!(s, "| cell | peer | {unit} (median) |");
    for k in &keys {
        let _ = write!(s, " {k} |");
    }
    // With a second copy of ours in the cells, each row says whether its
    // ratio clears the cell's noise floor.
    let noisy = cells.iter().any(|c| c.get(OURS2).is_some());
    let _ = writeln!(
        s,
        " {} median [min–max] |{} rounds used / rejected / failed | notes |",
        if vs_first {
            "B/A (this row / first row)"
        } else if lower {
            "peer/ours"
        } else {
            "ours/peer"
        },
        if noisy {
            " beyond the noise floor (ours'/ours)? |"
        } else {
            ""
        }
    );
    let _ = write!(s, "|---|---|---:|");
    for _ in &keys {
        s.push_str("---:|");
    }
    s.push_str("---:|");
    if noisy {
        s.push_str("---|");
    }
    s.push_str("---|---|\n");
    for c in cells {
        let r = reference(c);
        for ser in &c.series {
            let median = ser
                .median()
                .map(|v| fmt_value(v, c.unit))
                .unwrap_or_else(|| "—".to_string());
            let _ = write!(s, "| {} | {} | {median} |", c.label, ser.peer);
            for k in &keys {
                let v = ser
                    .median_extra(k)
                    .map(|v| fmt_extra(k, v))
                    .unwrap_or_default();
                let _ = write!(s, " {v} |");
            }
            let ratio = if ser.peer == r {
                "—".to_string()
            } else {
                c.ratio(r, &ser.peer).map(|x| x.show()).unwrap_or_default()
            };
            let (used, sat) = ser.usable();
            let mut notes = ser.notes();
            if let Some(why) = &ser.unavailable {
                notes.insert(0, format!("not measured: {why}"));
            }
            if sat {
                notes.push("load generator saturated in every round: these figures measure the client (lower bound)".to_string());
            }
            if ser.unavailable.is_none() {
                if let Some((_, why)) = unavailable.iter().find(|(p, _)| *p == ser.peer) {
                    notes.insert(0, format!("not measured: {why}"));
                } else if ser.rounds.is_empty() {
                    notes.push("not measured".to_string());
                }
            }
            let _ = write!(s, " {ratio} |");
            if noisy {
                let _ = write!(s, " {} |", noise_cell(c, r, &ser.peer));
            }
            let _ = writeln!(
                s,
                " {} / {} / {} | {} |",
                if sat { 0 } else { used.len() },
                ser.rejected(),
                ser.failed(),
                notes.join("; ").replace('|', "\\|")
            );
        }
    }
    s
}

/// Whether `peer`'s ratio to the reference `r` of cell `c` clears the
/// cell's noise floor (the band of ours'/ours, [`Ratio::band`]).
fn noise_cell(c: &Cell, r: &str, peer: &str) -> String {
    if peer == r {
        return String::new();
    }
    let Some(noise) = c.noise() else {
        return "no noise floor".to_string();
    };
    if peer == OURS2 {
        let (lo, hi) = noise.band();
        return format!("the noise floor: ±[{lo:.2}–{hi:.2}]");
    }
    let Some(x) = c.ratio(r, peer) else {
        return String::new();
    };
    let (better, worse) = if c.vs_first {
        ("B above", "B below")
    } else {
        ("ours better", "ours worse")
    };
    match beyond(&x, &noise, 1.0) {
        Beyond::Above => better.to_string(),
        Beyond::Below => worse.to_string(),
        Beyond::Within => "within the noise".to_string(),
    }
}

/// The rows of a scenario's ratio chart: "cell vs peer" and the ratio.
pub(crate) fn ratio_rows(out: &Outcome) -> Vec<(String, Ratio)> {
    let mut rows = Vec::new();
    for (_, cells) in &out.tables {
        for c in cells {
            let r = reference(c);
            for s in c.series.iter().skip(1) {
                if let Some(x) = c.ratio(r, &s.peer) {
                    let label = if c.vs_first {
                        format!("{}: {} / {r}", c.label, s.peer)
                    } else if r == "ours" {
                        format!("{}: vs {}", c.label, s.peer)
                    } else {
                        format!("{}: {r} vs {}", c.label, s.peer)
                    };
                    rows.push((label, x));
                }
            }
        }
    }
    rows
}

fn verdict_md(t: &Target) -> &'static str {
    match t.pass {
        Some(true) => "✅ pass",
        Some(false) => "❌ miss",
        None if t.within_noise => "≈ within the noise: no verdict",
        None => "— not measured",
    }
}

/// Formats seconds as "4 min 05 s".
pub(crate) fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

/// The whole of BENCHMARKS.md.
pub(crate) fn markdown(
    ctx: &Ctx,
    m: &Machine,
    outs: &[Outcome],
    scenarios: &[&str],
    command: &str,
    total_secs: f64,
    planned: f64,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Generated by `{command}` on {}; it took {} (planned {}). Regenerate with `bench/run` (full) or `bench/run --quick` (`bench/run --plan` prints the estimate per scenario); `bench/run --only <scenario,...>` runs some of {} and writes its report to `target/bench-partial/BENCHMARKS.md`, leaving this file alone.\n",
        m.date,
        duration(total_secs),
        duration(planned),
        scenarios.join(", ")
    );
    if ctx.quick {
        let _ = writeln!(
            s,
            "> **Quick mode**: {} rounds per cell instead of 5, and a reduced matrix. Indicative only; run `bench/run` for the full numbers.\n",
            ctx.rounds
        );
    }
    if let Ok(w) = std::env::var("SUITE_BUILD_FAILED") {
        let _ = writeln!(s, "> **Warning**: {w}.\n");
    }
    if outs.len() < scenarios.len() {
        let _ = writeln!(
            s,
            "> Only these scenarios were run: {}.\n",
            outs.iter().map(|o| o.name).collect::<Vec<_>>().join(", ")
        );
    }
    let _ = writeln!(s, "## Machine\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| CPU | {} |", m.cpu);
    let _ = writeln!(
        s,
        "| Cores | {} (servers pinned to core {}, load generators and measuring programs to core {}) |",
        m.cores,
        ctx.server_core.map(|c| c.to_string()).unwrap_or_else(|| "–".into()),
        ctx.loader_core.map(|c| c.to_string()).unwrap_or_else(|| "–".into())
    );
    let _ = writeln!(s, "| Kernel | {} |", m.kernel);
    let _ = writeln!(s, "| Commit | {} |", m.commit);
    let _ = writeln!(s, "| Date | {} |", m.date);
    let _ = writeln!(s, "| Compiler | {} (release profile) |", m.rustc);
    for (t, v) in &m.tools {
        let _ = writeln!(s, "| {t} | {v} |");
    }
    s.push('\n');

    let _ = writeln!(s, "## Method\n");
    let _ = writeln!(
        s,
        "- Each server is pinned to core 0 (`taskset -c 0`), each load generator or measuring program to core 1 (`taskset -c 1`); all peers of a scenario run in the same invocation, started once and checked (restarted once if they died) before every run.\n\
- After a warm-up, every cell runs {} rounds with the peers interleaved (A B C A B C ...). Figures are medians over the rounds; a ratio is the median of the per-round ratios ours/peer, with their min and max, so slow drift of a shared machine affects both sides of each ratio alike.\n\
- The load generator's CPU is recorded for every run (echo_load's `client_cpu`; for wrk and redis-benchmark the child's rusage from wait4 over the run's length). A run where it reached {:.0}% of a core measured the client, not the server: it is **rejected** and counted; if every round of a peer was rejected, its figures are shown anyway, marked \"(sat.)\".\n\
- A peer that does not start, or exits at once, is reported as \"not measured: <reason>\" and the suite goes on.\n",
        ctx.rounds,
        SATURATED * 100.0
    );

    let rejected: usize = outs.iter().map(|o| o.rejected()).sum();
    let runs: usize = outs.iter().map(|o| o.runs()).sum();
    let _ =
        writeln!(
        s,
        "**Rejected rounds: {rejected} of {runs} measurements** (load generator saturated){}.\n",
        if rejected == 0 { "" } else { "; see each scenario" }
    );

    let _ = writeln!(s, "## Targets\n");
    let _ = writeln!(
        s,
        "| target | measured (median [min–max]) | noise floor ours'/ours | verdict |\n|---|---|---|---|"
    );
    for o in outs {
        for t in &o.targets {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                t.what,
                t.measured,
                t.noise.as_deref().unwrap_or("—"),
                verdict_md(t)
            );
        }
        if o.targets.is_empty() && !o.no_targets {
            let _ = writeln!(s, "| {} | not measured | — | — |", o.title);
        }
    }
    let pass = outs
        .iter()
        .flat_map(|o| &o.targets)
        .filter(|t| t.pass == Some(true))
        .count();
    let miss = outs
        .iter()
        .flat_map(|o| &o.targets)
        .filter(|t| t.pass == Some(false))
        .count();
    let within = outs
        .iter()
        .flat_map(|o| &o.targets)
        .filter(|t| t.pass.is_none() && t.within_noise)
        .count();
    let na = outs
        .iter()
        .flat_map(|o| &o.targets)
        .filter(|t| t.pass.is_none() && !t.within_noise)
        .count();
    let _ = writeln!(
        s,
        "\n{pass} met, {miss} missed, {within} within the noise (no verdict), {na} not measured. A target with a noise floor is judged only when every round's ratio, taken relative to the threshold, lies on the same side outside the band that two copies of our server gave (`ours'`/`ours`, measured in the same rounds; made symmetric, widened to include 1.00x and by 0.5%).\n"
    );

    for o in outs {
        let _ = writeln!(s, "## {} (`{}`, {})\n", o.title, o.name, duration(o.secs));
        for n in &o.notes {
            let _ = writeln!(s, "- {n}");
        }
        for (p, why) in &o.unavailable {
            let _ = writeln!(s, "- **{p}: not measured**: {why}");
        }
        let rej = o.rejected();
        if rej > 0 {
            let _ = writeln!(
                s,
                "- **{rej} of {} runs rejected** because the load generator was saturated.",
                o.runs()
            );
        } else {
            let _ = writeln!(s, "- No run rejected ({} runs).", o.runs());
        }
        s.push('\n');
        for (title, cells) in &o.tables {
            if cells.is_empty() {
                continue;
            }
            let _ = writeln!(s, "### {title}\n");
            s.push_str(&table_md(cells, &o.unavailable));
            s.push('\n');
        }
        for e in &o.extra_md {
            s.push_str(e);
            s.push('\n');
        }
        for c in &o.charts {
            let _ = writeln!(s, "![{}]({})\n", c.title, c.path);
        }
        if !o.commands.is_empty() {
            let _ = writeln!(
                s,
                "<details><summary>Exact commands ({})</summary>\n\n```text",
                o.commands.len()
            );
            for c in &o.commands {
                let _ = writeln!(s, "{c}");
            }
            let _ = writeln!(s, "```\n\n</details>\n");
        }
    }
    s
}

/// The summary printed at the end of a run.
pub(crate) fn terminal(outs: &[Outcome]) -> String {
    let mut s = String::new();
    for o in outs {
        let _ = writeln!(s, "\n== {} ({}) ==", o.title, o.name);
        for (p, why) in &o.unavailable {
            let _ = writeln!(s, "  {p}: not measured: {why}");
        }
        for n in o.notes.iter().filter(|n| n.starts_with("not measured")) {
            let _ = writeln!(s, "  {n}");
        }
        for (title, cells) in &o.tables {
            if cells.is_empty() {
                continue;
            }
            let _ = writeln!(s, "  {title}:");
            for c in cells {
                let r = reference(c);
                for ser in &c.series {
                    let Some(m) = ser.median() else {
                        continue;
                    };
                    let ratio = if ser.peer == r {
                        String::new()
                    } else {
                        c.ratio(r, &ser.peer)
                            .map(|x| {
                                format!(
                                    "{} {}",
                                    if c.vs_first {
                                        "B/A"
                                    } else if c.higher_is_better {
                                        "ours/peer"
                                    } else {
                                        "peer/ours"
                                    },
                                    x.show()
                                )
                            })
                            .unwrap_or_default()
                    };
                    let rej = ser.rejected();
                    let _ = writeln!(
                        s,
                        "    {:<26} {:<16} {:>10} {:<10} {}{}",
                        c.label,
                        ser.peer,
                        fmt_value(m, c.unit),
                        c.unit,
                        ratio,
                        if rej > 0 {
                            format!("  ({rej} rejected)")
                        } else {
                            String::new()
                        }
                    );
                }
            }
        }
        if !o.targets.is_empty() {
            let _ = writeln!(s, "  Targets:");
            for t in &o.targets {
                let _ = writeln!(
                    s,
                    "    [{}] {} — {}{}",
                    t.verdict(),
                    t.what,
                    t.measured,
                    t.noise
                        .as_deref()
                        .map(|n| format!("; noise floor {n}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::model::Sample;

    fn cell(values: &[(&str, [f64; 3])]) -> Cell {
        let names: Vec<&str> = values.iter().map(|v| v.0).collect();
        let mut c = Cell::new("10k req/s".into(), 1.0, &names, "server CPU µs/req");
        c.higher_is_better = false;
        for (p, v) in values {
            for x in v {
                c.get_mut(p).unwrap().rounds.push(Ok(Sample::new(*x)));
            }
        }
        c
    }

    #[test]
    fn a_table_with_ours2_says_what_clears_the_noise() {
        let c = cell(&[
            ("ours", [10.0, 10.0, 10.0]),
            ("tokio", [20.0, 20.0, 20.0]),
            ("monoio", [10.2, 9.9, 10.1]),
            ("fast", [5.0, 5.0, 5.0]),
            (OURS2, [10.3, 9.8, 10.0]),
        ]);
        let md = table_md(std::slice::from_ref(&c), &[]);
        assert!(md.contains("beyond the noise floor (ours'/ours)?"), "{md}");
        let row = |peer: &str| {
            md.lines()
                .find(|l| l.contains(&format!("| {peer} |")))
                .unwrap()
                .to_string()
        };
        assert!(row("tokio").contains("| ours better |"), "{md}");
        assert!(row("monoio").contains("| within the noise |"), "{md}");
        assert!(row("fast").contains("| ours worse |"), "{md}");
        assert!(row(OURS2).contains("the noise floor"), "{md}");
        // Without ours' there is no such column.
        let plain = cell(&[("ours", [1.0; 3]), ("tokio", [2.0; 3])]);
        assert!(!table_md(&[plain], &[]).contains("noise floor"));
    }

    #[test]
    fn targets_within_the_noise_are_counted_apart() {
        let t = |pass, within_noise| Target {
            what: "t".into(),
            measured: "1.00x".into(),
            pass,
            noise: Some("1.00x [0.95–1.05]".into()),
            within_noise,
        };
        assert_eq!(verdict_md(&t(Some(true), false)), "✅ pass");
        assert_eq!(verdict_md(&t(None, true)), "≈ within the noise: no verdict");
        assert_eq!(verdict_md(&t(None, false)), "— not measured");
        let out = Outcome {
            name: "x",
            title: "X".into(),
            targets: vec![t(Some(true), false), t(None, true), t(None, false)],
            ..Default::default()
        };
        let term = terminal(std::slice::from_ref(&out));
        assert!(term.contains("[within noise] t — 1.00x; noise floor 1.00x [0.95–1.05]"));
    }
}
