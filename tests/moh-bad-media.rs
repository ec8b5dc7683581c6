//! Bad music files never stop rtpark: a class whose files are corrupt, empty,
//! in an unsupported format, at an absurd sample rate, without samples, or whose
//! directory is missing is logged (naming the file and the reason) and disabled;
//! the engine starts, holds with that class fall back to `default`, and a class
//! with one good file among bad ones plays the good one. A class with no files
//! at all is a configuration error: exit status 2 naming the class.

mod support;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

/// The tone of the good file in the `mixed` class.
const GOOD_HZ: f64 = 1000.0;

/// Deterministic noise.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

/// A valid FLAC stream header (`fLaC` and STREAMINFO: 8 kHz, mono, 16 bits)
/// followed by garbage where the frames should be.
fn flac_with_garbage_frames() -> Vec<u8> {
    let mut f = b"fLaC".to_vec();
    f.extend_from_slice(&[0x80, 0, 0, 34]); // last metadata block, STREAMINFO, 34 bytes
    f.extend_from_slice(&4096u16.to_be_bytes()); // min block size
    f.extend_from_slice(&4096u16.to_be_bytes()); // max block size
    f.extend_from_slice(&[0; 6]); // min and max frame size: unknown
    let packed: u64 = (8000u64 << 44) | (15u64 << 36) | 8000; // rate, 1 ch, 16 bits, samples
    f.extend_from_slice(&packed.to_be_bytes());
    f.extend_from_slice(&[0; 16]); // MD5 unknown
    f.extend_from_slice(&noise(6000, 77));
    f
}

/// A well-formed IMA ADPCM WAV: a real format rtpark does not decode.
fn ima_adpcm_wav() -> Vec<u8> {
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&0x0011u16.to_le_bytes()); // WAVE_FORMAT_IMA_ADPCM
    fmt.extend_from_slice(&1u16.to_le_bytes()); // channels
    fmt.extend_from_slice(&8000u32.to_le_bytes()); // rate
    fmt.extend_from_slice(&4055u32.to_le_bytes()); // bytes per second
    fmt.extend_from_slice(&256u16.to_le_bytes()); // block align
    fmt.extend_from_slice(&4u16.to_le_bytes()); // bits per sample
    fmt.extend_from_slice(&2u16.to_le_bytes()); // cbSize
    fmt.extend_from_slice(&505u16.to_le_bytes()); // samples per block
    let data = noise(1024, 5);
    let mut body = b"WAVE".to_vec();
    for (id, chunk) in [
        (b"fmt ", fmt.as_slice()),
        (b"fact", 2020u32.to_le_bytes().as_slice()),
        (b"data", data.as_slice()),
    ] {
        body.extend_from_slice(id);
        body.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        body.extend_from_slice(chunk);
    }
    let mut w = b"RIFF".to_vec();
    w.extend_from_slice(&(body.len() as u32).to_le_bytes());
    w.extend_from_slice(&body);
    w
}

/// One bad class: its name, the file the log must name, and the phrases of
/// which the logged reason must contain one.
struct Bad {
    class: &'static str,
    file: PathBuf,
    reasons: &'static [&'static str],
}

