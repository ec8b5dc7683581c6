//! Static RTP payload types (RFC 3551 section 6, tables 4 and 5).

use super::Rtpmap;

/// Encoding name, clock rate and channels of the static payload types.
const STATIC: &[(u8, &str, u32, u8)] = &[
    (0, "PCMU", 8000, 1),
    (3, "GSM", 8000, 1),
    (4, "G723", 8000, 1),
    (5, "DVI4", 8000, 1),
    (6, "DVI4", 16000, 1),
    (7, "LPC", 8000, 1),
    (8, "PCMA", 8000, 1),
    (9, "G722", 8000, 1),
    (10, "L16", 44100, 2),
    (11, "L16", 44100, 1),
    (12, "QCELP", 8000, 1),
    (13, "CN", 8000, 1),
    (14, "MPA", 90000, 1),
    (15, "G728", 8000, 1),
    (16, "DVI4", 11025, 1),
    (17, "DVI4", 22050, 1),
    (18, "G729", 8000, 1),
    (25, "CelB", 90000, 1),
    (26, "JPEG", 90000, 1),
    (28, "nv", 90000, 1),
    (31, "H261", 90000, 1),
    (32, "MPV", 90000, 1),
    (33, "MP2T", 90000, 1),
    (34, "H263", 90000, 1),
];

/// The RFC 3551 encoding of a static payload type, if `pt` is one.
pub fn static_rtpmap(pt: u8) -> Option<Rtpmap> {
    STATIC
        .iter()
        .find(|&&(p, ..)| p == pt)
        .map(|&(pt, name, rate, channels)| Rtpmap {
            pt,
            name: name.to_owned(),
            rate,
            channels,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_table_knows_the_common_voice_codecs() {
        let name = |pt| static_rtpmap(pt).map(|m| (m.name, m.rate, m.channels));
        assert_eq!(name(0), Some(("PCMU".into(), 8000, 1)));
        assert_eq!(name(8), Some(("PCMA".into(), 8000, 1)));
        assert_eq!(name(9), Some(("G722".into(), 8000, 1)));
        assert_eq!(name(18), Some(("G729".into(), 8000, 1)));
        assert_eq!(name(10), Some(("L16".into(), 44100, 2)));
        assert_eq!(name(2), None, "PT 2 is reserved");
        assert_eq!(name(96), None, "dynamic");
    }
}
