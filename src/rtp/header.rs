//! The RTP fixed header (RFC 3550 section 5.1), validated and rewritten in place.

use thiserror::Error;

/// Why a datagram is not a well-formed RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    #[error("shorter than the 12-byte RTP header")]
    TooShort,
    /// The version field is not 2.
    #[error("RTP version is not 2")]
    BadVersion,
    /// The CSRC list runs past the end of the datagram.
    #[error("CSRC list runs past the end of the packet")]
    TruncatedCsrc,
    /// The header extension runs past the end of the datagram.
    #[error("header extension runs past the end of the packet")]
    TruncatedExtension,
    /// The padding count is zero or larger than the payload.
    #[error("padding count is invalid")]
    BadPadding,
}

/// A validated view of an RTP packet's header; offsets into the datagram it was
/// parsed from, so it borrows nothing and costs nothing to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit.
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp, in the payload's clock rate.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Number of CSRC identifiers.
    pub csrc_count: u8,
    /// Header extension profile (`defined by profile`) if the X bit is set.
    pub extension_profile: Option<u16>,
    /// Length of the extension body in bytes (excluding its 4-byte preamble).
    pub extension_len: usize,
    /// Offset of the payload in the datagram.
    pub payload_offset: usize,
    /// Length of the payload (padding excluded).
    pub payload_len: usize,
    /// Number of padding bytes at the end (0 if the P bit is clear).
    pub padding_len: usize,
}

impl RtpHeader {
    /// Size of the fixed header.
    pub const FIXED_LEN: usize = 12;

    /// The payload (padding excluded) of `buf`, the datagram this header was parsed
    /// from; empty if `buf` is not that datagram and too short.
    #[inline]
    pub fn payload<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        self.payload_offset
            .checked_add(self.payload_len)
            .and_then(|end| buf.get(self.payload_offset..end))
            .unwrap_or(&[])
    }

    /// Whether the P bit was set (the packet ends in padding).
    #[inline]
    pub fn has_padding(&self) -> bool {
        self.padding_len != 0
    }

    /// Parses and validates the header of the RTP packet in `buf`.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<RtpHeader, RtpError> {
        if buf.len() < Self::FIXED_LEN {
            return Err(RtpError::TooShort);
        }
        let b0 = buf[0];
        if b0 >> 6 != 2 {
            return Err(RtpError::BadVersion);
        }
        let has_padding = b0 & 0x20 != 0;
        let has_extension = b0 & 0x10 != 0;
        let csrc_count = b0 & 0x0f;
        let mut offset = Self::FIXED_LEN + 4 * csrc_count as usize;
        if offset > buf.len() {
            return Err(RtpError::TruncatedCsrc);
        }
        let (extension_profile, extension_len) = if has_extension {
            if offset + 4 > buf.len() {
                return Err(RtpError::TruncatedExtension);
            }
            let profile = u16::from_be_bytes([buf[offset], buf[offset + 1]]);
            let words = u16::from_be_bytes([buf[offset + 2], buf[offset + 3]]) as usize;
            offset += 4;
            if offset + 4 * words > buf.len() {
                return Err(RtpError::TruncatedExtension);
            }
            offset += 4 * words;
            (Some(profile), 4 * words)
        } else {
            (None, 0)
        };
        let padding_len = if has_padding {
            // unwrap-free: buf.len() >= offset >= 12 here, so the last byte exists.
            let count = buf[buf.len() - 1] as usize;
            if count == 0 || offset + count > buf.len() {
                return Err(RtpError::BadPadding);
            }
            count
        } else {
            0
        };
        Ok(RtpHeader {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7f,
            sequence: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            csrc_count,
            extension_profile,
            extension_len,
            payload_offset: offset,
            payload_len: buf.len() - offset - padding_len,
            padding_len,
        })
    }
}

/// Overwrites the sequence number of the RTP packet in `buf`; a no-op on fewer than 12 bytes.
#[inline]
pub fn set_sequence(buf: &mut [u8], seq: u16) {
    if let Some(field) = buf.get_mut(2..4) {
        field.copy_from_slice(&seq.to_be_bytes());
    }
}

