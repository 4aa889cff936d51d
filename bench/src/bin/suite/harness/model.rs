//! What a scenario measures and how the numbers are summarised: samples per
//! round and peer, medians, per-round ratios against ours, targets.

/// One measurement of one peer in one round.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// The headline figure (requests/s, msgs/s, MB/s, CPU-µs per message...).
    pub value: f64,
    /// Secondary figures shown beside it (e.g. `("p99 µs", 812.0)`).
    pub extras: Vec<(&'static str, f64)>,
    /// The load generator's CPU use (1.0 = one core busy), when known.
    pub loader_cpu: Option<f64>,
    /// Rejected because the load generator was saturated.
    pub rejected: bool,
    /// Something worth saying about this run (errors, timeouts).
    pub note: Option<String>,
}

impl Sample {
    /// A sample with no extras.
    pub(crate) fn new(value: f64) -> Self {
        Sample {
            value,
            extras: Vec::new(),
            loader_cpu: None,
            rejected: false,
            note: None,
        }
    }
}

/// A load generator at or above this CPU share is saturated: the round
/// measured the client, not the server, and is rejected.
pub(crate) const SATURATED: f64 = 0.95;

/// One peer's rounds in one cell.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// The peer's name ("ours", "tokio", ...).
    pub peer: String,
    /// Round `i` is `rounds[i]`; `Err` holds why that run failed.
    pub rounds: Vec<Result<Sample, String>>,
    /// Set when the peer could not be measured at all.
    pub unavailable: Option<String>,
}

impl Series {
    /// An empty series.
    pub(crate) fn new(peer: &str) -> Self {
        Series {
            peer: peer.to_string(),
            rounds: Vec::new(),
            unavailable: None,
        }
    }

    /// The samples used for the summary: the accepted ones, or all of them
    /// (flagged) when every round was rejected.
    pub(crate) fn usable(&self) -> (Vec<&Sample>, bool) {
        let ok: Vec<&Sample> = self.rounds.iter().filter_map(|r| r.as_ref().ok()).collect();
        let accepted: Vec<&Sample> = ok.iter().copied().filter(|s| !s.rejected).collect();
        if accepted.is_empty() && !ok.is_empty() {
            (ok, true)
        } else {
            (accepted, false)
        }
    }

    /// Median of the headline figure over the usable samples.
    pub(crate) fn median(&self) -> Option<f64> {
        let (s, _) = self.usable();
        median(s.iter().map(|s| s.value).collect())
    }

