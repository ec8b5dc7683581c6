//! End to end through src/media: synthesize audio files in memory, decode them,
//! encode them in every codec and packet time, decode the frames back and
//! compare with an independently computed signal; and feed the decoder bad
//! files, each of which must fail with a message naming the file and the reason.

use rtpark::media::codec::{samples_per_frame, PTIMES};
use rtpark::media::g711::{decode_alaw, decode_ulaw};
use rtpark::media::opus::OpusDecoder;
use rtpark::media::{decode_bytes, decode_file, encode_clip, g722, Codec, MediaError, Pcm};
use std::f64::consts::PI;
use std::path::PathBuf;

/// A minimal RIFF/WAVE writer: 16-bit PCM, interleaved `frames`; `data_len`
/// overrides the data chunk's declared length.
fn wav(rate: u32, channels: u16, frames: &[i16], data_len: Option<u32>) -> Vec<u8> {
    let bytes = (frames.len() * 2) as u32;
    let mut v = Vec::with_capacity(44 + bytes as usize);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + bytes).to_le_bytes());
    v.extend_from_slice(b"WAVE");
    v.extend_from_slice(b"fmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes()); // PCM
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&rate.wrapping_mul(channels as u32 * 2).to_le_bytes());
    v.extend_from_slice(&(channels * 2).to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.unwrap_or(bytes).to_le_bytes());
    for s in frames {
        v.extend_from_slice(&s.to_le_bytes());
    }
    v
}

/// `amp · sin(2π f t)` sampled at `rate`.
fn sine(rate: u32, freq: f64, amp: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| amp * (2.0 * PI * freq * i as f64 / rate as f64).sin())
        .collect()
}

/// SNR of `got[i + delay]` against `want[i]` over the middle of the signal.
fn snr_db(want: &[f64], got: &[i16], delay: usize) -> f64 {
    let n = want.len().min(got.len().saturating_sub(delay));
    let (mut sig, mut err) = (0f64, 0f64);
    for i in n / 10..n * 9 / 10 {
        let w = want[i] * 32768.0;
        sig += w * w;
        err += (got[i + delay] as f64 - w).powi(2);
    }
    10.0 * (sig / err.max(1e-9)).log10()
}

/// Normalised cross-correlation of `got[i + delay]` with `want[i]`.
fn correlation(want: &[f64], got: &[i16], delay: usize) -> f64 {
    let n = want.len().min(got.len().saturating_sub(delay));
    let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
    for i in n / 10..n * 9 / 10 {
        let (x, y) = (want[i], got[i + delay] as f64);
        xy += x * y;
        xx += x * x;
        yy += y * y;
    }
    xy / (xx * yy).sqrt().max(1e-12)
}

/// One second of a 1 kHz sine at -6 dBFS, 44.1 kHz stereo (both channels equal).
fn test_wav() -> Vec<u8> {
    let mono = sine(44100, 1000.0, 0.5, 44100);
    let frames: Vec<i16> = mono
        .iter()
        .flat_map(|&s| {
            let v = (s * 32767.0).round() as i16;
            [v, v]
        })
        .collect();
    wav(44100, 2, &frames, None)
}

#[test]
fn wav_decodes_to_mono_at_its_rate() {
    let pcm = decode_bytes(&test_wav(), Some("wav")).unwrap();
    assert_eq!(pcm.rate, 44100);
    assert_eq!(pcm.samples.len(), 44100);
    let peak = pcm.samples.iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!((peak - 0.5).abs() < 0.001, "peak {peak}");
}