/// Overwrites the timestamp of the RTP packet in `buf`; a no-op on fewer than 12 bytes.
#[inline]
pub fn set_timestamp(buf: &mut [u8], ts: u32) {
    if let Some(field) = buf.get_mut(4..8) {
        field.copy_from_slice(&ts.to_be_bytes());
    }
}

/// Overwrites the SSRC of the RTP packet in `buf`; a no-op on fewer than 12 bytes.
#[inline]
pub fn set_ssrc(buf: &mut [u8], ssrc: u32) {
    if let Some(field) = buf.get_mut(8..12) {
        field.copy_from_slice(&ssrc.to_be_bytes());
    }
}

/// Sets or clears the marker bit of the RTP packet in `buf`; a no-op on fewer than 2 bytes.
#[inline]
pub fn set_marker(buf: &mut [u8], marker: bool) {
    if let Some(b1) = buf.get_mut(1) {
        *b1 = (*b1 & 0x7f) | if marker { 0x80 } else { 0 };
    }
}

/// Overwrites the payload type of the RTP packet in `buf` (7 bits, the marker is kept);
/// a no-op on fewer than 2 bytes.
#[inline]
pub fn set_payload_type(buf: &mut [u8], payload_type: u8) {
    if let Some(b1) = buf.get_mut(1) {
        *b1 = (*b1 & 0x80) | (payload_type & 0x7f);
    }
}

