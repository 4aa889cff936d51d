//! Scenario 5, files: 4 KiB random reads from a warm 1 GiB file
//! (`fs_randread` for our runtime, tokio::fs and a std thread pool;
//! `tokio_uring_randread` for tokio::fs on tokio's own io_uring driver; fio's
//! io_uring engine), through the page cache and with `O_DIRECT`, and a
//! sequential 1 GiB copy (our `cp` example against coreutils' `cp`).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::harness::model::{field, num, result_lines, Cell, Outcome, Sample, Target};
use crate::harness::rounds::Rounds;
use crate::harness::{chart, proc, Ctx};

/// The data file (shared with fs_randread's default).
pub(crate) const DATA: &str = "/var/tmp/fs_randread.dat";
/// The copy's destination.
const DST: &str = "/var/tmp/suite_cp_dst.dat";
const LEN: u64 = 1 << 30;

const PEERS: [&str; 8] = [
    "ours",
    "ours_direct",
    "tokio",
    "tokio_uring",
    "tokio_uring_direct",
    "std_pool",
    "fio",
    "fio_direct",
];

/// The program of tokio's io_uring peers, built by bench/run from the crate
/// bench/tokio-uring-fs (outside the workspace: it needs
/// `--cfg tokio_unstable`) into a target directory of its own.
const TOKIO_URING_BIN: &str = "target/tokio-uring/release/tokio_uring_randread";

/// The program that measures peer `rt` (all but fio).
fn randread_program(ctx: &Ctx, rt: &str) -> String {
    if rt.starts_with("tokio_uring") {
        TOKIO_URING_BIN.to_string()
    } else {
        ctx.bin("fs_randread")
    }
}

fn depths(ctx: &Ctx) -> Vec<usize> {
    if ctx.quick {
        vec![32]
    } else {
        vec![1, 32, 128]
    }
}

fn secs(_ctx: &Ctx) -> u32 {
    1
}

fn cp_rounds(ctx: &Ctx) -> usize {
    ctx.rounds
}

/// Planned seconds.
pub(crate) fn plan(ctx: &Ctx) -> f64 {
    let per = secs(ctx) as f64 + 0.35;
    let reads = depths(ctx).len() as f64 * ctx.rounds as f64 * PEERS.len() as f64 * per;
    let copy = cp_rounds(ctx) as f64 * 2.0 * 1.5;
    reads + copy + 2.0
}

/// Creates the 1 GiB data file if it does not have that size, then reads it
/// once so its pages are in the page cache.
pub(crate) fn prepare() -> Result<(), String> {
    let ok = fs::metadata(DATA).map(|m| m.len() == LEN).unwrap_or(false);
    if !ok {
        let mut f = File::create(DATA).map_err(|e| format!("cannot create {DATA}: {e}"))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..(LEN >> 20) {
            for chunk in buf.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&buf)
                .map_err(|e| format!("cannot write {DATA}: {e}"))?;
        }
    }
    let mut f = File::open(DATA).map_err(|e| format!("cannot open {DATA}: {e}"))?;
    let mut buf = vec![0u8; 1 << 20];
    while f
        .read(&mut buf)
        .map_err(|e| format!("cannot read {DATA}: {e}"))?
        > 0
    {}
    Ok(())
}

/// One `fs_randread --only <rt> --depth <depth> --secs <secs>` run (or
/// `tokio_uring_randread` for the `tokio_uring` peers). A variant the
/// program skips (O_DIRECT refused, buffers that cannot be registered) is
/// marked unavailable in `out`, with its reason.
pub(crate) fn randread(
    ctx: &Ctx,
    out: &mut Outcome,
    rt: &str,
    depth: usize,
    secs: u32,
) -> Result<Sample, String> {
    let args: Vec<String> = vec![
        "--only".into(),
        rt.into(),
        "--depth".into(),
        depth.to_string(),
        "--secs".into(),
        secs.to_string(),
    ];
    let program = randread_program(ctx, rt);
    let (cmd, f) = proc::run(
        ctx.loader_core,
        &program,
        &args,
        Duration::from_secs(secs as u64 + 120),
    )?;
    out.command(&cmd);
    if !f.success() {
        return Err(format!("{program}: {}", f.describe()));
    }
    let lines = result_lines(&f.stdout);
    let line = lines
        .iter()
        .find(|l| field(l, "rt") == Some(rt))
        .or(lines.first())
        .ok_or_else(|| format!("fs_randread printed no RESULT line: {}", f.describe()))?;
    if field(line, "skipped") == Some("1") {
        let why = f.stderr_line("skipped").unwrap_or("skipped by fs_randread");
        out.unavailable(rt, why);
        return Err(why.to_string());
    }
    let rate = num(line, "rate").ok_or("no rate= in fs_randread's RESULT")?;
    Ok(Sample::new(rate))
}