#[test]
fn every_codec_and_ptime_has_the_right_frames() {
    let pcm = decode_bytes(&test_wav(), Some("wav")).unwrap();
    for codec in Codec::ALL {
        for ptime in PTIMES {
            let clip = encode_clip(&pcm, codec, ptime, 32_000).unwrap();
            let label = format!("{codec}/{ptime}");
            assert_eq!(clip.codec, codec, "{label}");
            assert_eq!(clip.ptime_ms, ptime, "{label}");
            // One second: 1000 / ptime frames, the last one padded (30 ms: 34).
            assert_eq!(
                clip.frame_count,
                1000usize.div_ceil(ptime as usize),
                "{label}"
            );
            assert_eq!(clip.frames.len(), clip.frame_count, "{label}");
            assert_eq!(
                clip.samples_per_frame(),
                samples_per_frame(codec, ptime),
                "{label}"
            );
            assert_eq!(
                clip.samples_per_frame(),
                ptime * codec.clock_rate() / 1000,
                "{label}"
            );
            // Frames are back to back in one buffer and sliced from it.
            let mut next = 0u32;
            for (i, &(off, len)) in clip.frames.iter().enumerate() {
                assert_eq!(off, next, "{label} frame {i}");
                next = off + len;
                let f = clip.frame(i);
                assert_eq!(f.len(), len as usize);
                assert_eq!(
                    f.as_ptr(),
                    clip.data[off as usize..].as_ptr(),
                    "{label}: zero copy"
                );
            }
            assert_eq!(next as usize, clip.data.len(), "{label}");
            match codec {
                // 8000 samples/s, one byte each; G.722: 16000 samples/s, a byte per two.
                Codec::Pcmu | Codec::Pcma | Codec::G722 => {
                    assert!(
                        clip.frames.iter().all(|&(_, len)| len == 8 * ptime),
                        "{label}"
                    )
                }
                Codec::Opus => {
                    assert!(
                        clip.frames.iter().all(|&(_, len)| len > 2 && len < 1500),
                        "{label}"
                    )
                }
            }
        }
    }
    // The common case, spelled out.
    let c = encode_clip(&pcm, Codec::Pcmu, 20, 32_000).unwrap();
    assert_eq!(
        (c.frame_count, c.frames[0].1, c.samples_per_frame()),
        (50, 160, 160)
    );
    let g = encode_clip(&pcm, Codec::G722, 20, 32_000).unwrap();
    assert_eq!(
        (g.frame_count, g.frames[0].1, g.samples_per_frame()),
        (50, 160, 160)
    );
}

#[test]
fn g711_decodes_back_to_the_source() {
    let pcm = decode_bytes(&test_wav(), Some("wav")).unwrap();
    // Independent of our resampler: the ideal 8 kHz sine.
    let want = sine(8000, 1000.0, 0.5, 8000);
    let u = encode_clip(&pcm, Codec::Pcmu, 20, 0).unwrap();
    let snr = snr_db(&want, &decode_ulaw(&u.data), 0);
    assert!(snr >= 30.0, "PCMU SNR {snr:.1} dB");
    let a = encode_clip(&pcm, Codec::Pcma, 20, 0).unwrap();
    let snr = snr_db(&want, &decode_alaw(&a.data), 0);
    assert!(snr >= 30.0, "PCMA SNR {snr:.1} dB");
}

#[test]
fn g722_decodes_back_to_the_source() {
    let pcm = decode_bytes(&test_wav(), Some("wav")).unwrap();
    let want = sine(16000, 1000.0, 0.5, 16000);
    let clip = encode_clip(&pcm, Codec::G722, 20, 0).unwrap();
    let snr = snr_db(&want, &g722::decode(&clip.data), g722::DELAY);
    assert!(snr >= 20.0, "G.722 SNR {snr:.1} dB");
}

#[test]
fn opus_decodes_back_to_the_source() {
    // 440 Hz + 1 kHz, mono 22.05 kHz: resampled to 48 kHz on the way in.
    let n = 22050;
    let src: Vec<f64> = (0..n)
        .map(|i| {
            let t = i as f64 / 22050.0;
            0.3 * (2.0 * PI * 440.0 * t).sin() + 0.2 * (2.0 * PI * 1000.0 * t).sin()
        })
        .collect();
    let frames: Vec<i16> = src.iter().map(|&s| (s * 32767.0).round() as i16).collect();
    let pcm = decode_bytes(&wav(22050, 1, &frames, None), Some("wav")).unwrap();
    let want: Vec<f64> = (0..48000)
        .map(|i| {
            let t = i as f64 / 48000.0;
            0.3 * (2.0 * PI * 440.0 * t).sin() + 0.2 * (2.0 * PI * 1000.0 * t).sin()
        })
        .collect();
    for ptime in PTIMES {
        let clip = encode_clip(&pcm, Codec::Opus, ptime, 32_000).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        for i in 0..clip.frame_count {
            let n = dec.decode(&clip.frame(i), &mut out).unwrap();
            assert_eq!(n, 48 * ptime as usize, "{ptime} ms packet {i}");
        }
        let c = correlation(&want, &out, OpusDecoder::DELAY_SAMPLES);
        assert!(c >= 0.9, "opus {ptime} ms: correlation {c:.3}");
    }
}

