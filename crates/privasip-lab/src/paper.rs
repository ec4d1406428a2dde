//! `privasip bench paper`: the paper's experiment (§5.2, Tables 2 and 3,
//! Figures 2 and 3): sequential calls from Alice to Bob over Tor, INVITE
//! -> 180 at the caller, plain SIP and PrivaSIP interleaved.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::stage::{AliceHop, CalleeReach, Options, Stage, exe, say, stage, write_alice};

/// One scenario of the run.
struct Scenario {
    /// `plain` or `privasip` (with `-reused` when circuits are shared).
    name: String,
    /// Alice's configuration file name (without .toml).
    config: String,
    /// INVITE -> 180 per call, ms; None when the call failed.
    ms: Vec<Option<f64>>,
}

/// The paper's figures, for the side-by-side tables.
const PAPER: [(&str, f64); 2] = [("plain", 1000.0), ("privasip", 1900.0)];

/// What `privasip bench paper` was asked for.
pub struct PaperArgs {
    /// Calls per scenario.
    pub calls: usize,
    /// The PrivaSIP scheme: hpke, ecies or rsa.
    pub scheme: String,
    /// Also run both scenarios over one shared circuit.
    pub reuse: bool,
    /// Where the results go.
    pub out: PathBuf,
    /// First port of the private network's range.
    pub base_port: u16,
    /// Quick ACKs on the loopback routes (root only).
    pub quickack: bool,
    /// The latency the network's links pay.
    pub latency: privasip_testnet::Profile,
    /// The seed of the links' delays.
    pub seed: u64,
}

/// Runs the paper's experiment and writes its results under `a.out`.
pub fn run(a: &PaperArgs) -> Result<()> {
    if a.calls == 0 {
        bail!("--calls must be at least 1");
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let out = std::path::absolute(&a.out)?;
    let work = out.join("work");
    if work.exists() {
        std::fs::remove_dir_all(&work).context("cannot clear the work directory")?;
    }
    std::fs::create_dir_all(&work)?;
    let started = Instant::now();
    let extra: Vec<(&str, &str)> = if a.reuse {
        vec![("-shared", "shared")]
    } else {
        Vec::new()
    };
    let Stage {
        cleanup, a_port, ..
    } = stage(
        &work,
        a.base_port,
        &a.scheme,
        &extra,
        CalleeReach::Onion,
        Options {
            quickack: a.quickack,
            hiding: "tor",
            latency: a.latency,
            seed: a.seed,
        },
        started,
    )?;
    let mut scenarios = Vec::new();
    let variants: Vec<(&str, u16)> = if a.reuse {
        vec![("", a_port), ("-reused", a_port + 20)]
    } else {
        vec![("", a_port)]
    };
    for (i, (suffix, port)) in variants.iter().enumerate() {
        for (j, (name, mode)) in [("plain", "plain"), ("privasip", "privasip-2")]
            .iter()
            .enumerate()
        {
            let config = format!("alice-{name}{suffix}");
            // Clear of the proxies (A at +200, A-shared at +220, B at +202).
            let local = a.base_port + 240 + (i * 2 + j) as u16;
            write_alice(&work, &config, mode, &a.scheme, local, *port, AliceHop::Lan)?;
            scenarios.push(Scenario {
                name: format!("{name}{suffix}"),
                config,
                ms: Vec::new(),
            });
        }
    }
    say(
        started,
        &format!(
            "{} calls per scenario ({}), interleaved; INVITE->180 at Alice; a new circuit per call{}",
            a.calls,
            scenarios
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if a.reuse {
                " (and shared circuits)"
            } else {
                ""
            }
        ),
    );
    let total = a.calls * scenarios.len();
    let bar = indicatif::ProgressBar::new(total as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "  [{bar:40}] {pos}/{len} calls, {eta} left; {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("#>."),
    );
    // Each round starts with the next scenario, so none always follows
    // the same one (a fixed order put plain first in every round).
    let n = scenarios.len();
    for round in 0..a.calls {
        for k in 0..n {
            let s = &mut scenarios[(round + k) % n];
            let v = one_call(&work, &s.config)?;
            s.ms.push(v);
            bar.set_message(match v {
                Some(ms) => format!("last: {} {ms:.0} ms", s.name),
                None => format!("last: {} failed", s.name),
            });
            bar.inc(1);
        }
    }
    bar.finish();
    drop(cleanup);

    let net = privasip_testnet::Testnet::load(&work.join("net"))
        .map(|t| t.scheduler.name())
        .unwrap_or("vanilla");
    write_outputs(&out, &scenarios, a, net)?;
    say(started, &format!("results in {}", out.display()));
    Ok(())
}

/// One call with `privasip ua`, INVITE->180 as it measured.
fn one_call(work: &Path, config: &str) -> Result<Option<f64>> {
    let out = Command::new(exe()?)
        .args(["ua", "--config", &format!("{config}.toml")])
        .args(["call", "sip:bob@b.example", "--count", "1", "--json"])
        .current_dir(work)
        .output()
        .context("cannot run Alice")?;
    // One JSON object per call on stdout (`privasip ua call --json`).
    let ringing = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("ringing_ms").and_then(serde_json::Value::as_f64));
    Ok(if out.status.success() { ringing } else { None })
}

