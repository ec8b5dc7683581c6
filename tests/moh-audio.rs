//! What a held leg hears is the class's audio: a 44.1 kHz test file played
//! through a real rtpark to a held leg in PCMU, PCMA, G.722 and Opus, decoded
//! at the phone and compared with the same file resampled independently (by
//! sox when it is installed, else by a windowed-sinc resampler in this file).
//! Each comparison first aligns the two signals by cross-correlation (±50 ms),
//! then measures the SNR (G.711, G.722) or the normalised correlation (Opus).
//! Set `RTPARK_TEST_NO_SOX=1` to use the in-file resampler even with sox around.

#[macro_use]
mod support;

use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use support::*;

backend_tests!(held_leg_hears_the_source_in_every_codec);

/// Sample rate of the source file.
const SOURCE_RATE: u32 = 44_100;
/// Length of the source file.
const SOURCE_SECS: f64 = 3.0;
/// How much music each held leg records.
const LISTEN: Duration = Duration::from_millis(2100);
/// Alignment search range.
const MAX_LAG_SECS: f64 = 0.050;

/// The source: 440 Hz and 1 kHz under an envelope that rises over the file and
/// wobbles at 2.3 Hz, so that only one alignment fits.
fn source_signal() -> Vec<f32> {
    let n = (SOURCE_RATE as f64 * SOURCE_SECS) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / SOURCE_RATE as f64;
            let pi2 = 2.0 * std::f64::consts::PI;
            let env = (0.4 + 0.6 * t / SOURCE_SECS) * (0.55 + 0.45 * (pi2 * 2.3 * t).sin());
            let x = 0.3 * (pi2 * 440.0 * t).sin() + 0.22 * (pi2 * 1000.0 * t).sin();
            (env * x) as f32
        })
        .collect()
}

/// One codec to hold a leg in.
struct Case {
    name: &'static str,
    pt: u8,
    /// RTP clock rate.
    clock: u32,
    /// Decoded sample rate.
    rate: u32,
    codecs: Value,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "PCMU",
            pt: 0,
            clock: 8000,
            rate: 8000,
            codecs: json!([{"pt": 0, "name": "PCMU", "rate": 8000}]),
        },
        Case {
            name: "PCMA",
            pt: 8,
            clock: 8000,
            rate: 8000,
            codecs: json!([{"pt": 8, "name": "PCMA", "rate": 8000}]),
        },
        Case {
            name: "G722",
            pt: 9,
            clock: 8000,
            rate: 16000,
            codecs: json!([{"pt": 9, "name": "G722", "rate": 8000}]),
        },
        Case {
            name: "opus",
            pt: 111,
            clock: 48000,
            rate: 48000,
            codecs: json!([{"pt": 111, "name": "opus", "rate": 48000, "channels": 2}]),
        },
    ]
}

/// A bridged call whose A side is about to be held.
struct Call {
    case: Case,
    a: Phone,
    recorder: Option<Recorder>,
}