#[test]
fn short_clip_pads_the_last_frame_with_silence() {
    // 25 ms at 8 kHz: two 20 ms frames, the second 5 ms of tone and 15 ms of silence.
    let pcm = Pcm {
        rate: 8000,
        samples: sine(8000, 1000.0, 0.5, 200)
            .iter()
            .map(|&s| s as f32)
            .collect(),
    };
    let clip = encode_clip(&pcm, Codec::Pcma, 20, 0).unwrap();
    assert_eq!(clip.frame_count, 2);
    let last = decode_alaw(&clip.frame(1));
    assert!(
        last[40..].iter().all(|&s| s.abs() <= 8),
        "{:?}",
        &last[40..]
    );
}

/// A 1 kHz sine, 8 kHz mono, encoded with sox (LAME, 8 kbit/s): 432 bytes.
const MP3_HEX: &[&str] = &[
    "ffe318c4000c212ede59412800baedb661ddc018c6318c6360000000798c6318fc00001798c63fc00fffbfd4e1f00008",
    "1c39863fc31d3d218e9ff019fee5a0502018348503000012ffe318c40a0f99bf22398569020f00c23fe1d014483dfe1e",
    "28743bfea48c9144bbfff4925989220fa6bf8bdfc5ea37ffffffe8974ba0d05415111effeb054447834affffffffffff",
    "ffe318c4060cf9524401c0f800ffcc500213034021130be8d3d34de04d33138832d30530061300980303021c0740500a",
    "c86660090016ae5c2536b7ffffffffffffff9b0681698408ffe318c40d0c5956480140f0003e98735029f5f0c098a110",
    "a18c80671841036180a01a982080f9808806a372906e102c5faaec53142ff90e613f7cc18384fd9b63644ba709bfd05b",
    "ffe318c416119986c40182a000a4624f8534b1b9549e16709685b80b3a2a1ae89929cddeeff1e8738a25051f3c5d3217",
    "f47d6641914340b37ffd6934ad7589cc2b30a90b0c21909cffe318c40a0ce925dc01c11801c42730c8510a10a9042190",
    "9986aa9333743010118501130094178362e26851c0c1588a85c7e3fd37ceea4c414d45332e313030aaaaaaaaaaaaaaaa",
];