/// One call in calls.json.
#[derive(Serialize)]
struct CallRow<'a> {
    scenario: &'a str,
    call: usize,
    invite_to_180_ms: Option<f64>,
}

/// One scenario in summary.json: what it measured, and how it went.
#[derive(Serialize)]
struct ScenarioSummary<'a> {
    scenario: &'a str,
    /// `onion`: Proxy B and Bob reached at onion services, nothing exits.
    architecture: &'static str,
    /// PrivaSIP-2 (true) or plain SIP.
    privasip: bool,
    /// `fresh`: a new circuit per call; `shared`: one circuit A-B.
    circuit: &'static str,
    /// `onion`: Proxy B is a (three-hop) onion service.
    proxy_b: &'static str,
    calls: usize,
    ok: usize,
    min_ms: Option<f64>,
    median_ms: Option<f64>,
    p95_ms: Option<f64>,
    max_ms: Option<f64>,
}

/// summary.json.
#[derive(Serialize)]
struct Summary<'a> {
    scenarios: Vec<ScenarioSummary<'a>>,
    ratio_median: Option<f64>,
    scheme: &'a str,
    scheduler: &'a str,
    /// The network's latency profile (none, live) and its seed.
    latency_profile: &'a str,
    latency_seed: Option<u64>,
    /// The mean one-way delay of a link in that profile, ms.
    mean_link_ms: Option<f64>,
}

/// Milliseconds to the microsecond, as the files give them.
fn millis(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

struct Stats {
    ok: usize,
    min: f64,
    median: f64,
    p95: f64,
    max: f64,
}

fn stats(ms: &[Option<f64>]) -> Option<Stats> {
    let mut v: Vec<f64> = ms.iter().flatten().copied().collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    Some(Stats {
        ok: v.len(),
        min: v[0],
        median: at(0.5),
        p95: at(0.95),
        max: v[v.len() - 1],
    })
}

/// A bin width of 1, 2 or 5 times a power of ten giving about ten bins.
fn bin_width(min: f64, max: f64) -> f64 {
    let raw = ((max - min) / 10.0).max(0.1);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|w| *w >= raw)
        .unwrap_or(10.0 * mag)
}

fn histogram(ms: &[Option<f64>], lo: f64, width: f64, bins: usize) -> Vec<usize> {
    let mut h = vec![0; bins];
    for v in ms.iter().flatten() {
        let i = (((v - lo) / width).floor() as usize).min(bins - 1);
        h[i] += 1;
    }
    h
}

