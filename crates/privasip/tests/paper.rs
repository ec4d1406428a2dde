//! A short run of the paper's experiment (`privasip bench paper`) on a
//! private Tor network: both scenarios complete every call, and every
//! output the issue names is written.

mod common;

use std::process::Command;

#[test]
fn bench_paper_short_run_writes_tables_figures_and_summary() {
    common::require("tor", "tor");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("paper");
    let run = Command::new(env!("CARGO_BIN_EXE_privasip"))
        .args([
            "bench",
            "paper",
            "--calls",
            "5",
            "--base-port",
            "19500",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("privasip bench paper runs");
    common::succeeded(&run, "privasip bench paper");
    for f in [
        "summary.json",
        "calls.csv",
        "calls.json",
        "results.md",
        "hist-plain.svg",
        "hist-plain.png",
        "hist-privasip.svg",
        "hist-privasip.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let text = std::fs::read_to_string(out.join("summary.json")).expect("summary");
    let summary: serde_json::Value = serde_json::from_str(&text).expect("summary.json is JSON");
    let scenarios = summary["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = scenarios
        .iter()
        .filter_map(|s| s["scenario"].as_str())
        .collect();
    assert_eq!(names, ["plain", "privasip"], "{text}");
    // Each scenario says what it measured.
    for (s, privasip) in scenarios.iter().zip([false, true]) {
        assert_eq!(s["privasip"], privasip, "{text}");
        assert_eq!(s["architecture"], "onion", "{text}");
        assert_eq!(s["circuit"], "fresh", "{text}");
        assert_eq!(s["proxy_b"], "onion", "{text}");
    }
    for s in scenarios {
        assert_eq!(s["calls"], 5, "{text}");
        assert_eq!(s["ok"], 5, "{text}");
        assert!(s["median_ms"].is_f64(), "{text}");
        assert!(s["p95_ms"].is_f64(), "{text}");
    }
    assert!(summary["ratio_median"].is_f64(), "{text}");
    let csv = std::fs::read_to_string(out.join("calls.csv")).expect("csv");
    assert_eq!(csv.lines().count(), 1 + 10, "{csv}");
}
