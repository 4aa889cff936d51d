//! The loop of every cell: its rounds with the variants interleaved
//! (A B C A B C ...), each run's sample recorded in its variant's series
//! and shown on the round's progress line.

use super::model::{human, Cell, Outcome, Sample};
use super::Ctx;

/// How a cell's rounds are run and shown.
pub(crate) struct Rounds<'a> {
    ctx: &'a Ctx,
    tag: &'a str,
    show: fn(f64) -> String,
    stop_if_first_round_fails: bool,
    rounds: usize,
    rotate: bool,
}

impl<'a> Rounds<'a> {
    /// Rounds logged as `[tag] <cell> round i/n: <peer> <value> ...`,
    /// values shown by [`human`].
    pub(crate) fn new(ctx: &'a Ctx, tag: &'a str) -> Self {
        Rounds {
            ctx,
            tag,
            show: human,
            stop_if_first_round_fails: false,
            rounds: ctx.rounds,
            rotate: false,
        }
    }

    /// Runs `n` rounds instead of the run's `ctx.rounds`.
    pub(crate) fn rounds(mut self, n: usize) -> Self {
        self.rounds = n;
        self
    }

    /// Rotates the order of the peers from round to round (A B C, B C A,
    /// C A B, ...), so that none always runs first.
    pub(crate) fn rotate(mut self) -> Self {
        self.rotate = true;
        self
    }

    /// Shows the values with `show` instead.
    pub(crate) fn show(mut self, show: fn(f64) -> String) -> Self {
        self.show = show;
        self
    }

    /// Ends the cell after its first round if every run of it failed.
    pub(crate) fn stop_if_first_round_fails(mut self) -> Self {
        self.stop_if_first_round_fails = true;
        self
    }

    /// Runs the rounds of `cell`: in each, `measure(out, peer)` once per
    /// peer, in order (rotated with [`rotate`](Self::rotate)). Returns why when it stopped early (the
    /// first peer's failure of the first round), `None` otherwise.
    pub(crate) fn run(
        &self,
        out: &mut Outcome,
        cell: &mut Cell,
        peers: &[&str],
        mut measure: impl FnMut(&mut Outcome, &str) -> Result<Sample, String>,
    ) -> Option<String> {
        let n = self.rounds;
        for round in 0..n {
            let first = if self.rotate && !peers.is_empty() {
                round % peers.len()
            } else {
                0
            };
            let mut line = format!("  [{}] {} round {}/{n}:", self.tag, cell.label, round + 1);
            let mut failed = Vec::new();
            for &peer in peers[first..].iter().chain(&peers[..first]) {
                let sample = measure(out, peer);
                match &sample {
                    Ok(s) => line.push_str(&format!(
                        " {peer} {}{}",
                        (self.show)(s.value),
                        if s.rejected { "(sat)" } else { "" }
                    )),
                    Err(e) => {
                        line.push_str(&format!(" {peer} FAIL"));
                        eprintln!("suite: {} {}: {peer}: {e}", self.tag, cell.label);
                        failed.push(format!("failed: {e}"));
                    }
                }
                if let Some(s) = cell.get_mut(peer) {
                    s.rounds.push(sample);
                }
            }
            self.ctx.log(&line);
            if self.stop_if_first_round_fails && round == 0 && failed.len() == peers.len() {
                return failed.into_iter().next();
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(rounds: usize) -> Ctx {
        Ctx {
            rounds,
            server_core: None,
            loader_core: None,
            ..Ctx::for_tests(true)
        }
    }

    #[test]
    fn every_peer_once_per_round_in_order() {
        let ctx = ctx(3);
        let mut out = Outcome::default();
        let mut cell = Cell::new("c".into(), 1.0, &["a", "b"], "u");
        let mut calls = Vec::new();
        let stopped = Rounds::new(&ctx, "t").run(&mut out, &mut cell, &["a", "b"], |_, p| {
            calls.push(p.to_string());
            if p == "b" && calls.len() == 4 {
                return Err("boom".into());
            }
            Ok(Sample::new(calls.len() as f64))
        });
        assert_eq!(stopped, None);
        assert_eq!(calls, ["a", "b", "a", "b", "a", "b"]);
        let b = cell.get("b").unwrap();
        assert_eq!(b.rounds.len(), 3);
        assert_eq!(b.failed(), 1);
        assert_eq!(cell.get("a").unwrap().median(), Some(3.0));
    }

    #[test]
    fn rotated_rounds_start_with_the_next_peer() {
        let ctx = ctx(1);
        let mut out = Outcome::default();
        let mut cell = Cell::new("c".into(), 1.0, &["a", "b", "c"], "u");
        let mut calls = String::new();
        Rounds::new(&ctx, "t").rounds(4).rotate().run(
            &mut out,
            &mut cell,
            &["a", "b", "c"],
            |_, p| {
                calls.push_str(p);
                Ok(Sample::new(1.0))
            },
        );
        assert_eq!(calls, "abcbcacababc");
        assert_eq!(cell.get("c").unwrap().rounds.len(), 4);
    }

    #[test]
    fn stops_when_the_whole_first_round_failed() {
        let ctx = ctx(3);
        let mut out = Outcome::default();
        let mut cell = Cell::new("c".into(), 1.0, &["a", "b"], "u");
        let stopped = Rounds::new(&ctx, "t").stop_if_first_round_fails().run(
            &mut out,
            &mut cell,
            &["a", "b"],
            |_, p| Err(format!("{p} down")),
        );
        assert_eq!(stopped.as_deref(), Some("failed: a down"));
        assert_eq!(cell.get("a").unwrap().rounds.len(), 1);
    }
}