/// Extracts `jobs[0].read.iops` from fio's JSON output.
pub(crate) fn fio_iops(json: &str) -> Option<f64> {
    let read = json.find("\"read\"")?;
    let rest = &json[read..];
    let at = rest.find("\"iops\"")?;
    let rest = &rest[at + "\"iops\"".len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| {
            !(c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E' || c == '-' || c == '+')
        })
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// One fio run, through the page cache or (`direct`) with `O_DIRECT`.
fn fio(ctx: &Ctx, out: &mut Outcome, depth: usize, direct: bool) -> Result<Sample, String> {
    let args: Vec<String> = vec![
        "--name=randread".into(),
        format!("--filename={DATA}"),
        "--rw=randread".into(),
        "--bs=4k".into(),
        format!("--iodepth={depth}"),
        "--ioengine=io_uring".into(),
        format!("--direct={}", u8::from(direct)),
        "--size=1G".into(),
        format!("--runtime={}", secs(ctx)),
        "--time_based".into(),
        "--invalidate=0".into(),
        "--output-format=json".into(),
    ];
    let (cmd, f) = proc::run(
        ctx.loader_core,
        "fio",
        &args,
        Duration::from_secs(secs(ctx) as u64 + 60),
    )?;
    out.command(&cmd);
    if !f.success() {
        return Err(format!("fio: {}", f.describe()));
    }
    let iops = fio_iops(&f.stdout)
        .ok_or_else(|| format!("no read.iops in fio's JSON: {}", f.describe()))?;
    Ok(Sample::new(iops))
}

/// One copy of DATA to DST; returns MB/s (10^6 bytes).
fn copy(ctx: &Ctx, out: &mut Outcome, ours: bool) -> Result<Sample, String> {
    let _ = fs::remove_file(DST);
    let program = if ours {
        ctx.example("cp")
    } else {
        "cp".to_string()
    };
    let args = vec![DATA.to_string(), DST.to_string()];
    let (cmd, f) = proc::run(ctx.loader_core, &program, &args, Duration::from_secs(120))?;
    out.command(&cmd);
    let len = fs::metadata(DST).map(|m| m.len()).unwrap_or(0);
    let _ = fs::remove_file(DST);
    if !f.success() {
        return Err(format!("{program}: {}", f.describe()));
    }
    if len != LEN {
        return Err(format!("{program} wrote {len} bytes, not {LEN}"));
    }
    let mut s = Sample::new(LEN as f64 / f.wall_secs / 1e6);
    s.extras.push(("secs", f.wall_secs));
    Ok(s)
}

/// Runs the scenario.
pub(crate) fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome {
        name: "files",
        title: "Files".to_string(),
        ..Default::default()
    };
    ctx.log("  [files] preparing the 1 GiB data file (page cache warm)");
    if let Err(e) = prepare() {
        out.notes.push(format!("not measured: {e}"));
        return out;
    }
    let ds = depths(ctx);
    out.notes.push(format!(
        "Random 4 KiB reads of {DATA} (1 GiB, read once beforehand so the page cache is warm): `fs_randread --only <rt> --depth D --secs {s}` for rt in ours, ours_direct, tokio, std_pool; `tokio_uring_randread --only <rt> --depth D --secs {s}` for tokio_uring and tokio_uring_direct (tokio::fs on tokio 1.54's io_uring driver, `--cfg tokio_unstable`: the open and the reads are io_uring operations, each read is `seek` (blocking pool) + `read_exact`); fio's io_uring engine buffered (fio, --invalidate=0) and with O_DIRECT (fio_direct, --direct=1); the `_direct` peers bypass the page cache (the device's IOPS). All pinned to core 1, depths {}, {} rounds interleaved. Rate = reads per second.{}",
        ds.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
        ctx.rounds,
        if ctx.quick { " Quick mode: depth 32 only (full: 1, 32, 128)." } else { "" },
        s = secs(ctx),
    ));
    let fio_ok = proc::program_in_path("fio");
    if !fio_ok {
        out.unavailable("fio", "fio is not installed");
        out.unavailable("fio_direct", "fio is not installed");
    }
    // fio is left out when it is not installed (it is then unavailable).
    let peers: Vec<&str> = PEERS
        .into_iter()
        .filter(|&p| !p.starts_with("fio") || fio_ok)
        .collect();
    let mut cells = Vec::new();
    // A peer failing its very first run (placeholder, unknown --only) is
    // not retried: its later rounds record the same failure.
    let mut ran: Vec<String> = Vec::new();
    let mut down: Vec<(String, String)> = Vec::new();
    for &d in &ds {
        let mut cell = Cell::new(format!("depth {d}"), d as f64, &PEERS, "reads/s");
        Rounds::new(ctx, "files").run(&mut out, &mut cell, &peers, |out, peer| {
            if let Some((_, why)) = down.iter().find(|(p, _)| p == peer) {
                return Err(why.clone());
            }
            let program = randread_program(ctx, peer);
            let r = if peer.starts_with("fio") {
                fio(ctx, out, d, peer == "fio_direct")
            } else if Path::new(&program).exists() {
                randread(ctx, out, peer, d, secs(ctx))
            } else {
                Err(format!("{program} is missing (bench/run builds it)"))
            };
            let first = !ran.iter().any(|p| p == peer);
            if first {
                ran.push(peer.to_string());
            }
            if let (Err(e), true) = (&r, first) {
                down.push((peer.to_string(), e.clone()));
                out.unavailable(peer, e);
            }
            r
        });
        cells.push(cell);
    }
    // At depth 1, std_pool is one thread in a plain `pread` loop.
    for cell in cells.iter().filter(|c| c.x == 1.0) {
        out.targets.push(Target::ratio(
            "files depth 1: ≥ 0.8x a pread loop (std_pool)".to_string(),
            cell.ratio("ours", "std_pool"),
            0.8,
        ));
    }
    for cell in cells.iter().filter(|c| c.x == 32.0) {
        out.targets.push(Target::ratio(
            "files depth 32: ≥ 3x tokio::fs".to_string(),
            cell.ratio("ours", "tokio"),
            3.0,
        ));
        out.targets.push(Target::ratio(
            "files depth 32: ≥ 0.85x fio".to_string(),
            cell.ratio("ours", "fio"),
            0.85,
        ));
    }
    if ds.len() > 1 {
        out.charts.extend(chart::lines(
            ctx,
            "files",
            "4 KiB random reads (warm cache): reads/s by depth",
            ("reads in flight", "reads/s"),
            &cells,
        ));
    }
    out.tables.push(("Random reads".to_string(), cells));

    // Sequential copy.
    let cp_ok = Path::new(&ctx.example("cp")).exists();
    let mut cell = Cell::new(
        "1 GiB copy".to_string(),
        0.0,
        &["ours_cp", "coreutils_cp"],
        "MB/s",
    );
    Rounds::new(ctx, "files")
        .show(|v| format!("{v:.0} MB/s"))
        .run(
            &mut out,
            &mut cell,
            &["ours_cp", "coreutils_cp"],
            |out, peer| {
                let ours = peer == "ours_cp";
                if ours && !cp_ok {
                    return Err("target/release/examples/cp is missing".to_string());
                }
                copy(ctx, out, ours)
            },
        );
    let _ = fs::remove_file(DST);
    out.notes.push(format!(
        "Copy: `examples/cp {DATA} {DST}` (depth 32, 128 KiB chunks) against coreutils `cp` (which uses copy_file_range), both pinned to core 1, source in the page cache, destination removed before and after each run (not synced); MB/s = 10^6 bytes per wall-clock second of the process. {} rounds interleaved.",
        cp_rounds(ctx)
    ));
    out.tables.push(("Sequential copy".to_string(), vec![cell]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fio_json() {
        let j = r#"{ "jobs" : [ { "jobname" : "randread", "read" : { "io_bytes" : 1, "bw" : 2, "iops" : 123456.789012, "runtime" : 1000 }, "write" : { "iops" : 0.0 } } ] }"#;
        assert_eq!(fio_iops(j), Some(123456.789012));
        assert_eq!(fio_iops("{}"), None);
    }
}
