//! G.711 (ITU-T): µ-law (PCMU) and A-law (PCMA), 16-bit linear ↔ 8-bit codes.
//!
//! Encoders follow the ITU software tools' convention for negative input
//! (one's complement before truncation), so that quantisation is symmetric
//! around zero: +1 and -1 both become "zero" codes.

/// Encodes one sample as µ-law.
pub fn ulaw_encode(x: i16) -> u8 {
    // Magnitude on 14 bits, one's complement for negatives; then bias by 33.
    let (sign, mag) = if x < 0 {
        (0x80u8, (!x as i32) >> 2)
    } else {
        (0u8, x as i32 >> 2)
    };
    let biased = (mag + 33).min(0x1FFF);
    // Segment = position of the leading one above bit 5 (biased ≥ 32).
    let seg = (31 - (biased as u32).leading_zeros()) as i32 - 5;
    let mantissa = ((biased >> (seg + 1)) & 0x0F) as u8;
    !(sign | ((seg as u8) << 4) | mantissa)
}

/// Decodes one µ-law code.
pub fn ulaw_decode(code: u8) -> i16 {
    let c = !code;
    let seg = (c >> 4) & 0x07;
    let mantissa = (c & 0x0F) as i32;
    let mag = (((mantissa << 3) + 0x84) << seg) - 0x84;
    if c & 0x80 != 0 {
        -mag as i16
    } else {
        mag as i16
    }
}

/// Encodes one sample as A-law.
pub fn alaw_encode(x: i16) -> u8 {
    // Magnitude on 12 bits, one's complement for negatives.
    let (sign, mag) = if x < 0 {
        (0u8, (!x as i32) >> 4)
    } else {
        (0x80u8, x as i32 >> 4)
    };
    let code = if mag < 16 {
        mag as u8
    } else {
        // Segment 1 holds 16..31, each further segment doubles the range.
        let seg = (31 - (mag as u32).leading_zeros()) as i32 - 3;
        let mantissa = ((mag >> (seg - 1)) & 0x0F) as u8;
        ((seg as u8) << 4) | mantissa
    };
    (sign | code) ^ 0x55
}

/// Decodes one A-law code.
pub fn alaw_decode(code: u8) -> i16 {
    let c = code ^ 0x55;
    let seg = ((c >> 4) & 0x07) as i32;
    let mut mantissa = (c & 0x0F) as i32;
    if seg > 0 {
        mantissa += 16;
    }
    // Reconstruct at the middle of the interval.
    let mut mag = (mantissa << 4) + 8;
    if seg > 1 {
        mag <<= seg - 1;
    }
    if c & 0x80 != 0 {
        mag as i16
    } else {
        -mag as i16
    }
}

/// µ-law encodes `pcm`, appending one byte per sample to `out`.
pub fn encode_ulaw(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&x| ulaw_encode(x)));
}

/// A-law encodes `pcm`, appending one byte per sample to `out`.
pub fn encode_alaw(pcm: &[i16], out: &mut Vec<u8>) {
    out.extend(pcm.iter().map(|&x| alaw_encode(x)));
}

/// Decodes µ-law bytes.
pub fn decode_ulaw(codes: &[u8]) -> Vec<i16> {
    codes.iter().map(|&c| ulaw_decode(c)).collect()
}

/// Decodes A-law bytes.
pub fn decode_alaw(codes: &[u8]) -> Vec<i16> {
    codes.iter().map(|&c| alaw_decode(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_code_points() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(1), 0xFF);
        assert_eq!(ulaw_encode(-1), 0x7F);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        // Smallest non-zero steps: ±8.
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_decode(0x7E), -8);
        assert_eq!(ulaw_encode(8), 0xFE);
        assert_eq!(ulaw_encode(-8), 0x7E);
    }

    #[test]
    fn alaw_code_points() {
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
    }

    #[test]
    fn every_code_round_trips() {
        for c in 0..=255u8 {
            // µ-law has two zeros; -0 (0x7F) comes back as +0 (0xFF).
            let want = if c == 0x7F { 0xFF } else { c };
            assert_eq!(ulaw_encode(ulaw_decode(c)), want, "µ-law {c:#04x}");
            assert_eq!(alaw_encode(alaw_decode(c)), c, "A-law {c:#04x}");
        }
    }

    #[test]
    fn decoding_is_odd_symmetric() {
        for c in 0..=127u8 {
            assert_eq!(ulaw_decode(c), -ulaw_decode(c | 0x80));
            assert_eq!(alaw_decode(c ^ 0x55), -alaw_decode((c | 0x80) ^ 0x55));
        }
    }

    #[test]
    fn error_is_bounded_by_the_step() {
        for x in i16::MIN..=i16::MAX {
            let a = x as i32;
            if a.abs() <= 32000 {
                let eu = (ulaw_decode(ulaw_encode(x)) as i32 - a).abs();
                assert!(eu <= a.abs() / 32 + 9, "µ-law {x}: error {eu}");
            }
            let ea = (alaw_decode(alaw_encode(x)) as i32 - a).abs();
            assert!(ea <= a.abs() / 32 + 16, "A-law {x}: error {ea}");
        }
    }

    #[test]
    fn codes_are_monotonic() {
        let mut prev_u = i32::MIN;
        let mut prev_a = i32::MIN;
        for x in (i16::MIN..=i16::MAX).step_by(7) {
            let u = ulaw_decode(ulaw_encode(x)) as i32;
            let a = alaw_decode(alaw_encode(x)) as i32;
            assert!(u >= prev_u && a >= prev_a, "{x}");
            prev_u = u;
            prev_a = a;
        }
    }
}