    /// Median of an extra figure over the usable samples.
    pub(crate) fn median_extra(&self, key: &str) -> Option<f64> {
        let (s, _) = self.usable();
        median(
            s.iter()
                .filter_map(|s| s.extras.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
                .collect(),
        )
    }

    /// Number of rejected (saturated) rounds.
    pub(crate) fn rejected(&self) -> usize {
        self.rounds
            .iter()
            .filter(|r| matches!(r, Ok(s) if s.rejected))
            .count()
    }

    /// Number of failed runs.
    pub(crate) fn failed(&self) -> usize {
        self.rounds.iter().filter(|r| r.is_err()).count()
    }

    /// Distinct notes and failure reasons, for the report.
    pub(crate) fn notes(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for r in &self.rounds {
            let n = match r {
                Ok(s) => s.note.clone(),
                Err(e) => Some(format!("failed: {e}")),
            };
            // A note may join several ("a; b"): each part once.
            for part in n.iter().flat_map(|n| n.split("; ")) {
                if !v.iter().any(|x| x == part) {
                    v.push(part.to_string());
                }
            }
        }
        v
    }
}

/// The median of `v` (mean of the middle two for an even count).
pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Median, min and max of the per-round ratios of ours against a peer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ratio {
    /// Median of the per-round ratios.
    pub median: f64,
    /// Smallest per-round ratio.
    pub min: f64,
    /// Largest per-round ratio.
    pub max: f64,
    /// True when rounds with a saturated load generator had to be used.
    pub saturated: bool,
}

impl Ratio {
    /// `1.23x [1.10-1.31]`, with a mark when saturated rounds were used.
    pub(crate) fn show(&self) -> String {
        format!(
            "{:.2}x [{:.2}–{:.2}]{}",
            self.median,
            self.min,
            self.max,
            if self.saturated { " (sat.)" } else { "" }
        )
    }
}

impl Ratio {
    /// The median, min and max of per-round ratios (`None` if there are
    /// none).
    pub(crate) fn of(rs: &[f64], saturated: bool) -> Option<Ratio> {
        Some(Ratio {
            median: median(rs.to_vec())?,
            min: rs.iter().copied().fold(f64::INFINITY, f64::min),
            max: rs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            saturated,
        })
    }
}

/// The per-round ratios `num`/`den` of a figure (`value` of a sample) over
/// the rounds where both have one; a rejected (saturated) sample counts
/// only where its side is allowed them (`allow.0` for `num`, `allow.1` for
/// `den`), and then flags the ratio.
fn per_round(
    num: &Series,
    den: &Series,
    value: &dyn Fn(&Sample) -> Option<f64>,
    allow: (bool, bool),
) -> Option<Ratio> {
    let mut rs = Vec::new();
    let mut saturated = false;
    for (x, y) in num.rounds.iter().zip(&den.rounds) {
        let (Ok(x), Ok(y)) = (x, y) else { continue };
        if (x.rejected && !allow.0) || (y.rejected && !allow.1) {
            continue;
        }
        if let (Some(a), Some(b)) = (value(x), value(y)) {
            let r = a / b;
            if r.is_finite() && r > 0.0 {
                rs.push(r);
                saturated |= x.rejected || y.rejected;
            }
        }
    }
    Ratio::of(&rs, saturated)
}

/// Per-round ratios ours/peer (or peer/ours when lower is better), over the
/// rounds where both have a usable sample. When no round has both sides
/// accepted, the rejected (saturated) rounds are used, and the ratio says so.
pub(crate) fn ratio(ours: &Series, peer: &Series, higher_is_better: bool) -> Option<Ratio> {
    let (_, ours_sat) = ours.usable();
    let (_, peer_sat) = peer.usable();
    let (num, den, allow) = if higher_is_better {
        (ours, peer, (ours_sat, peer_sat))
    } else {
        (peer, ours, (peer_sat, ours_sat))
    };
    let value = |s: &Sample| Some(s.value);
    per_round(num, den, &value, allow).or_else(|| per_round(num, den, &value, (true, true)))
}

/// One configuration of a scenario (e.g. "64 B, 100 conns") and every
/// peer's rounds in it.
#[derive(Debug, Clone)]
pub(crate) struct Cell {
    /// Shown in tables.
    pub label: String,
    /// The x coordinate in a chart (concurrency, depth...).
    pub x: f64,
    /// One series per peer, ours first.
    pub series: Vec<Series>,
    /// Unit of the headline figure ("req/s").
    pub unit: &'static str,
    /// False for costs (CPU per message): the ratio is then peer/ours.
    pub higher_is_better: bool,
    /// Compare variants, not peers: the ratio is always the plain B/A
    /// (each other series over the first one), whichever way is better.
    pub vs_first: bool,
}

impl Cell {
    /// A cell with an empty series per peer.
    pub(crate) fn new(label: String, x: f64, peers: &[&str], unit: &'static str) -> Self {
        Cell {
            label,
            x,
            series: peers.iter().map(|p| Series::new(p)).collect(),
            unit,
            higher_is_better: true,
            vs_first: false,
        }
    }

    /// The series of `peer`.
    pub(crate) fn get(&self, peer: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.peer == peer)
    }

    /// The series of `peer`, mutably.
    pub(crate) fn get_mut(&mut self, peer: &str) -> Option<&mut Series> {
        self.series.iter_mut().find(|s| s.peer == peer)
    }