/// The same sine as Ogg/Vorbis (sox, quality -1): 2558 bytes.
const OGG_HEX: &[&str] = &[
    "4f676753000200000000000000004536f3590000000044b7b526011e01766f726269730000000001401f000000000000",
    "401f00000000000099014f676753000000000000000000004536f35901000000a9d8ee980a60ffffffffffffffff9003",
    "766f7262697334000000586970682e4f7267206c6962566f72626973204920323032303037303420285265647563696e",
    "6720456e7669726f6e6d656e74290100000018000000436f6d6d656e743d50726f63657373656420627920536f580105",
    "766f726269730f42435601000001000c5214212519534a630895525229051d63505b471d63d4394621641053884919a5",
    "7b4f2a95584ac811525829451d534c534995529629451d631453482153d63165a173144b864909256c4dae74164be899",
    "639631461d63ce5a4a9d63d631451d63525249a173183a662564143a46c5e8627c303a95a24228bec7de52e92d858a5b",
    "8abdd71a53eb2d84184b69c1086173edb5d5dc4a6ac518638c31c6c5e2532882d0905500000100004004014243560100",
    "0a0000c2500c455180d0905500400600800014457114c7711c479224cb024243560100400000020000288ee128922349",
    "92645996655996a67996a8b9aa2ffbae2eebaeedeaba0e8486ac04008000001846a1754c2a831043ca43841463d033a3",
    "10430c4cc61c634e34a40c328833c59032885b2c2ea81004a1212b0280280000c018c418620c39e7a4645222e798944e",
    "4a039da3d451ca2895144b8c19a5125b893182ce51ea286594428ca5c58c5289b1c4540000408003004080855068c88a",
    "00200a00803006298594428c29e614738831e51c830c31c62064ce29e818934e4ae59c93ce49891863ce310795734e4a",
    "e7a472d049c9a413000010e00000106021141ab22200881300304892a6599a268a96a689a2678aaaea89a2aa5a9e679a",
    "9e69aaaa679aaa6aaaaaeb9aaaeaca96e799a6679aaaea99a6aa8aa6eabaa6aabaaea7aab66cbaaa2e9bae6adbaeecfa",
    "b66bbbbeeea9aa6c9baa2beba6eacabaeacab6eebab6ed4b9ea7aaa2aabaae67aaaeabbaae6eabae6bdb9a6acaaea9ba",
    "b26dbaae2dbbb26cebae2cebba66aaae6cbaaa2d9bae2cebaeecdab62acbba2fbaae6eabb2acfbaa2cfbbe6cebbaeeda",
    "baf08bae6bebaa2cebbe2acbbe31dbb6f0cbba2e1c9327aaaaa7aaaeeb99aaebaaae6bdbaaebdabaa69aae6cbaae2d9b",
    "aa2bdbaa2cebb62bcbb6ae99aa2c9bae2bdba6ebcab22acbbeefcab26e8baeebeba62cebba2acbc2eeeaba31ccb6adfb",
    "a2ebeaba2acbbaafcab2aebbbaeefbb26e0bbba6aaba6ecab2af9bb2acfbb6ae0bcbacdbba31baaeefabb22dfcaa2c0b",
    "bfaefbc232eb3e63745d5f576d591856d9f67dddf79563d67561596d5bf95d5b67bcbe6e0cbb6efccaad0bcbb2dab6b1",
    "ccbaad2cafaf1bc32eec7c5bf8959aaadab6e9baba6ecab2afcbba2eb475dd5746d7f57dd5b67d5f9565dfb7855f691b",
    "c3b08caeabfbaa2cebc26bcbca2febbab0ecc22f2cab6d2bbfabebca30dbbab0dcbeb02cbfee0bcbaadbbeefeabad2b5",
    "7565b97d9fb12bb7f10b0000187000000830a10c141ab222008813004010720e2906a1620a4208a1a410422a15635232",
    "e6a464ce4929a594144a49ad624c4ae69c94cc3129a194964a29a984525a2aa5c4144a692da5d6624aa9c5504a6ba5a4",
    "d64a49ada594624cadc518312625734e4ae69c9492526b2595d632e728650e4aea20a4944a2aada4d462e69ca40e3a2b",
    "1d84d44a2a319594620ba9c4564a6aada414632b31d5d45a8e21a5184b4ab195945a6d31d5d65aab35624c4ae69c94cc",
    "392a25a5d64a2aad65ce49ea20b4d43928a9a4d4622a29c5ca39491d849432c8a894945a2ba9c4125289adb4146329a9",
    "c5d462ae29c51643492d96945a2ca9c4d6628cb5b5545327a5c592528c2595185bacb9b6d66a0ca5c4564a8bb1a4945b",
    "6b31d716638ea1a4164b2bb195945a6cb5e5d85acb35b554634aadd616638d31e5946bad3da7d6624d31d5da5aacb9d5",
    "965bccb5e74e4a6ba594164b4a31b6d6628d31e61c4a69ada4145b2929c6d65aadadc55c4329b195d25a2ca9c4d862ac",
    "b5c556636aadc6165bada5b55a6badbdc6565b2eadd5dc62ac3db5946bacb5e658536d0500000c380000049850060a0d",
    "59090044010000c630c618844629c79c93d228e59c73522ae720849052e61c841052ca9c83504a4b9973104a49299492",
    "526aad8552526aadb50200000a1c0000026cd094581ca0d0909500402a0080c171344d1455d5757d5fb12c515455d795",
    "6de3572c4d145555766d5bf835515455d7b56ddb167e4d1455557665d9b685a2aabab26ddbb26e0bc3a8aaae6bdbb26d",
    "eba8aeabdbbaaddbba2f545d59966d5bb7751dd7b675ddf6755df819b36debb66eebbef0230c47dff821e4e3fb744208",
    "00004f7000002ab061758493a2b1c0424356020019000080314a198518334831a618634c31c698000080010700800013",
    "ca40a1212b0280280000c039e79c73ce39e79c73ce39e79c73ce39e79c738e31c618638c31c618638c31c618638c31c6",
    "18638c31c618638c31c618634c00c04e8403c04e84855068c84a00201c00004008212929a594524a1153ce414929a594",
    "52aa14838c4a4a29a59452a4147594524a29a59422a5a0a492524a29a594494929a594524a29a58c3a4a29a594524a29",
    "a594524a29a594524a29a594524a29a594524a29a594524a29a594524a29a594524a29a594524a29a594524a29a59452",
    "4a29a594524a29a594524a29a5544a29a594524a29a594524a29a5140060f2e000009560e30c2b496785a3c18586ac04",
    "0072030000851883104269ada454524a2555ce41282594944a4a29959452aa9883104a2aa9a592524a29b5d24128a194",
    "504a292594524a282584104a09a19454422ba984524a07a184124229a184544a292594ce412821850e4249a594d44248",
    "1d745452292195524a2925a5943a08a19492524b2d95525a4aa974125229a995d4526aa9b5925209a1a4564a4925a5d2",
    "5a4925b5124a4925a594524b2985545249258492522a25b5965a4aa9b5d65248a99594524aa9a5d4524a25a5904a4aa9",
    "9492526a259594526a2195944a4929a4d44a29a5a4544249a9a5525a4a2db5944a49a9b4545249a594944a4929a5524a",
    "4b29a5124a4aa9a5945a49298592524a299592524b25b5544a0a25a5945249a9b494524b29959252010040070e000001",
    "46545a889d665c79048e28649880020000400040800920304050300a418030020100000000c000001f000047011011d1",
    "9cc1014282c2024383c3030000000000000000000000804f6767530004d0070000000000004536f359020000009479c5",
    "b5091b0f0f0f0f0f0f0f0fb2e329bfb74400400b83a28c8c0c801350aad12ccdd22ccd520100bee4ebe88e02003c0d00",
    "c0be250000bee4ebe88e02003c0d00c0be250000bee4ebe88e02003c0d00c0be250000bee4ebe88e02003c0d00c0be25",
    "0000bee4ebe88e02003c0d00c0be250000bee4ebe88e02003c0d00c0be250000bee4ebe88e02003c0d00c0be250000b6",
    "e3eb6f6f1400e069000014250000",
];