/// Writes the run's results under `out`: every call (CSV, JSON), the
/// summary (results.md, summary.json), the frequency tables and figures.
fn write_outputs(out: &Path, sc: &[Scenario], a: &PaperArgs, scheduler: &str) -> Result<()> {
    write_calls(out, sc)?;
    let mut md = write_summary(out, sc, a, scheduler)?;
    write_frequencies(out, sc, &mut md)?;
    std::fs::write(out.join("results.md"), &md)?;
    println!("{md}");
    Ok(())
}

/// Every call's INVITE->180 time: calls.csv and calls.json.
fn write_calls(out: &Path, sc: &[Scenario]) -> Result<()> {
    let mut csv = String::from("scenario,call,invite_to_180_ms\n");
    let mut rows = Vec::new();
    for s in sc {
        for (i, v) in s.ms.iter().enumerate() {
            let val = v.map_or(String::new(), |x| format!("{x:.3}"));
            let _ = writeln!(csv, "{},{},{}", s.name, i + 1, val);
            rows.push(CallRow {
                scenario: &s.name,
                call: i + 1,
                invite_to_180_ms: v.map(millis),
            });
        }
    }
    std::fs::write(out.join("calls.csv"), csv)?;
    std::fs::write(out.join("calls.json"), serde_json::to_string_pretty(&rows)?)?;
    Ok(())
}

/// Per scenario: calls, min, median, p95, max beside the paper's, and
/// the ratios of medians; summary.json, and the same as Markdown.
fn write_summary(out: &Path, sc: &[Scenario], a: &PaperArgs, scheduler: &str) -> Result<String> {
    let mut summary = Vec::new();
    let mut md = format!(
        "# The paper's experiment, reproduced\n\n{} sequential calls per scenario, interleaved, \
         Alice -> Proxy A -> Tor (onion) -> Proxy B -> Tor (Bob's onion) -> Bob; INVITE->180 at \
         Alice; PrivaSIP-2 with {}; a new circuit per call{}; private Tor network on loopback, \
         scheduler {scheduler}{}{}.\n\n| scenario | calls | ok | min ms | median ms | p95 ms | max ms | paper (live Tor) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
        a.calls,
        a.scheme.to_uppercase(),
        if a.reuse {
            " (`-reused`: one shared circuit A-B)"
        } else {
            ""
        },
        if a.quickack {
            ", quick ACKs on the loopback routes"
        } else {
            ""
        },
        match a.latency.model() {
            Some(m) => format!(
                ", every link delayed as on the {} Tor network (doc/latency.md: {:.1} ms one way per \
                 link on average, seed {})",
                a.latency.name(),
                m.mean_ms(),
                a.seed
            ),
            None => String::new(),
        }
    );
    let mut medians = std::collections::HashMap::new();
    for s in sc {
        let st = stats(&s.ms);
        let paper = PAPER
            .iter()
            .find(|(n, _)| *n == s.name)
            .map_or("".to_owned(), |(_, v)| format!("~{v:.0}"));
        match &st {
            Some(st) => {
                medians.insert(s.name.clone(), st.median);
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {paper} |",
                    s.name,
                    s.ms.len(),
                    st.ok,
                    st.min,
                    st.median,
                    st.p95,
                    st.max
                );
            }
            None => {
                let _ = writeln!(md, "| {} | {} | 0 | | | | | {paper} |", s.name, s.ms.len());
            }
        }
        summary.push(ScenarioSummary {
            scenario: &s.name,
            architecture: "onion",
            privasip: s.name.starts_with("privasip"),
            circuit: if s.name.ends_with("-reused") {
                "shared"
            } else {
                "fresh"
            },
            proxy_b: "onion",
            calls: s.ms.len(),
            ok: st.as_ref().map_or(0, |st| st.ok),
            min_ms: st.as_ref().map(|st| millis(st.min)),
            median_ms: st.as_ref().map(|st| millis(st.median)),
            p95_ms: st.as_ref().map(|st| millis(st.p95)),
            max_ms: st.as_ref().map(|st| millis(st.max)),
        });
    }
    let ratio = match (medians.get("privasip"), medians.get("plain")) {
        (Some(p), Some(q)) if *q > 0.0 => Some(p / q),
        _ => None,
    };
    let model = a.latency.model();
    let summary = Summary {
        scenarios: summary,
        ratio_median: ratio.map(|r| (r * 10_000.0).round() / 10_000.0),
        scheme: &a.scheme,
        scheduler,
        latency_profile: a.latency.name(),
        latency_seed: model.map(|_| a.seed),
        mean_link_ms: model.map(|m| (m.mean_ms() * 10.0).round() / 10.0),
    };
    std::fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    let _ = writeln!(
        md,
        "\nPrivaSIP / plain, ratio of medians: **{}** (the paper: ~1.9; target: at most 1.05).",
        ratio.map_or("n/a".to_owned(), |r| format!("{r:.3}"))
    );
    for name in ["plain", "privasip"] {
        if let (Some(fresh), Some(reused)) =
            (medians.get(name), medians.get(&format!("{name}-reused")))
            && *reused > 0.0
        {
            let _ = writeln!(
                md,
                "Fresh / reused circuit, {name}, ratio of medians: **{:.3}** (target: at most 1.5).",
                fresh / reused
            );
        }
    }
    md.push('\n');
    Ok(md)
}