    /// The cell's noise floor: its reference's (first series') ratio to
    /// [`OURS2`], the second copy of the same server, oriented as every
    /// ratio of the cell; `None` without that series.
    pub(crate) fn noise(&self) -> Option<Ratio> {
        let first = self.series.first()?.peer.clone();
        self.ratio(&first, OURS2)
    }

    /// Ratio of `ours` against `peer` in this cell (`peer`/`ours`, B/A,
    /// when the cell compares variants: [`vs_first`](Self::vs_first)).
    pub(crate) fn ratio(&self, ours: &str, peer: &str) -> Option<Ratio> {
        if self.vs_first {
            ratio(self.get(peer)?, self.get(ours)?, true)
        } else {
            ratio(self.get(ours)?, self.get(peer)?, self.higher_is_better)
        }
    }

    /// The per-round ratio B/A of the headline figure (`key` `None`) or of
    /// an extra figure, over the rounds where both have an accepted sample
    /// (or, flagged, all rounds when no round has both accepted).
    pub(crate) fn ratio_of(&self, a: &str, b: &str, key: Option<&str>) -> Option<Ratio> {
        let (sa, sb) = (self.get(a)?, self.get(b)?);
        let value = |s: &Sample| match key {
            None => Some(s.value),
            Some(k) => s.extras.iter().find(|(n, _)| *n == k).map(|(_, v)| *v),
        };
        per_round(sb, sa, &value, (false, false))
            .or_else(|| per_round(sb, sa, &value, (true, true)))
    }
}

/// The name of the second copy of our server in a cell: its ratio to
/// `ours` is the cell's noise floor (two identical servers measured in the
/// same rounds).
pub(crate) const OURS2: &str = "ours'";

impl Ratio {
    /// The band of ratios that two identical servers gave: the noise
    /// floor's per-round [min, max], made symmetric (which copy is "ours"
    /// is arbitrary, so a ratio's inverse is as likely) and widened to
    /// include 1.
    pub(crate) fn band(&self) -> (f64, f64) {
        let lo = self.min.min(1.0 / self.max).min(1.0);
        let hi = self.max.max(1.0 / self.min).max(1.0);
        (lo, hi)
    }
}

/// Where a ratio lies against a noise floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beyond {
    /// Above the band: ours better (or the target cleared).
    Above,
    /// Below it: ours worse (or the target missed).
    Below,
    /// Inside it: no difference this machine can show.
    Within,
}

/// Where the per-round ratios of `r`, relative to `at` (1.0 to compare two
/// servers, a target's threshold to judge it), lie against the band of the
/// noise floor `noise` ([`Ratio::band`], widened by 0.5% each way, as the
/// `ab` tool and the `ecosystem` scenario do): above or below only when
/// every round's ratio is.
pub(crate) fn beyond(r: &Ratio, noise: &Ratio, at: f64) -> Beyond {
    let (lo, hi) = noise.band();
    if r.min / at > hi + 0.005 {
        Beyond::Above
    } else if r.max / at < lo - 0.005 {
        Beyond::Below
    } else {
        Beyond::Within
    }
}

/// A performance target and whether it was met.
#[derive(Debug, Clone, Default)]
pub(crate) struct Target {
    /// What is required ("echo 64 B × 100 conns: ≥ 1.2x tokio").
    pub what: String,
    /// What was measured ("1.31x [1.20–1.40]").
    pub measured: String,
    /// `Some(true)` pass, `Some(false)` miss, `None` not measured (or
    /// within the noise, see `within_noise`).
    pub pass: Option<bool>,
    /// The noise floor the verdict was judged against ("ours'/ours
    /// 1.02x [0.97–1.05]"), for targets judged that way.
    pub noise: Option<String>,
    /// Measured, but the ratio does not clear the noise floor: no verdict.
    pub within_noise: bool,
}