fn unhex(lines: &[&str]) -> Vec<u8> {
    let s: String = lines.concat();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Energy at `freq` (Goertzel) over total energy, ignoring leading and
/// trailing silence (codec delay and padding).
fn tone_fraction(pcm: &Pcm, freq: f64) -> f64 {
    let start = pcm.samples.iter().position(|v| v.abs() > 0.05).unwrap_or(0);
    let end = pcm
        .samples
        .iter()
        .rposition(|v| v.abs() > 0.05)
        .unwrap_or(0);
    let x = &pcm.samples[start..end.max(start)];
    let w = 2.0 * PI * freq / pcm.rate as f64;
    let (mut s1, mut s2) = (0f64, 0f64);
    for &v in x {
        let s0 = v as f64 + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let total: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
    2.0 * power / (x.len() as f64 * total.max(1e-12))
}

#[test]
fn mp3_and_vorbis_decode() {
    for (name, bytes, ext) in [
        ("mp3", unhex(MP3_HEX), "mp3"),
        ("ogg", unhex(OGG_HEX), "ogg"),
    ] {
        let pcm = decode_bytes(&bytes, Some(ext)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(pcm.rate, 8000, "{name}");
        assert!(
            pcm.samples.len() >= 1900,
            "{name}: {} samples",
            pcm.samples.len()
        );
        let frac = tone_fraction(&pcm, 1000.0);
        assert!(frac > 0.8, "{name}: only {frac:.2} of the energy at 1 kHz");
        // Without a hint too: the format is sniffed.
        assert_eq!(decode_bytes(&bytes, None).unwrap().rate, 8000, "{name}");
    }
}

#[test]
fn flac_decodes() {
    let bytes = include_bytes!("../media/announcements/courtesy-tone.flac");
    let pcm = decode_bytes(bytes, Some("flac")).unwrap();
    assert!(pcm.rate > 0 && !pcm.samples.is_empty());
    assert!(pcm.samples.iter().any(|s| s.abs() > 0.01), "not silent");
}

/// Decodes `bytes` from memory and from a file named `name`; both must fail
/// the same way, the file's message naming the file.
fn bad(name: &str, bytes: &[u8]) -> MediaError {
    let mem = decode_bytes(
        bytes,
        std::path::Path::new(name)
            .extension()
            .and_then(|e| e.to_str()),
    )
    .expect_err(name);
    let dir = std::env::temp_dir().join(format!("rtpark-media-codecs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let file = decode_file(&path).expect_err(name);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir(&dir);
    let msg = file.to_string();
    assert!(
        msg.starts_with(&path.display().to_string()),
        "{name}: {msg}"
    );
    assert_eq!(mem, file.clone().in_file("(memory)"), "{name}");
    file
}

#[test]
fn bad_files_fail_with_a_reason() {
    let e = bad("empty.wav", &[]);
    assert!(matches!(e, MediaError::Empty { .. }), "{e}");
    assert!(e.to_string().ends_with("contains no audio"), "{e}");

    let mut seed = 0x1234_5678u32;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8
        })
        .collect();
    let e = bad("noise.bin", &noise);
    assert!(matches!(e, MediaError::Unsupported { .. }), "{e}");
    assert!(e.to_string().contains("not a recognised audio file"), "{e}");

    let e = bad("megahertz.wav", &wav(1_000_000, 1, &[0; 800], None));
    assert_eq!(
        e.to_string().split_once(": ").unwrap().1,
        "sample rate 1000000 Hz is not supported (max 384 kHz)"
    );

    let e = bad("zero-data.wav", &wav(8000, 1, &[], None));
    assert!(matches!(e, MediaError::Empty { .. }), "{e}");

    let e = bad("zero-rate.wav", &wav(0, 1, &[0; 800], None));
    assert!(matches!(e, MediaError::BadRate { rate: 0, .. }), "{e}");

    // A WAV header cut short.
    let e = bad("cut.wav", &wav(8000, 1, &[0; 80], None)[..30]);
    assert!(matches!(e, MediaError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");

    // A FLAC signature and half a STREAMINFO block.
    let e = bad("cut.flac", b"fLaC\x00\x00\x00\x22\x10\x00\x10\x00");
    assert!(matches!(e, MediaError::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");

    // An ID3 tag and one MPEG frame header with nothing behind it.
    let mut mp3 = b"ID3\x03\x00\x00\x00\x00\x00\x10".to_vec();
    mp3.extend_from_slice(&[0; 16]);
    mp3.extend_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
    mp3.extend_from_slice(&[0; 20]);
    let e = bad("cut.mp3", &mp3);
    assert!(
        matches!(
            e,
            MediaError::Unsupported { .. } | MediaError::Corrupt { .. }
        ),
        "{e}"
    );

    // The Ogg/Vorbis file cut inside its headers.
    let e = bad("cut.ogg", &unhex(OGG_HEX)[..200]);
    assert!(matches!(e, MediaError::Corrupt { .. }), "{e}");

    // Text that happens to be named .mp3.
    let e = bad("notes.mp3", "not audio at all\n".repeat(50).as_bytes());
    assert!(matches!(e, MediaError::Unsupported { .. }), "{e}");

    // Zero channels.
    let mut zero_ch = wav(8000, 1, &[0; 80], None);
    zero_ch[22] = 0;
    let e = bad("no-channels.wav", &zero_ch);
    assert!(matches!(e, MediaError::Corrupt { .. }), "{e}");
}

#[test]
fn missing_file_names_the_path() {
    let e = decode_file(std::path::Path::new("/nonexistent/rtpark/moh.flac")).unwrap_err();
    assert!(matches!(e, MediaError::Io { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("/nonexistent/rtpark/moh.flac: cannot read the file"),
        "{e}"
    );
}

#[test]
fn mangled_files_never_panic() {
    // Flip bytes all over valid files: any outcome but a panic or a hang.
    let flac = include_bytes!("../media/announcements/courtesy-tone.flac").to_vec();
    let inputs = [
        ("wav", wav(8000, 1, &[1000; 4000], None)),
        ("flac", flac),
        ("ogg", unhex(OGG_HEX)),
        ("mp3", unhex(MP3_HEX)),
    ];
    let mut seed = 42u32;
    let mut next = move || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        seed
    };
    for (ext, original) in &inputs {
        for _ in 0..40 {
            let mut v = original.clone();
            for _ in 0..1 + next() % 8 {
                let i = next() as usize % v.len();
                v[i] = (next() >> 24) as u8;
            }
            if next() % 4 == 0 {
                v.truncate(next() as usize % v.len());
            }
            let _ = decode_bytes(&v, Some(ext));
        }
    }
}