/// Writes a 12-byte fixed header (V=2, no padding, extension or CSRC) at the start of
/// `buf`; returns 12, or `None` (nothing written) if `buf` is shorter.
#[inline]
pub fn write_fixed_header(
    buf: &mut [u8],
    marker: bool,
    payload_type: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
) -> Option<usize> {
    let out = buf.get_mut(..RtpHeader::FIXED_LEN)?;
    out[0] = 0x80;
    out[1] = (payload_type & 0x7f) | if marker { 0x80 } else { 0 };
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[4..8].copy_from_slice(&ts.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
    Some(RtpHeader::FIXED_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PCMU packet: V=2, PT=0, seq=0x1234, ts=0xdeadbeef, ssrc=0x01020304, 4 bytes payload.
    const PCMU: [u8; 16] = [
        0x80, 0x00, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 0xff, 0xff, 0xff,
        0xff,
    ];

    #[test]
    fn parses_fixed_header() {
        let h = RtpHeader::parse(&PCMU).unwrap();
        assert_eq!(h.payload_type, 0);
        assert_eq!(h.sequence, 0x1234);
        assert_eq!(h.timestamp, 0xdead_beef);
        assert_eq!(h.ssrc, 0x0102_0304);
        assert_eq!(h.payload_offset, 12);
        assert_eq!(h.payload_len, 4);
        assert!(!h.marker);
    }

    #[test]
    fn rewrites_in_place() {
        let mut p = PCMU;
        set_sequence(&mut p, 7);
        set_timestamp(&mut p, 8);
        set_ssrc(&mut p, 9);
        set_marker(&mut p, true);
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!((h.sequence, h.timestamp, h.ssrc, h.marker), (7, 8, 9, true));
        assert_eq!(h.payload_type, 0);
    }

    #[test]
    fn rejects_short_and_wrong_version() {
        assert_eq!(RtpHeader::parse(&PCMU[..11]), Err(RtpError::TooShort));
        let mut p = PCMU;
        p[0] = 0x40;
        assert_eq!(RtpHeader::parse(&p), Err(RtpError::BadVersion));
    }

    /// RFC 3550 section 5.1 with every optional part: V=2 P=1 X=1 CC=2, M=1 PT=96,
    /// seq and timestamp at their maximum, two CSRCs, a one-word RFC 8285 one-byte
    /// extension, 3 payload bytes and 3 padding bytes (count in the last byte).
    const FULL: [u8; 34] = [
        0xb2, 0xe0, 0xff, 0xff, // V P X CC, M PT, sequence
        0xff, 0xff, 0xff, 0xff, // timestamp
        0xca, 0xfe, 0xba, 0xbe, // SSRC
        0x11, 0x11, 0x11, 0x11, // CSRC 1
        0x22, 0x22, 0x22, 0x22, // CSRC 2
        0xbe, 0xde, 0x00, 0x01, // extension profile, length in words
        0x10, 0xaa, 0x00, 0x00, // extension body: id 1, len 0, value, padding
        0x01, 0x02, 0x03, // payload
        0x00, 0x00, 0x03, // padding, count
    ];

    #[test]
    fn parses_every_optional_part() {
        let h = RtpHeader::parse(&FULL).unwrap();
        assert_eq!(
            h,
            RtpHeader {
                marker: true,
                payload_type: 96,
                sequence: 0xffff,
                timestamp: 0xffff_ffff,
                ssrc: 0xcafe_babe,
                csrc_count: 2,
                extension_profile: Some(0xbede),
                extension_len: 4,
                payload_offset: 28,
                payload_len: 3,
                padding_len: 3,
            }
        );
        assert_eq!(h.payload(&FULL), &[1, 2, 3]);
        assert!(h.has_padding());
    }

    #[test]
    fn rewrite_wraps_at_the_edges_and_keeps_the_rest() {
        let mut p = FULL;
        set_sequence(&mut p, 0xffffu16.wrapping_add(1));
        set_timestamp(&mut p, 0xffff_ffffu32.wrapping_add(160));
        set_marker(&mut p, false);
        set_payload_type(&mut p, 0);
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(
            (h.sequence, h.timestamp, h.marker, h.payload_type),
            (0, 159, false, 0)
        );
        assert_eq!(p[12..], FULL[12..]);
        assert_eq!(p[0], FULL[0]);
    }

    #[test]
    fn rejects_truncated_csrc_extension_and_bad_padding() {
        let mut p = FULL;
        p[0] = 0x8f; // CC=15: 72 bytes of header in a 34-byte packet
        assert_eq!(RtpHeader::parse(&p), Err(RtpError::TruncatedCsrc));
        assert_eq!(
            RtpHeader::parse(&FULL[..22]),
            Err(RtpError::TruncatedExtension)
        );
        let mut p = FULL;
        p[23] = 9; // extension length of 9 words
        assert_eq!(RtpHeader::parse(&p), Err(RtpError::TruncatedExtension));
        let mut p = FULL;
        p[33] = 0;
        assert_eq!(RtpHeader::parse(&p), Err(RtpError::BadPadding));
        p[33] = 7; // more than the 6 bytes after the extension
        assert_eq!(RtpHeader::parse(&p), Err(RtpError::BadPadding));
        p[33] = 6; // padding may eat the whole payload
        assert_eq!(RtpHeader::parse(&p).map(|h| h.payload_len), Ok(0));
    }

    #[test]
    fn every_prefix_parses_or_errors() {
        for len in 0..FULL.len() {
            let _ = RtpHeader::parse(&FULL[..len]);
        }
        assert_eq!(RtpHeader::parse(&[]), Err(RtpError::TooShort));
    }

    #[test]
    fn setters_ignore_short_buffers() {
        let mut short = [0x80u8, 0x00, 0x01];
        set_sequence(&mut short, 7);
        set_timestamp(&mut short, 7);
        set_ssrc(&mut short, 7);
        set_marker(&mut [], true);
        set_payload_type(&mut [], 1);
        assert_eq!(short, [0x80, 0x00, 0x01]);
    }

    #[test]
    fn writes_a_fixed_header() {
        let mut p = [0u8; 14];
        assert_eq!(
            write_fixed_header(&mut p, true, 8, 0xabcd, 0x0102_0304, 0xdead_beef),
            Some(12)
        );
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(
            (
                h.marker,
                h.payload_type,
                h.sequence,
                h.timestamp,
                h.ssrc,
                h.payload_len
            ),
            (true, 8, 0xabcd, 0x0102_0304, 0xdead_beef, 2)
        );
        assert_eq!(write_fixed_header(&mut [0u8; 11], false, 0, 0, 0, 0), None);
    }
}
