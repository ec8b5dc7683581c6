//! The on-disk cache of encoded media: a hold writes the class's frames into
//! `cache_dir`, `rtpark media encode` fills it for every codec and packet time,
//! `rtpark media list` shows classes, files, durations and cached encodings,
//! and damaged cache files are logged, ignored and re-encoded while playback
//! stays exactly what it was.

mod support;

use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::*;

/// The test class's tone, found in no other class or announcement.
const TEST_HZ: f64 = 1750.0;
/// Music packets compared between the first and the last engine.
const PACKETS: usize = 25;
/// Size of the test class's PCMU/20 ms cache file: 1 s is 50 frames of 160
/// bytes, after a 33-byte header and a 4-byte length per frame.
const TEST_PCMU20_SIZE: u64 = 33 + 50 * 4 + 50 * 160;

/// `*.frames` files in `cache`, by name.
fn cache_files(cache: &Path) -> BTreeMap<String, PathBuf> {
    std::fs::read_dir(cache)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "frames"))
                .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
                .collect()
        })
        .unwrap_or_default()
}

/// The test class's PCMU 20 ms cache file: the right size, and its frames (the
/// file's tail) are the test tone in µ-law.
fn is_test_pcmu20(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    if !name.contains("-PCMU-20ms-") {
        return false;
    }
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    bytes.len() as u64 == TEST_PCMU20_SIZE
        && dominant_tone(
            &ulaw_samples(&bytes[bytes.len() - 1600..]),
            8000,
            &[TEST_HZ, QUICK_DEFAULT_HZ, 800.0, 1000.0, 440.0],
        ) == Some(0)
}

/// Holds a fresh PCMU leg on class `test` and returns the first music payloads.
fn hold_and_listen(engine: &Engine, call: &str) -> Vec<Vec<u8>> {
    let mut ctl = engine.control();
    let phone = Endpoint::new();
    ctl.create_leg(call, call, phone.addr());
    ctl.ok(json!({"cmd": "hold", "leg": call, "class": "test"}));
    let payloads = (0..PACKETS)
        .map(|_| {
            let (p, _) = phone
                .recv_within(Duration::from_secs(3))
                .unwrap_or_else(|| panic!("no music; stderr:\n{}", engine.stderr()));
            parse_rtp(&p).expect("RTP").payload
        })
        .collect();
    ctl.ok(json!({"cmd": "delete_call", "call": call}));
    payloads
}

/// Runs `rtpark media <action> --config <config>`, expecting success.
fn media_tool(action: &str, config: &Path) -> String {
    let (status, stdout, stderr) = run_rtpark_within(
        &["media", action, "--config", config.to_str().unwrap()],
        Duration::from_secs(120),
    );
    assert!(
        status.success(),
        "rtpark media {action} failed with {status}; stderr:\n{stderr}"
    );
    stdout
}

/// The `media list` line of class `name`.
fn list_line<'a>(listing: &'a str, name: &str) -> &'a str {
    listing
        .lines()
        .find(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some("class") && words.next() == Some(name)
        })
        .unwrap_or_else(|| panic!("media list has no class {name}:\n{listing}"))
}

/// Ways to damage a cache file.
const DAMAGE: [&str; 4] = ["flipped frame byte", "garbage", "truncated", "empty"];

