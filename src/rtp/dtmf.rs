//! RFC 4733 telephone-event payloads (DTMF digits and other named events).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     event     |E|R| volume    |          duration             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! A payload may carry several 4-byte event blocks (RFC 4733 section 2.5.1.5);
//! [`events`] walks them all, [`TelephoneEvent::parse`] reads the first.

use thiserror::Error;

/// Why a payload is not a telephone-event payload, or a buffer cannot take one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DtmfError {
    /// Fewer than the 4 bytes of an event block.
    #[error("telephone-event payload is shorter than 4 bytes")]
    TooShort,
}

/// One telephone-event block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TelephoneEvent {
    /// Event code (0–9 digits, 10 `*`, 11 `#`, 12–15 `A`–`D`, others per the IANA registry).
    pub event: u8,
    /// E bit: this packet ends the event.
    pub end: bool,
    /// Power level in −dBm0 (0–63); meaningful for DTMF, 0 for other events.
    pub volume: u8,
    /// Duration so far, in timestamp units, counted from the event's RTP timestamp.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Size of one event block.
    pub const LEN: usize = 4;

    /// Reads the first event block of `payload` (the reserved bit is ignored).
    #[inline]
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, DtmfError> {
        let Some(b) = payload.get(..Self::LEN) else {
            return Err(DtmfError::TooShort);
        };
        Ok(TelephoneEvent {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3f,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    /// Writes the block into the start of `buf` (reserved bit 0, volume masked to
    /// 6 bits); returns 4.
    #[inline]
    pub fn write_to(&self, buf: &mut [u8]) -> Result<usize, DtmfError> {
        let Some(out) = buf.get_mut(..Self::LEN) else {
            return Err(DtmfError::TooShort);
        };
        out[0] = self.event;
        out[1] = (self.volume & 0x3f) | if self.end { 0x80 } else { 0 };
        out[2..4].copy_from_slice(&self.duration.to_be_bytes());
        Ok(Self::LEN)
    }

    /// The DTMF digit this event stands for (`0`–`9`, `*`, `#`, `A`–`D`), if any.
    #[inline]
    pub fn digit(&self) -> Option<char> {
        event_to_digit(self.event)
    }
}

/// The DTMF digit of event code `event` (`0`–`9`, `*`, `#`, `A`–`D`), if it is one.
#[inline]
pub fn event_to_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// The event code of DTMF digit `digit` (`a`–`d` accepted as `A`–`D`), if it is one.
#[inline]
pub fn digit_to_event(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

/// Every complete event block of `payload`, in order; a trailing partial block is ignored.
#[inline]
pub fn events(payload: &[u8]) -> impl Iterator<Item = TelephoneEvent> + '_ {
    payload
        .chunks_exact(TelephoneEvent::LEN)
        .filter_map(|b| TelephoneEvent::parse(b).ok())
}

/// Sets the duration of the first event block of `payload` in place.
#[inline]
pub fn set_duration(payload: &mut [u8], duration: u16) -> Result<(), DtmfError> {
    let Some(field) = payload.get_mut(2..4) else {
        return Err(DtmfError::TooShort);
    };
    field.copy_from_slice(&duration.to_be_bytes());
    Ok(())
}

/// Sets or clears the end bit of the first event block of `payload` in place.
#[inline]
pub fn set_end(payload: &mut [u8], end: bool) -> Result<(), DtmfError> {
    let Some(b1) = payload.get_mut(1) else {
        return Err(DtmfError::TooShort);
    };
    *b1 = (*b1 & 0x7f) | if end { 0x80 } else { 0 };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtpHeader;

    #[test]
    fn parses_the_figure_1_layout() {
        // Digit 5, E=1, R=0, volume 10 (−10 dBm0), duration 1760 (220 ms at 8 kHz).
        let payload = [0x05, 0x8a, 0x06, 0xe0];
        let ev = TelephoneEvent::parse(&payload).unwrap();
        assert_eq!(
            ev,
            TelephoneEvent {
                event: 5,
                end: true,
                volume: 10,
                duration: 1760
            }
        );
        assert_eq!(ev.digit(), Some('5'));
        let mut out = [0u8; 4];
        assert_eq!(ev.write_to(&mut out), Ok(4));
        assert_eq!(out, payload);
    }

    #[test]
    fn ignores_reserved_bit_and_masks_volume_on_write() {
        let ev = TelephoneEvent::parse(&[11, 0x7f, 0, 160]).unwrap();
        assert_eq!((ev.end, ev.volume, ev.duration), (false, 63, 160));
        let loud = TelephoneEvent {
            event: 1,
            end: false,
            volume: 0xff,
            duration: 0,
        };
        let mut out = [0u8; 4];
        loud.write_to(&mut out).unwrap();
        assert_eq!(out[1], 0x3f);
    }

    #[test]
    fn short_payloads_are_errors() {
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), Err(DtmfError::TooShort));
        assert_eq!(
            TelephoneEvent::default().write_to(&mut [0; 3]),
            Err(DtmfError::TooShort)
        );
        assert_eq!(set_duration(&mut [0; 3], 1), Err(DtmfError::TooShort));
        assert_eq!(set_end(&mut [], true), Err(DtmfError::TooShort));
        assert_eq!(events(&[1, 2, 3]).count(), 0);
    }

    #[test]
    fn digit_codes_both_ways() {
        let all = "0123456789*#ABCD";
        for (code, digit) in all.chars().enumerate() {
            assert_eq!(digit_to_event(digit), Some(code as u8));
            assert_eq!(event_to_digit(code as u8), Some(digit));
        }
        assert_eq!(digit_to_event('d'), Some(15));
        assert_eq!(digit_to_event('E'), None);
        assert_eq!(event_to_digit(16), None);
    }

    /// An event's life in the RFC 4733 section 2.5 style: one timestamp, growing
    /// duration, the end packet sent three times (8 kHz, 20 ms packets, digit 9).
    #[test]
    fn event_lifecycle_in_rtp_packets() {
        let mut durations = Vec::new();
        let mut packet = [0u8; 16];
        for (i, (duration, end)) in [
            (160, false),
            (320, false),
            (480, false),
            (640, true),
            (640, true),
            (640, true),
        ]
        .into_iter()
        .enumerate()
        {
            crate::rtp::header::write_fixed_header(
                &mut packet,
                i == 0,
                101,
                1000 + i as u16,
                48000,
                7,
            )
            .unwrap();
            let ev = TelephoneEvent {
                event: 9,
                end,
                volume: 7,
                duration,
            };
            ev.write_to(&mut packet[12..]).unwrap();
            let h = RtpHeader::parse(&packet).unwrap();
            assert_eq!(
                h.timestamp, 48000,
                "every packet of an event carries its start timestamp"
            );
            assert_eq!(h.marker, i == 0, "only the first packet is marked");
            let back = TelephoneEvent::parse(h.payload(&packet)).unwrap();
            assert_eq!(back, ev);
            durations.push((back.duration, back.end));
        }
        assert_eq!(durations.iter().filter(|d| d.1).count(), 3);
    }

    #[test]
    fn multiple_blocks_and_in_place_updates() {
        // Two events in one payload (section 2.5.1.5): a finished '1' then an ongoing '2'.
        let mut payload = [0x01, 0x8a, 0x03, 0x20, 0x02, 0x0a, 0x00, 0xa0, 0xff];
        let evs: Vec<_> = events(&payload).collect();
        assert_eq!(evs.len(), 2);
        assert_eq!((evs[0].event, evs[0].end, evs[0].duration), (1, true, 800));
        assert_eq!((evs[1].event, evs[1].end, evs[1].duration), (2, false, 160));
        set_duration(&mut payload, 960).unwrap();
        set_end(&mut payload, false).unwrap();
        let first = TelephoneEvent::parse(&payload).unwrap();
        assert_eq!((first.end, first.volume, first.duration), (false, 10, 960));
    }
}