/// Writes every bad file into `dir`; returns the classes and their config.
fn bad_media(dir: &Path) -> (Vec<Bad>, String) {
    let tone_pcm: Vec<u8> = tone(8000, 1.0, &[(440.0, 0.3)])
        .iter()
        .flat_map(|&s| ((s * 32767.0) as i16).to_le_bytes())
        .collect();
    let unrecognised: &[&str] = &["not a recognised", "unsupported format", "corrupt"];
    let files: Vec<(&str, &str, Vec<u8>, &[&str])> = vec![
        ("corrupt_wav", "noise.wav", noise(20_000, 1), unrecognised),
        ("corrupt_flac", "noise.flac", noise(20_000, 2), unrecognised),
        ("corrupt_mp3", "noise.mp3", noise(20_000, 3), unrecognised),
        (
            "corrupt_frames",
            "garbage-frames.flac",
            flac_with_garbage_frames(),
            &["corrupt"],
        ),
        (
            "empty_file",
            "empty.wav",
            Vec::new(),
            &["contains no audio", "empty"],
        ),
        (
            "text_as_ogg",
            "notes.ogg",
            b"These are not the samples you are looking for.\n".to_vec(),
            &["not a recognised", "unsupported format"],
        ),
        (
            "adpcm",
            "ima-adpcm.wav",
            ima_adpcm_wav(),
            &["unsupported format", "no decoder"],
        ),
        (
            "megahertz",
            "one-megahertz.wav",
            wav_bytes(1, 1, 1_000_000, 16, &tone_pcm),
            &["1000000 Hz"],
        ),
        (
            "no_samples",
            "no-samples.wav",
            wav_bytes(1, 1, 8000, 16, &[]),
            &["contains no audio"],
        ),
    ];
    let mut bad = Vec::new();
    let mut config = String::new();
    for (class, name, bytes, reasons) in files {
        // Each class in a directory of its own, as an operator would set it up.
        let class_dir = dir.join(class);
        std::fs::create_dir_all(&class_dir).unwrap();
        let file = class_dir.join(name);
        std::fs::write(&file, bytes).unwrap();
        config.push_str(&format!(
            "[moh.{class}]\ndirectory = {}\n",
            toml_path(&class_dir)
        ));
        bad.push(Bad {
            class,
            file,
            reasons,
        });
    }
    let missing = dir.join("no-such-directory");
    config.push_str(&format!(
        "[moh.missing_dir]\ndirectory = {}\n",
        toml_path(&missing)
    ));
    bad.push(Bad {
        class: "missing_dir",
        file: missing,
        reasons: &[
            "cannot read directory",
            "no audio files",
            "not found",
            "No such file",
        ],
    });
    (bad, config)
}

