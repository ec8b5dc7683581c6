//! Replays every seed and regression input under `fuzz/corpus/<target>/` through the
//! same check the cargo-fuzz target runs, so `cargo test` catches a regression
//! without a nightly toolchain or libFuzzer.
//!
//! To cover a new fuzz target, add its corpus directory and check function to
//! [`TARGETS`].

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use rtpark::control::native::fuzzing::check_native_request;
use rtpark::control::ng::fuzzing::{check_bencode, check_ng_request};
use rtpark::control::rtpproxy::fuzzing::check_rtpproxy_command;
use rtpark::rtp::fuzzing::{check_rtcp_compound, check_rtp_header};
use rtpark::sdp::fuzzing::check_sdp_rewrite;

/// The property check a fuzz target runs on one input; panics on a violation.
type Check = fn(&[u8]);

/// Corpus directory under `fuzz/corpus/`, and the check its fuzz target runs.
const TARGETS: &[(&str, Check)] = &[
    ("rtp_header", check_rtp_header),
    ("rtcp_compound", check_rtcp_compound),
    ("native_control", check_native_request),
    ("sdp_rewrite", check_sdp_rewrite),
    ("bencode", check_bencode),
    ("ng_request", check_ng_request),
    ("rtpproxy_command", check_rtpproxy_command),
];

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read corpus {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("corpus directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, check: Check) -> usize {
    let files = corpus_files(target);
    assert!(!files.is_empty(), "corpus for {target} is empty");
    let mut failed = Vec::new();
    for file in &files {
        let data =
            std::fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        if panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: check failed on {failed:#?}");
    files.len()
}

#[test]
fn every_corpus_input_passes_its_check() {
    for &(target, check) in TARGETS {
        let n = replay(target, check);
        eprintln!("{target}: {n} inputs replayed");
    }
}

#[test]
fn every_fuzz_target_has_a_corpus() {
    let fuzz_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    let Ok(entries) = std::fs::read_dir(&fuzz_dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("fuzz target entry").path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        assert!(
            TARGETS.iter().any(|(t, _)| *t == name),
            "fuzz target {name} has no entry in TARGETS of tests/fuzz-corpus-replay.rs"
        );
    }
}