impl Target {
    /// Checks a ratio against a threshold.
    pub(crate) fn ratio(what: String, r: Option<Ratio>, min: f64) -> Self {
        match r {
            Some(r) => Target {
                what,
                measured: r.show(),
                pass: Some(r.median >= min),
                ..Default::default()
            },
            None => Target {
                what,
                measured: "not measured".to_string(),
                ..Default::default()
            },
        }
    }

    /// Checks a ratio against a threshold, counting the verdict only when
    /// the ratio clears the noise floor: pass when every round's ratio over
    /// `min` lies above the noise band ([`beyond`]), miss when every one
    /// lies below it, no verdict ("within the noise") otherwise or without
    /// a noise floor.
    pub(crate) fn beyond_noise(
        what: String,
        r: Option<Ratio>,
        noise: Option<Ratio>,
        min: f64,
    ) -> Self {
        let Some(r) = r else {
            return Target {
                what,
                measured: "not measured".to_string(),
                noise: noise.map(|n| n.show()),
                ..Default::default()
            };
        };
        let Some(n) = noise else {
            return Target {
                what,
                measured: r.show(),
                noise: Some("not measured: no verdict".to_string()),
                within_noise: true,
                ..Default::default()
            };
        };
        let b = beyond(&r, &n, min);
        Target {
            what,
            measured: r.show(),
            pass: match b {
                Beyond::Above => Some(true),
                Beyond::Below => Some(false),
                Beyond::Within => None,
            },
            noise: Some(n.show()),
            within_noise: b == Beyond::Within,
        }
    }

    /// "pass" / "MISS" / "within noise" / "n/a".
    pub(crate) fn verdict(&self) -> &'static str {
        match self.pass {
            Some(true) => "pass",
            Some(false) => "MISS",
            None if self.within_noise => "within noise",
            None => "n/a",
        }
    }
}

/// A chart written under bench/charts/.
#[derive(Debug, Clone)]
pub(crate) struct Chart {
    /// Alt text / caption.
    pub title: String,
    /// Path relative to bench/ (e.g. `charts/arch.png`).
    pub path: String,
}

/// Everything one scenario produced.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    /// Short name (`echo`, `http`...).
    pub name: &'static str,
    /// Heading.
    pub title: String,
    /// Method notes: what ran, trimming, parameters.
    pub notes: Vec<String>,
    /// The measured cells, per table.
    pub tables: Vec<(String, Vec<Cell>)>,
    /// Extra markdown (e.g. the callgrind table).
    pub extra_md: Vec<String>,
    /// Targets checked.
    pub targets: Vec<Target>,
    /// Peers that could not be measured, with why.
    pub unavailable: Vec<(String, String)>,
    /// Exact commands run (deduplicated, in first-run order).
    pub commands: Vec<String>,
    /// Charts produced.
    pub charts: Vec<Chart>,
    /// Wall-clock seconds the scenario took.
    pub secs: f64,
    /// The scenario compares variants of our runtime and has no targets
    /// (it is then left out of the Targets table).
    pub no_targets: bool,
}

impl Outcome {
    /// Records a command line once.
    pub(crate) fn command(&mut self, c: &str) {
        if !self.commands.iter().any(|x| x == c) {
            self.commands.push(c.to_string());
        }
    }

    /// Records that `peer` could not be measured (once).
    pub(crate) fn unavailable(&mut self, peer: &str, why: &str) {
        if !self.unavailable.iter().any(|(p, _)| p == peer) {
            self.unavailable.push((peer.to_string(), why.to_string()));
        }
    }

    /// Total rejected (saturated) rounds in all tables.
    pub(crate) fn rejected(&self) -> usize {
        self.tables
            .iter()
            .flat_map(|(_, cells)| cells)
            .flat_map(|c| &c.series)
            .map(|s| s.rejected())
            .sum()
    }