#[test]
fn bad_media_is_logged_and_disabled_and_holds_fall_back_to_default() {
    let dir = TempDir::new();
    let (bad, bad_config) = bad_media(dir.path());
    let good = dir.join("good.wav");
    write_wav(&good, 8000, &tone(8000, 1.0, &[(GOOD_HZ, 0.3)]));
    let noise_in_mixed = dir.join("mixed-noise.wav");
    std::fs::write(&noise_in_mixed, noise(5000, 9)).unwrap();
    let mut engine = Engine::start(
        EngineOptions::new(Backend::Epoll)
            .config(&quick_media(&dir))
            .config(&bad_config)
            .config(&format!(
                "[moh.mixed]\nfiles = [{}, {}]",
                toml_path(&noise_in_mixed),
                toml_path(&good)
            )),
    );
    let mut ctl = engine.control();
    ctl.ok(json!({"cmd": "ping"}));
    let log = engine.stderr();

    // The log names every bad file with its reason.
    let mut missing = Vec::new();
    for b in &bad {
        let file = b.file.display().to_string();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(&file)).collect();
        eprintln!(
            "{:<15} {}",
            b.class,
            lines.first().unwrap_or(&"(not logged)")
        );
        if lines.is_empty() {
            missing.push(format!("{}: no log line names {file}", b.class));
        } else if !lines
            .iter()
            .any(|l| b.reasons.iter().any(|r| l.contains(r)))
        {
            missing.push(format!(
                "{}: the lines naming {file} give none of the reasons {:?}: {lines:?}",
                b.class, b.reasons
            ));
        }
    }
    let mixed_file = noise_in_mixed.display().to_string();
    if !log.lines().any(|l| l.contains(&mixed_file)) {
        missing.push(format!("mixed: no log line names {mixed_file}"));
    }
    assert!(
        missing.is_empty(),
        "bad media not reported:\n  {}\nstderr:\n{log}",
        missing.join("\n  ")
    );

    // list_media lists no bad class, and the mixed class with its good file only.
    let media = ctl.ok(json!({"cmd": "list_media"}));
    let classes: Vec<&Value> = media["media"]
        .as_array()
        .expect("media array")
        .iter()
        .filter(|m| m["kind"] == json!("class"))
        .collect();
    for b in &bad {
        assert!(
            !classes.iter().any(|c| c["name"] == json!(b.class)),
            "class {} has no playable file but list_media lists it: {media}",
            b.class
        );
    }
    let mixed = classes
        .iter()
        .find(|c| c["name"] == json!("mixed"))
        .unwrap_or_else(|| panic!("class mixed (one good file) is not listed: {media}"));
    assert_eq!(
        mixed["files"],
        json!([good.display().to_string()]),
        "mixed lists exactly its good file: {mixed}"
    );

    // Holding with a bad class plays `default`; with `mixed`, the good file.
    let mut holds: Vec<(&str, f64)> = bad.iter().map(|b| (b.class, QUICK_DEFAULT_HZ)).collect();
    holds.push(("mixed", GOOD_HZ));
    holds.push(("no_such_class", QUICK_DEFAULT_HZ));
    for (class, hz) in holds {
        let phone = Endpoint::new();
        let call = format!("bad-{class}");
        ctl.create_leg(&call, &call, phone.addr());
        ctl.ok(json!({"cmd": "hold", "leg": call, "class": class}));
        let mut heard = Vec::new();
        for _ in 0..5 {
            let (p, _) = phone
                .recv_within(Duration::from_secs(3))
                .unwrap_or_else(|| {
                    panic!(
                        "no music after hold with class {class}; stderr:\n{}",
                        engine.stderr()
                    )
                });
            let p = parse_rtp(&p).expect("RTP");
            assert_eq!(p.pt, 0, "class {class}: PCMU by default");
            heard.push(
                dominant_tone(
                    &ulaw_samples(&p.payload),
                    8000,
                    &[QUICK_DEFAULT_HZ, GOOD_HZ],
                )
                .map(|i| [QUICK_DEFAULT_HZ, GOOD_HZ][i]),
            );
        }
        assert!(
            heard.iter().all(|h| *h == Some(hz)),
            "hold with class {class} should play the {hz} Hz tone, heard {heard:?}"
        );
        ctl.ok(json!({"cmd": "delete_call", "call": call}));
    }

    ctl.ok(json!({"cmd": "ping"}));
    assert!(
        engine.is_running(),
        "rtpark died; stderr:\n{}",
        engine.stderr()
    );
    let status = engine.stop();
    assert!(
        status.success(),
        "rtpark exited with {status}; stderr:\n{}",
        engine.stderr()
    );
    assert!(
        !engine.stderr().contains("panicked"),
        "a panic was logged:\n{}",
        engine.stderr()
    );
}

/// Runs the engine on `toml` and expects exit status 2 with a message naming
/// the class and what it lacks.
fn expect_config_error(toml: &str, class: &str, words: &[&str]) {
    let dir = TempDir::new();
    let config = dir.join("rtpark.toml");
    std::fs::write(&config, toml).unwrap();
    let socket = dir.join("never.sock");
    let (status, _, stderr) = run_rtpark(&[
        "--config",
        config.to_str().unwrap(),
        "--listen-native",
        &format!("unix:{}", socket.display()),
        "--port-min",
        "31900",
        "--port-max",
        "31999",
    ]);
    assert_eq!(status.code(), Some(2), "config:\n{toml}\nstderr: {stderr}");
    assert!(
        stderr.contains(class)
            && stderr.contains("moh")
            && words.iter().all(|w| stderr.contains(w)),
        "the error should name class {class} and {words:?}; config:\n{toml}\nstderr: {stderr}"
    );
    assert!(!socket.exists(), "a refused start leaves no control socket");
}

#[test]
fn class_without_files_is_a_config_error() {
    expect_config_error(
        "[moh.nothing_here]\norder = \"random\"\n",
        "nothing_here",
        &["directory", "files"],
    );
    expect_config_error(
        "[moh.empty_list]\nfiles = []\n",
        "empty_list",
        &["directory", "files"],
    );
    expect_config_error(
        "[moh.both]\nfiles = [\"/x.wav\"]\ndirectory = \"/music\"\n",
        "both",
        &["directory", "files"],
    );
}
