//! Band-limited resampling of a whole mono clip (offline), for any pair of rates.
//!
//! A Kaiser-windowed sinc, evaluated as a polyphase filter bank: when the rate
//! ratio reduces to at most 2048 phases, every output sample uses an exact
//! phase; otherwise coefficients are interpolated between 1024 precomputed
//! phases. The kernel is symmetric and centred on each output instant, so there
//! is no delay to compensate: output sample `n` is the input signal at time
//! `n / to`. When downsampling, the cut-off follows the output rate, so content
//! above its Nyquist frequency is removed instead of aliasing.

/// Zero crossings of the sinc on each side of the centre, in periods of the
/// lower of the two rates.
const HALF_ZEROS: usize = 32;
/// Pass-band edge as a fraction of the lower rate's Nyquist frequency.
const CUTOFF: f64 = 0.95;
/// Kaiser window β: about 85 dB of stop-band rejection.
const KAISER_BETA: f64 = 8.6;
/// Largest number of exact phases (`to / gcd(from, to)`) tabulated.
const MAX_EXACT_PHASES: u64 = 2048;
/// Phases tabulated for ratios with more phases than that.
const INTERP_PHASES: usize = 1024;

/// Resamples `input` from `from` Hz to `to` Hz. Returns exactly
/// `round(input.len() * to / from)` samples; the input itself when the rates
/// are equal, and nothing when either rate is 0.
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to {
        return input.to_vec();
    }
    if from == 0 || to == 0 || input.is_empty() {
        return Vec::new();
    }
    let g = gcd(from as u64, to as u64);
    let up = to as u64 / g;
    let down = from as u64 / g;
    let out_len = output_len(input.len(), from, to);
    let bank = FilterBank::new(from, to, up);
    let mut out = Vec::with_capacity(out_len);
    let mut taps = vec![0f32; bank.taps];
    for n in 0..out_len as u64 {
        // Output n sits at input position n * down / up = base + phase / up.
        let pos = n * down;
        let base = (pos / up) as i64;
        let phase = pos % up;
        let coefs: &[f32] = if bank.exact {
            bank.phase(phase as usize)
        } else {
            bank.interpolate(phase as f64 / up as f64, &mut taps);
            &taps
        };
        // Tap j multiplies input[base - half + 1 + j].
        let first = base - bank.half as i64 + 1;
        out.push(dot_clamped(input, first, coefs));
    }
    out
}