fn damage(path: &Path, how: &str) {
    let mut bytes = std::fs::read(path).unwrap();
    match how {
        "flipped frame byte" => *bytes.last_mut().unwrap() ^= 0x01,
        "garbage" => bytes = b"not a frames file, just some text\n".repeat(20),
        "truncated" => bytes.truncate(bytes.len() / 2),
        _ => bytes.clear(),
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn cache_is_filled_listed_and_damaged_files_are_re_encoded() {
    let dir = TempDir::new();
    let cache = dir.join("cache");
    let music = dir.join("test-1750hz.wav");
    write_wav(&music, 8000, &tone(8000, 1.0, &[(TEST_HZ, 0.3)]));
    let toml = format!(
        "cache_dir = {}\n{}[moh.test]\nfiles = [{}]\njoin = \"start\"\nnormalize = false\n",
        toml_path(&cache),
        quick_classes(&dir),
        toml_path(&music)
    );
    let config = dir.join("rtpark.toml");
    std::fs::write(&config, &toml).unwrap();

    // Nothing encoded yet: the listing shows the class, its file and duration.
    let listing = media_tool("list", &config);
    let line = list_line(&listing, "test");
    assert!(
        line.contains("1.0 s") && line.contains("not encoded yet"),
        "class test before any encoding: {line}"
    );
    assert!(
        listing.contains(&music.display().to_string()),
        "media list names the class's file:\n{listing}"
    );
    assert!(list_line(&listing, "default").contains("2.0 s"));

    // A hold encodes the class into the cache.
    let mut engine = Engine::start(EngineOptions::new(Backend::Epoll).config(&toml));
    let before = hold_and_listen(&engine, "first");
    let files = cache_files(&cache);
    let test_file = files
        .values()
        .find(|p| is_test_pcmu20(p))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "after a PCMU hold on class test, {} holds no PCMU/20 ms file of it: {:?}",
                cache.display(),
                files.keys()
            )
        });
    engine.stop();

    // `media encode` fills every codec and packet time; `media list` says so.
    let out = media_tool("encode", &config);
    assert!(
        out.contains("encodings ready"),
        "media encode output:\n{out}"
    );
    let listing = media_tool("list", &config);
    let line = list_line(&listing, "test");
    for codec in ["PCMU", "PCMA", "G722", "opus"] {
        for ptime in [10, 20, 30, 40] {
            assert!(
                line.contains(&format!("{codec}/{ptime}")),
                "class test lacks {codec}/{ptime} after media encode: {line}"
            );
        }
    }
    let files = cache_files(&cache);
    for codec in ["PCMU", "PCMA", "G722", "opus"] {
        for ptime in [10, 20, 30, 40] {
            let tag = format!("-{codec}-{ptime}ms-");
            assert!(
                files.keys().any(|n| n.contains(&tag)),
                "no {codec} {ptime} ms file in the cache: {:?}",
                files.keys()
            );
        }
    }

    // Damage every PCMU 20 ms file (the test class's by a single flipped bit
    // in its frames), keeping the originals.
    let mut damaged = Vec::new();
    for (i, (name, path)) in files
        .iter()
        .filter(|(n, _)| n.contains("-PCMU-20ms-"))
        .enumerate()
    {
        let original = std::fs::read(path).unwrap();
        let how = if *path == test_file {
            DAMAGE[0]
        } else {
            DAMAGE[i % DAMAGE.len()]
        };
        damage(path, how);
        damaged.push((name.clone(), path.clone(), original, how));
    }

    // The engine logs each damaged file, re-encodes it, and plays as before.
    let mut engine = Engine::start(EngineOptions::new(Backend::Epoll).config(&toml));
    let after = hold_and_listen(&engine, "second");
    assert!(
        before == after,
        "class test sounds different after its cache file was damaged and re-encoded"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = engine.stderr();
        let unlogged: Vec<&str> = damaged
            .iter()
            .filter(|(name, ..)| !log.lines().any(|l| l.contains(name.as_str())))
            .map(|(name, ..)| name.as_str())
            .collect();
        let unrepaired: Vec<String> = damaged
            .iter()
            .filter(|(_, path, original, _)| std::fs::read(path).ok().as_ref() != Some(original))
            .map(|(name, _, _, how)| format!("{name} ({how})"))
            .collect();
        if unlogged.is_empty() && unrepaired.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "30 s after start, damaged cache files not logged: {unlogged:?}; not re-encoded \
             to their original content: {unrepaired:?}; stderr:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let test_name = test_file
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let log = engine.stderr();
    let line = log
        .lines()
        .find(|l| l.contains(&test_name))
        .unwrap_or_default();
    assert!(
        line.contains("re-encod") || line.contains("unreadable") || line.contains("ignor"),
        "the log line about {test_name} should say the file is ignored and re-encoded: {line}"
    );
    eprintln!(
        "{} damaged PCMU/20 ms cache files logged and re-encoded, e.g.: {line}",
        damaged.len()
    );
    let status = engine.stop();
    assert!(status.success(), "rtpark exited with {status}");
}