    /// Total measured runs in all tables.
    pub(crate) fn runs(&self) -> usize {
        self.tables
            .iter()
            .flat_map(|(_, cells)| cells)
            .flat_map(|c| &c.series)
            .map(|s| s.rounds.len())
            .sum()
    }
}

/// Parses `RESULT k=v k=v ...` lines into key/value lists.
pub(crate) fn result_lines(stdout: &str) -> Vec<Vec<(String, String)>> {
    stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("RESULT "))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// The value of `key` in a parsed RESULT line.
pub(crate) fn field<'a>(line: &'a [(String, String)], key: &str) -> Option<&'a str> {
    line.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The numeric value of `key` in a parsed RESULT line.
pub(crate) fn num(line: &[(String, String)], key: &str) -> Option<f64> {
    field(line, key)?.parse().ok()
}

/// Formats a rate compactly (123456 -> "123.5k").
pub(crate) fn human(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_string()
    } else if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// ours/peer of a figure (the peer: tokio, unless made with
/// [`NoiseRow::against`]) beside the noise floor ours'/ours, and whether
/// the first lies beyond the second.
pub(crate) struct NoiseRow {
    pub what: String,
    pub ours: Option<f64>,
    pub peer: Option<f64>,
    pub vs_peer: Option<Ratio>,
    pub noise: Option<Ratio>,
    /// The peer's name.
    pub peer_name: String,
    higher_is_better: bool,
    /// What ours/peer must be: a limit and `"≤"` or `"≥"`.
    pub goal: Option<(f64, &'static str)>,
}

impl NoiseRow {
    /// The row of ours against tokio.
    pub(crate) fn new(
        cell: &Cell,
        key: Option<&'static str>,
        what: String,
        higher_is_better: bool,
        goal: Option<(f64, &'static str)>,
    ) -> Self {
        Self::against(cell, "tokio", key, what, higher_is_better, goal)
    }

    /// The row of ours against `peer`, of the headline figure (`key`
    /// `None`) or of an extra one.
    pub(crate) fn against(
        cell: &Cell,
        peer: &str,
        key: Option<&'static str>,
        what: String,
        higher_is_better: bool,
        goal: Option<(f64, &'static str)>,
    ) -> Self {
        Self::between(
            cell,
            ["ours", OURS2, peer],
            key,
            what,
            higher_is_better,
            goal,
        )
    }

    /// The row of peers named otherwise: `ours`, its second copy, and
    /// the peer it is compared with (`NoiseRow::new` is `ours`, `ours'`,
    /// `tokio`).
    pub(crate) fn between(
        cell: &Cell,
        [ours, ours2, peer]: [&str; 3],
        key: Option<&'static str>,
        what: String,
        higher_is_better: bool,
        goal: Option<(f64, &'static str)>,
    ) -> Self {
        let median = |peer: &str| {
            let s = cell.get(peer)?;
            match key {
                None => s.median(),
                Some(k) => s.median_extra(k),
            }
        };
        NoiseRow {
            what,
            ours: median(ours),
            peer: median(peer),
            vs_peer: cell.ratio_of(peer, ours, key),
            noise: cell.ratio_of(ours, ours2, key),
            peer_name: peer.to_string(),
            higher_is_better,
            goal,
        }
    }

    /// "ours better" / "ours worse" when every round's ours/peer lies
    /// outside the noise floor's range, "within the noise" otherwise. The
    /// range is made symmetric around 1.00x (which of two identical
    /// servers is called ours' is arbitrary, so an A-vs-A ratio r says
    /// they differ by r either way: [min(lo, 1/hi), max(hi, 1/lo)]) and
    /// widened by 0.5%.
    pub(crate) fn verdict(&self) -> String {
        let (Some(r), Some(n)) = (self.vs_peer, self.noise) else {
            return "not measured".into();
        };
        let lo = n.min.min(1.0 / n.max).min(1.0) - 0.005;
        let hi = n.max.max(1.0 / n.min).max(1.0) + 0.005;
        let better = |above: bool| {
            if above == self.higher_is_better {
                "ours better"
            } else {
                "ours worse"
            }
        };
        if r.min > hi {
            better(true).into()
        } else if r.max < lo {
            better(false).into()
        } else {
            "within the noise".into()
        }
    }

    /// The goal's verdict: "≤ 0.90x: pass" etc.
    pub(crate) fn goal(&self) -> String {
        let Some((limit, how)) = self.goal else {
            return "—".into();
        };
        let Some(r) = self.vs_peer else {
            return format!("{how} {limit:.2}x: not measured");
        };
        let pass = if how == "≤" {
            r.median <= limit
        } else {
            r.median >= limit
        };
        format!("{how} {limit:.2}x: {}", if pass { "pass" } else { "MISS" })
    }

    /// The row's figures as text: ours, the peer, ours/peer, the noise
    /// floor ours'/ours and the verdict; "—" for a figure missing.
    fn cells(&self) -> [String; 5] {
        let ratio = |r: Option<Ratio>| r.map(|x| x.show()).unwrap_or_else(|| "—".into());
        [
            fmt(self.ours),
            fmt(self.peer),
            ratio(self.vs_peer),
            ratio(self.noise),
            self.verdict(),
        ]
    }

    /// The row's figures as the inner cells of a Markdown table row (no
    /// outer pipes): `ours | peer | ours/peer | noise floor | verdict`.
    pub(crate) fn md_cells(&self) -> String {
        self.cells().join(" | ")
    }

    /// The row's figures for a progress line, the peer called `peer`:
    /// `ours 8.00 tokio 10.00 ours/tokio 0.80x [...] noise ... -> verdict`.
    pub(crate) fn summary(&self, peer: &str) -> String {
        let [ours, theirs, vs_peer, noise, verdict] = self.cells();
        format!("ours {ours} {peer} {theirs} ours/{peer} {vs_peer} noise {noise} -> {verdict}")
    }

    /// The target that ours/peer meets the row's goal (ours/peer ≥ 1.00x
    /// without one).
    pub(crate) fn target(&self) -> Target {
        let (limit, how) = self.goal.unwrap_or((1.0, "≥"));
        Target {
            what: format!("{}: ours/{} {how} {limit:.2}x", self.what, self.peer_name),
            measured: self
                .vs_peer
                .map(|r| r.show())
                .unwrap_or_else(|| "not measured".into()),
            pass: self.vs_peer.map(|r| {
                if how == "≤" {
                    r.median <= limit
                } else {
                    r.median >= limit
                }
            }),
            ..Default::default()
        }
    }
}

/// A figure of a table: no decimals from 100 on, two below, "—" when
/// missing.
pub(crate) fn fmt(v: Option<f64>) -> String {
    match v {
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
        None => "—".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(peer: &str, v: &[(f64, bool)]) -> Series {
        let mut s = Series::new(peer);
        for &(x, rej) in v {
            let mut smp = Sample::new(x);
            smp.rejected = rej;
            s.rounds.push(Ok(smp));
        }
        s
    }

    #[test]
    fn median_odd_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn ratio_skips_rejected_rounds() {
        let a = series("ours", &[(200.0, false), (1000.0, true), (300.0, false)]);
        let b = series("tokio", &[(100.0, false), (100.0, false), (100.0, false)]);
        let r = ratio(&a, &b, true).unwrap();
        assert_eq!(r.min, 2.0);
        assert_eq!(r.max, 3.0);
        assert!(!r.saturated);
        let lower = ratio(&a, &b, false).unwrap();
        assert!((lower.median - (0.5 + 1.0 / 3.0) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn no_common_accepted_round_falls_back_flagged() {
        let a = series("ours", &[(200.0, true), (300.0, false)]);
        let b = series("tokio", &[(100.0, false), (100.0, true)]);
        let r = ratio(&a, &b, true).unwrap();
        assert!(r.saturated);
        assert_eq!(r.median, 2.5);
    }

    #[test]
    fn all_rejected_falls_back_flagged() {
        let a = series("ours", &[(200.0, true), (400.0, true)]);
        let b = series("tokio", &[(100.0, false), (100.0, false)]);
        let r = ratio(&a, &b, true).unwrap();
        assert!(r.saturated);
        assert_eq!(r.median, 3.0);
    }

    #[test]
    fn ratio_of_is_b_over_a_on_values_and_extras() {
        let mut c = Cell::new("x".into(), 1.0, &["a", "b"], "u");
        c.vs_first = true;
        for (va, vb, rej) in [
            (100.0, 150.0, false),
            (100.0, 300.0, true),
            (100.0, 120.0, false),
        ] {
            let mut sa = Sample::new(va);
            sa.extras.push(("cpu", 2.0));
            let mut sb = Sample::new(vb);
            sb.extras.push(("cpu", 1.0));
            sb.rejected = rej;
            c.get_mut("a").unwrap().rounds.push(Ok(sa));
            c.get_mut("b").unwrap().rounds.push(Ok(sb));
        }
        let r = c.ratio_of("a", "b", None).unwrap();
        assert!((r.min - 1.2).abs() < 1e-9 && (r.max - 1.5).abs() < 1e-9);
        assert!(!r.saturated);
        let r = c.ratio_of("a", "b", Some("cpu")).unwrap();
        assert_eq!(r.median, 0.5);
        assert!(c.ratio_of("a", "b", Some("nope")).is_none());
        // The table's ratio is B/A too, whichever way is better.
        c.higher_is_better = false;
        let r = c.ratio("a", "b").unwrap();
        assert!((r.median - 1.35).abs() < 1e-9);
    }

    fn rt(median: f64, min: f64, max: f64) -> Ratio {
        Ratio {
            median,
            min,
            max,
            saturated: false,
        }
    }

    #[test]
    fn the_noise_band_is_symmetric_and_holds_one() {
        assert_eq!(rt(1.0, 0.95, 1.02).band(), (0.95, 1.0 / 0.95));
        assert_eq!(rt(1.1, 1.05, 1.2).band(), (1.0 / 1.2, 1.2));
        assert_eq!(rt(1.0, 1.0, 1.0).band(), (1.0, 1.0));
        // Band 0.96–1.0417, and 0.5% more each way.
        let noise = rt(1.0, 0.96, 1.04);
        assert_eq!(beyond(&rt(1.10, 1.06, 1.2), &noise, 1.0), Beyond::Above);
        assert_eq!(beyond(&rt(1.10, 1.04, 1.2), &noise, 1.0), Beyond::Within);
        assert_eq!(beyond(&rt(0.90, 0.8, 0.95), &noise, 1.0), Beyond::Below);
        assert_eq!(beyond(&rt(0.90, 0.8, 0.958), &noise, 1.0), Beyond::Within);
        assert_eq!(beyond(&rt(1.03, 0.9, 1.1), &noise, 1.0), Beyond::Within);
        // Against a threshold: every round of 1.2–1.3 is within 4% of 1.2.
        assert_eq!(beyond(&rt(1.24, 1.2, 1.3), &noise, 1.2), Beyond::Within);
        assert_eq!(beyond(&rt(1.30, 1.26, 1.4), &noise, 1.2), Beyond::Above);
    }

    #[test]
    fn targets_beyond_the_noise() {
        let noise = Some(rt(1.0, 0.96, 1.04));
        let t = Target::beyond_noise("a".into(), Some(rt(1.5, 1.4, 1.6)), noise, 1.2);
        assert_eq!(
            (t.pass, t.within_noise, t.verdict()),
            (Some(true), false, "pass")
        );
        assert_eq!(t.noise.as_deref(), Some("1.00x [0.96–1.04]"));
        let t = Target::beyond_noise("b".into(), Some(rt(1.0, 0.9, 1.1)), noise, 1.2);
        assert_eq!((t.pass, t.verdict()), (Some(false), "MISS"));
        let t = Target::beyond_noise("c".into(), Some(rt(1.02, 0.9, 1.1)), noise, 1.0);
        assert_eq!(
            (t.pass, t.within_noise, t.verdict()),
            (None, true, "within noise")
        );
        let t = Target::beyond_noise("d".into(), None, noise, 1.0);
        assert_eq!((t.pass, t.within_noise, t.verdict()), (None, false, "n/a"));
        // No noise floor: no verdict.
        let t = Target::beyond_noise("e".into(), Some(rt(2.0, 2.0, 2.0)), None, 1.0);
        assert_eq!((t.pass, t.within_noise), (None, true));
    }

    #[test]
    fn a_cells_noise_is_ours_against_ours2() {
        let mut c = Cell::new("x".into(), 1.0, &["ours", "tokio", OURS2], "µs");
        c.higher_is_better = false;
        for (peer, v) in [("ours", 10.0), ("tokio", 12.0), (OURS2, 10.5)] {
            c.get_mut(peer).unwrap().rounds.push(Ok(Sample::new(v)));
        }
        // A cost: peer/ours.
        assert!((c.noise().unwrap().median - 1.05).abs() < 1e-9);
        assert!((c.ratio("ours", "tokio").unwrap().median - 1.2).abs() < 1e-9);
        let plain = Cell::new("y".into(), 1.0, &["ours", "tokio"], "µs");
        assert!(plain.noise().is_none());
    }

    #[test]
    fn parses_result_lines() {
        let out = "noise\nRESULT msgs=10 rate=5.5 p50_us=3\n";
        let l = result_lines(out);
        assert_eq!(l.len(), 1);
        assert_eq!(num(&l[0], "rate"), Some(5.5));
        assert_eq!(field(&l[0], "msgs"), Some("10"));
        assert_eq!(num(&l[0], "nope"), None);
    }

    #[test]
    fn noise_row_cells_for_tables_and_progress_lines() {
        let mut c = Cell::new("x".into(), 1.0, &["ours", "tokio", OURS2], "µs");
        c.higher_is_better = false;
        for (peer, v) in [("ours", 8.0), ("tokio", 250.0), (OURS2, 8.1)] {
            for _ in 0..3 {
                c.get_mut(peer).unwrap().rounds.push(Ok(Sample::new(v)));
            }
        }
        let r = NoiseRow::new(&c, None, "cpu".into(), false, None);
        let (vs, noise) = (r.vs_peer.unwrap().show(), r.noise.unwrap().show());
        assert_eq!(
            r.md_cells(),
            format!("8.00 | 250 | {vs} | {noise} | ours better")
        );
        assert_eq!(
            r.summary("peer"),
            format!("ours 8.00 peer 250 ours/peer {vs} noise {noise} -> ours better")
        );
        // What the tables wrote before md_cells, to the letter.
        let old = |r: &NoiseRow| {
            format!(
                "| {} | {} | {} | {} | {} | {} |",
                r.what,
                fmt(r.ours),
                fmt(r.peer),
                r.vs_peer.map(|x| x.show()).unwrap_or_else(|| "—".into()),
                r.noise.map(|x| x.show()).unwrap_or_else(|| "—".into()),
                r.verdict()
            )
        };
        let empty = Cell::new("y".into(), 1.0, &["ours", "tokio", OURS2], "µs");
        let missing = NoiseRow::against(&empty, "tokio", None, "none".into(), true, None);
        for row in [&r, &missing] {
            assert_eq!(format!("| {} | {} |", row.what, row.md_cells()), old(row));
        }
        assert_eq!(missing.md_cells(), "— | — | — | — | not measured");
        assert_eq!(
            missing.summary("tokio"),
            "ours — tokio — ours/tokio — noise — -> not measured"
        );
    }
}