/// The frequency tables (the paper's Tables 2 and 3), appended to `md`,
/// and the histograms (Figures 2 and 3), one bin width for all so that
/// they compare.
fn write_frequencies(out: &Path, sc: &[Scenario], md: &mut String) -> Result<()> {
    let all: Vec<f64> = sc
        .iter()
        .flat_map(|s| s.ms.iter().flatten().copied())
        .collect();
    if all.is_empty() {
        return Ok(());
    }
    let lo_all = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi_all = all.iter().copied().fold(0.0, f64::max);
    // Bins cover the calls up to the 98th percentile; the few beyond
    // share one last, open bin rather than stretch every bin wide.
    let mut sorted = all.clone();
    sorted.sort_by(f64::total_cmp);
    let p98 = sorted[((sorted.len() - 1) as f64 * 0.98).round() as usize];
    let width = bin_width(lo_all, p98);
    let lo = (lo_all / width).floor() * width;
    let mut bins = (((p98 - lo) / width).floor() as usize + 1).max(1);
    let open_end = hi_all >= lo + width * bins as f64;
    if open_end {
        bins += 1;
    }
    let _ = writeln!(
        md,
        "Frequency of INVITE->180 times, bins of {width} ms{}:\n",
        if open_end {
            " (the last bin holds everything above)"
        } else {
            ""
        }
    );
    let mut header = String::from("| ms |");
    let mut rule = String::from("|---|");
    for s in sc {
        let _ = write!(header, " {} |", s.name);
        rule.push_str("---:|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    let hists: Vec<Vec<usize>> = sc
        .iter()
        .map(|s| histogram(&s.ms, lo, width, bins))
        .collect();
    for b in 0..bins {
        let from = lo + width * b as f64;
        let mut row = if open_end && b == bins - 1 {
            format!("| >= {from:.0} |")
        } else {
            format!("| {from:.0}-{:.0} |", from + width)
        };
        for h in &hists {
            let _ = write!(row, " {} |", h[b]);
        }
        let _ = writeln!(md, "{row}");
    }
    for (s, h) in sc.iter().zip(&hists) {
        crate::plot::Histogram {
            title: &format!("INVITE->180, {}", s.name),
            lo,
            width,
            counts: h,
        }
        .write(&out.join(format!("hist-{}", s.name)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_widths_are_round() {
        assert_eq!(bin_width(0.0, 100.0), 10.0);
        assert_eq!(bin_width(100.0, 250.0), 20.0);
        assert_eq!(bin_width(90.0, 500.0), 50.0);
    }
}