fn held_leg_hears_the_source_in_every_codec(backend: Backend) {
    let dir = TempDir::new();
    let music = dir.join("music");
    std::fs::create_dir_all(&music).unwrap();
    let source = music.join("source.wav");
    write_wav(&source, SOURCE_RATE, &source_signal());
    let engine = Engine::start(
        EngineOptions::new(backend)
            .config(&quick_media(&dir))
            .config(&format!(
                "[moh.test]\ndirectory = {}\njoin = \"start\"\nnormalize = false",
                toml_path(&music)
            )),
    );
    let mut ctl = engine.control();

    let mut calls = Vec::new();
    for (i, case) in cases().into_iter().enumerate() {
        let (a, b) = (Phone::new(), Phone::new());
        let call = format!("audio-{}", case.name);
        let (leg_a, leg_b) = (format!("{call}-a"), format!("{call}-b"));
        let ra = ctl.ok(json!({"cmd": "create_leg", "call": call, "leg": leg_a,
            "remote": a.addr().to_string(), "codecs": case.codecs}));
        let rb = ctl.ok(json!({"cmd": "create_leg", "call": call, "leg": leg_b,
            "remote": b.addr().to_string(), "codecs": case.codecs}));
        ctl.bridge(&leg_a, &leg_b);
        let (a_port, b_port) = (rtp_port(&ra), rtp_port(&rb));
        // A few packets each way in the call's codec: both sides latch, and A
        // has been receiving this payload type when the music starts.
        let samples = case.clock / 50;
        for k in 0..5u16 {
            let ts = u32::from(k) * samples;
            a.rtp
                .send_to_port(&rtp(k, ts, 0xa000 + i as u32, case.pt, &[0xd5; 40]), a_port);
            b.rtp
                .send_to_port(&rtp(k, ts, 0xb000 + i as u32, case.pt, &[0xd5; 40]), b_port);
            let (got, _) = a.rtp.recv();
            assert_eq!(
                parse_rtp(&got).map(|p| p.pt),
                Some(case.pt),
                "{}: relayed to A",
                case.name
            );
            b.rtp.recv();
        }
        calls.push(Call {
            case,
            a,
            recorder: None,
        });
    }
    for call in &mut calls {
        call.recorder = Some(call.a.rtp.record());
        let leg = format!("audio-{}-a", call.case.name);
        ctl.ok(json!({"cmd": "hold", "leg": leg, "class": "test"}));
    }
    std::thread::sleep(LISTEN);
    let recorded: Vec<Vec<Stamped>> = calls
        .iter_mut()
        .map(|c| c.recorder.take().unwrap().finish())
        .collect();

    let reference = Reference::new(&source, dir.path());
    let mut failures = Vec::new();
    for (call, packets) in calls.iter().zip(&recorded) {
        let case = &call.case;
        let rx = reconstruct(case, packets);
        let refsig = reference.at(case.rate);
        let max_lag = (MAX_LAG_SECS * case.rate as f64) as i64;
        let stride = (case.rate / 8000) as usize;
        let lag = best_lag(&rx.samples, &rx.valid, &refsig, max_lag, stride);
        let m = compare(&rx.samples, &rx.valid, &refsig, lag, case.rate);
        eprintln!(
            "[{}] {:<4} {} packets, {:.2} s of audio, lag {:+} samples ({:+.2} ms), \
             SNR {:.1} dB, normalised correlation {:.4} (reference: {})",
            backend.as_str(),
            case.name,
            rx.packets,
            m.seconds,
            lag,
            lag as f64 * 1000.0 / case.rate as f64,
            m.snr_db,
            m.correlation,
            reference.how
        );
        if rx.packets < 80 {
            failures.push(format!(
                "{}: only {} music packets in {LISTEN:?}",
                case.name, rx.packets
            ));
        }
        if let Some(problem) = &rx.problem {
            failures.push(format!("{}: {problem}", case.name));
        }
        let ok = match case.name {
            "PCMU" | "PCMA" => m.snr_db >= 25.0,
            "G722" => m.snr_db >= 15.0,
            _ => m.correlation >= 0.9,
        };
        if !ok {
            failures.push(format!(
                "{}: SNR {:.1} dB, correlation {:.4} at lag {lag} (need SNR ≥ 25 dB for G.711, \
                 ≥ 15 dB for G.722, correlation ≥ 0.9 for Opus)",
                case.name, m.snr_db, m.correlation
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "held legs on {} do not hear the source:\n  {}\nengine stderr:\n{}",
        backend.as_str(),
        failures.join("\n  "),
        engine.stderr()
    );
}

/// The received music, placed by RTP timestamp.
struct Received {
    samples: Vec<f32>,
    /// Which samples came from a packet (a missing packet leaves a hole).
    valid: Vec<bool>,
    packets: usize,
    problem: Option<String>,
}

fn reconstruct(case: &Case, packets: &[Stamped]) -> Received {
    let rtp: Vec<RtpView> = packets.iter().filter_map(|p| parse_rtp(&p.data)).collect();
    let mut problem = None;
    let Some(first) = rtp.first() else {
        return Received {
            samples: Vec::new(),
            valid: Vec::new(),
            packets: 0,
            problem: Some("no packets".into()),
        };
    };
    if let Some(bad) = rtp.iter().find(|p| p.pt != case.pt) {
        problem = Some(format!("payload type {} instead of {}", bad.pt, case.pt));
    }
    for w in rtp.windows(2) {
        if w[1].seq != w[0].seq.wrapping_add(1) {
            problem.get_or_insert(format!("sequence jumps {} → {}", w[0].seq, w[1].seq));
        }
    }
    let ratio = case.rate / case.clock;
    let pos = |p: &RtpView| p.ts.wrapping_sub(first.ts) as usize * ratio as usize;
    let last = rtp.last().unwrap();
    let len = pos(last) + case.rate as usize / 10;
    let mut samples = vec![0f32; len];
    let mut valid = vec![false; len];
    let mut g722 = rtpark::media::g722::G722Decoder::new();
    let mut opus = rtpark::media::opus::OpusDecoder::new().expect("opus decoder");
    for p in &rtp {
        let decoded: Vec<f32> = match case.name {
            "PCMU" => ulaw_samples(&p.payload),
            "PCMA" => p
                .payload
                .iter()
                .map(|&c| alaw_to_linear(c) as f32 / 32768.0)
                .collect(),
            "G722" => {
                let mut out = Vec::new();
                g722.decode(&p.payload, &mut out);
                out.iter().map(|&s| s as f32 / 32768.0).collect()
            }
            _ => {
                let mut out = Vec::new();
                if let Err(e) = opus.decode(&p.payload, &mut out) {
                    problem.get_or_insert(format!("Opus packet {} does not decode: {e}", p.seq));
                }
                out.iter().map(|&s| s as f32 / 32768.0).collect()
            }
        };
        let at = pos(p);
        for (j, s) in decoded.into_iter().enumerate() {
            if let Some(slot) = samples.get_mut(at + j) {
                *slot = s;
                valid[at + j] = true;
            }
        }
    }
    Received {
        samples,
        valid,
        packets: rtp.len(),
        problem,
    }
}

/// The lag `l` maximising the normalised correlation of `rx[i]` with
/// `reference[i + l]`: a coarse search every `stride` samples, then a fine one.
fn best_lag(rx: &[f32], valid: &[bool], reference: &[f32], max_lag: i64, stride: usize) -> i64 {
    let score = |lag: i64, step: usize| -> f64 {
        let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
        for i in (0..rx.len()).step_by(step) {
            let j = i as i64 + lag;
            if !valid[i] || j < 0 || j as usize >= reference.len() {
                continue;
            }
            let (x, y) = (rx[i] as f64, reference[j as usize] as f64);
            xy += x * y;
            xx += x * x;
            yy += y * y;
        }
        if xx == 0.0 || yy == 0.0 {
            return f64::MIN;
        }
        xy / (xx * yy).sqrt()
    };
    let s = stride.max(1) as i64;
    let coarse = (-max_lag / s..=max_lag / s)
        .map(|k| k * s)
        .max_by(|&a, &b| score(a, s as usize).total_cmp(&score(b, s as usize)))
        .unwrap_or(0);
    (coarse - s..=coarse + s)
        .max_by(|&a, &b| score(a, 1).total_cmp(&score(b, 1)))
        .unwrap_or(coarse)
}

struct Measure {
    snr_db: f64,
    correlation: f64,
    seconds: f64,
}

/// SNR and correlation of `rx` against `reference` shifted by `lag`, skipping
/// the first 10 ms (decoder start-up).
fn compare(rx: &[f32], valid: &[bool], reference: &[f32], lag: i64, rate: u32) -> Measure {
    let skip = rate as usize / 100;
    let (mut sig, mut noise, mut xy, mut xx, mut n) = (0f64, 0f64, 0f64, 0f64, 0usize);
    for i in skip..rx.len() {
        let j = i as i64 + lag;
        if !valid[i] || j < 0 || j as usize >= reference.len() {
            continue;
        }
        let (x, y) = (rx[i] as f64, reference[j as usize] as f64);
        sig += y * y;
        noise += (x - y) * (x - y);
        xy += x * y;
        xx += x * x;
        n += 1;
    }
    Measure {
        snr_db: 10.0 * (sig / noise.max(1e-20)).log10(),
        correlation: if xx > 0.0 && sig > 0.0 {
            xy / (xx * sig).sqrt()
        } else {
            0.0
        },
        seconds: n as f64 / rate as f64,
    }
}

/// The source resampled to each codec's rate by an independent resampler.
struct Reference {
    source: std::path::PathBuf,
    dir: std::path::PathBuf,
    how: &'static str,
}

impl Reference {
    fn new(source: &Path, dir: &Path) -> Reference {
        let sox = std::process::Command::new("sox")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        Reference {
            source: source.to_owned(),
            dir: dir.to_owned(),
            how: if sox && std::env::var_os("RTPARK_TEST_NO_SOX").is_none() {
                "sox"
            } else {
                "windowed sinc (sox not installed)"
            },
        }
    }

    fn at(&self, rate: u32) -> Vec<f32> {
        if self.how != "sox" {
            return sinc_resample(&source_signal(), SOURCE_RATE, rate);
        }
        let out = self.dir.join(format!("reference-{rate}.raw"));
        let status = std::process::Command::new("sox")
            .arg("-D")
            .arg(&self.source)
            .args(["-b", "16", "-e", "signed-integer", "-t", "raw"])
            .arg(&out)
            .args(["rate", "-v", &rate.to_string()])
            .status()
            .expect("run sox");
        assert!(status.success(), "sox failed to resample to {rate} Hz");
        std::fs::read(&out)
            .expect("read sox output")
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
            .collect()
    }
}

/// Band-limited resampling by a Blackman-windowed sinc (128 taps at the input
/// rate, cut-off at 45 % of the lower rate): slow, simple, independent.
fn sinc_resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    const HALF: i64 = 64;
    let fc = 0.45 * from.min(to) as f64 / from as f64; // cycles per input sample
    let n_out = (input.len() as f64 * to as f64 / from as f64).round() as usize;
    let pi = std::f64::consts::PI;
    (0..n_out)
        .map(|n| {
            let center = n as f64 * from as f64 / to as f64;
            let base = center.floor() as i64;
            let mut acc = 0.0;
            for k in (base - HALF + 1)..=(base + HALF) {
                if k < 0 || k as usize >= input.len() {
                    continue;
                }
                let x = k as f64 - center;
                let sinc = if x.abs() < 1e-12 {
                    2.0 * fc
                } else {
                    (2.0 * pi * fc * x).sin() / (pi * x)
                };
                let w = 0.42
                    + 0.5 * (pi * x / HALF as f64).cos()
                    + 0.08 * (2.0 * pi * x / HALF as f64).cos();
                acc += input[k as usize] as f64 * sinc * w;
            }
            acc as f32
        })
        .collect()
}