/// `round(len * to / from)`.
pub fn output_len(len: usize, from: u32, to: u32) -> usize {
    if from == 0 {
        return 0;
    }
    ((len as u128 * to as u128 * 2 + from as u128) / (from as u128 * 2)) as usize
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Filter coefficients, one row of `taps` per phase.
struct FilterBank {
    /// Taps on each side of the centre.
    half: usize,
    /// Taps per phase (`2 * half`).
    taps: usize,
    /// Rows are the exact phases `p / up`; otherwise `INTERP_PHASES + 1` rows
    /// at `p / INTERP_PHASES` for interpolation.
    exact: bool,
    rows: usize,
    coefs: Vec<f32>,
}

impl FilterBank {
    fn new(from: u32, to: u32, up: u64) -> Self {
        // Kernel scale: 1 when upsampling, to/from when downsampling.
        let scale = (to as f64 / from as f64).min(1.0);
        let half = (HALF_ZEROS as f64 / scale).ceil() as usize;
        let taps = 2 * half;
        let exact = up <= MAX_EXACT_PHASES;
        let rows = if exact {
            up as usize
        } else {
            INTERP_PHASES + 1
        };
        let mut coefs = vec![0f32; rows * taps];
        let mut row = vec![0f64; taps];
        for r in 0..rows {
            let frac = if exact {
                r as f64 / up as f64
            } else {
                r as f64 / INTERP_PHASES as f64
            };
            // Tap j sits at input offset (j + 1 - half) from `base`; the output
            // instant is at `frac` past `base`.
            let mut sum = 0.0;
            for (j, c) in row.iter_mut().enumerate() {
                let x = (j as f64 + 1.0 - half as f64) - frac;
                *c = kernel(x * scale);
                sum += *c;
            }
            // Unity gain at DC for every phase (no phase-dependent ripple).
            for (j, c) in row.iter().enumerate() {
                coefs[r * taps + j] = (c / sum) as f32;
            }
        }
        FilterBank {
            half,
            taps,
            exact,
            rows,
            coefs,
        }
    }

    fn phase(&self, p: usize) -> &[f32] {
        &self.coefs[p * self.taps..(p + 1) * self.taps]
    }

    /// Coefficients for fractional position `frac` in [0, 1), linearly
    /// interpolated between neighbouring tabulated phases.
    fn interpolate(&self, frac: f64, out: &mut [f32]) {
        let pos = frac * INTERP_PHASES as f64;
        let i = (pos as usize).min(self.rows - 2);
        let a = (pos - i as f64) as f32;
        let (lo, hi) = (self.phase(i), self.phase(i + 1));
        for ((o, l), h) in out.iter_mut().zip(lo).zip(hi) {
            *o = l + a * (h - l);
        }
    }
}

/// Windowed sinc at `u` periods of the lower rate from the centre (unnormalised).
fn kernel(u: f64) -> f64 {
    let half = HALF_ZEROS as f64;
    if u.abs() >= half {
        return 0.0;
    }
    let arg = std::f64::consts::PI * CUTOFF * u;
    let sinc = if arg.abs() < 1e-12 {
        1.0
    } else {
        arg.sin() / arg
    };
    let r = u / half;
    let window = bessel_i0(KAISER_BETA * (1.0 - r * r).sqrt()) / bessel_i0(KAISER_BETA);
    sinc * window
}

/// Modified Bessel function of the first kind, order 0 (power series).
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..64 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// Σ coefs[j] · input[first + j], with samples outside the input taken as 0.
fn dot_clamped(input: &[f32], first: i64, coefs: &[f32]) -> f32 {
    let len = input.len() as i64;
    let last = first + coefs.len() as i64;
    if first >= 0 && last <= len {
        return dot(&input[first as usize..last as usize], coefs);
    }
    let lo = first.max(0);
    let hi = last.min(len);
    if lo >= hi {
        return 0.0;
    }
    let c0 = (lo - first) as usize;
    dot(
        &input[lo as usize..hi as usize],
        &coefs[c0..c0 + (hi - lo) as usize],
    )
}

/// Dot product in four independent lanes. An indexed loop rather than
/// iterator adaptors: those are not inlined in debug builds, where they made
/// the embedded media take many times longer to encode.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 4];
    let mut i = 0;
    while i + 4 <= n {
        acc[0] += a[i] * b[i];
        acc[1] += a[i + 1] * b[i + 1];
        acc[2] += a[i + 2] * b[i + 2];
        acc[3] += a[i + 3] * b[i + 3];
        i += 4;
    }
    let mut sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    while i < n {
        sum += a[i] * b[i];
        i += 1;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn sine(rate: u32, freq: f64, secs: f64, amp: f64) -> Vec<f32> {
        let n = (rate as f64 * secs) as usize;
        (0..n)
            .map(|i| (amp * (2.0 * PI * freq * i as f64 / rate as f64).sin()) as f32)
            .collect()
    }

    /// RMS of the middle of a signal (skipping edge transients).
    fn rms_mid(x: &[f32]) -> f64 {
        let skip = x.len() / 5;
        let mid = &x[skip..x.len() - skip];
        (mid.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / mid.len() as f64).sqrt()
    }

    #[test]
    fn identity_returns_input() {
        let x = sine(8000, 1000.0, 0.1, 0.5);
        assert_eq!(resample(&x, 8000, 8000), x);
    }

    #[test]
    fn lengths_are_rounded() {
        assert_eq!(output_len(44100, 44100, 8000), 8000);
        assert_eq!(output_len(441, 44100, 8000), 80);
        assert_eq!(output_len(1, 48000, 8000), 0);
        assert_eq!(output_len(3, 48000, 8000), 1);
        for (len, from, to) in [
            (1000, 44100, 8000),
            (999, 8000, 48000),
            (12345, 22050, 16000),
            (777, 44101, 8000),
        ] {
            let x = vec![0.1f32; len];
            assert_eq!(resample(&x, from, to).len(), output_len(len, from, to));
        }
        assert!(resample(&[1.0], 0, 8000).is_empty());
    }

    #[test]
    fn sine_keeps_amplitude_and_phase_44k1_to_8k() {
        let x = sine(44100, 1000.0, 1.0, 0.5);
        let y = resample(&x, 44100, 8000);
        assert_eq!(y.len(), 8000);
        let gain_db = 20.0 * (rms_mid(&y) / rms_mid(&x)).log10();
        assert!(gain_db.abs() < 0.5, "gain {gain_db} dB");
        // In phase: the output matches the ideal 8 kHz sine sample by sample.
        let ideal = sine(8000, 1000.0, 1.0, 0.5);
        for n in 400..7600 {
            assert!(
                (y[n] - ideal[n]).abs() < 0.01,
                "n={n}: {} vs {}",
                y[n],
                ideal[n]
            );
        }
    }

    #[test]
    fn upsampling_stays_in_phase() {
        for (from, to) in [(8000, 48000), (8000, 16000), (22050, 48000), (44101, 48000)] {
            let x = sine(from, 440.0, 0.5, 0.5);
            let y = resample(&x, from, to);
            let ideal = sine(to, 440.0, 0.5, 0.5);
            let n = y.len().min(ideal.len());
            for i in n / 5..n * 4 / 5 {
                assert!(
                    (y[i] - ideal[i]).abs() < 0.01,
                    "{from}->{to} i={i}: {} vs {}",
                    y[i],
                    ideal[i]
                );
            }
        }
    }

    #[test]
    fn aliases_are_rejected_48k_to_8k() {
        // 6 kHz is above the 4 kHz Nyquist of 8 kHz: it must not fold to 2 kHz.
        let x = sine(48000, 6000.0, 1.0, 0.5);
        let y = resample(&x, 48000, 8000);
        let atten_db = 20.0 * (rms_mid(&y) / rms_mid(&x)).log10();
        assert!(atten_db < -40.0, "only {atten_db} dB");
    }

    #[test]
    fn aliases_are_rejected_with_interpolated_phases() {
        // 44101/8000 has 8000 phases: the interpolated path.
        let x = sine(44101, 5000.0, 0.5, 0.5);
        let y = resample(&x, 44101, 8000);
        let atten_db = 20.0 * (rms_mid(&y) / rms_mid(&x)).log10();
        assert!(atten_db < -40.0, "only {atten_db} dB");
        let x = sine(44101, 1000.0, 0.5, 0.5);
        let y = resample(&x, 44101, 8000);
        let gain_db = 20.0 * (rms_mid(&y) / rms_mid(&x)).log10();
        assert!(gain_db.abs() < 0.5, "gain {gain_db} dB");
    }

    #[test]
    fn dc_is_preserved() {
        let x = vec![0.25f32; 4410];
        let y = resample(&x, 44100, 16000);
        for v in &y[200..y.len() - 200] {
            assert!((v - 0.25).abs() < 1e-4, "{v}");
        }
    }
}
