//! RTCP compound packets (RFC 3550 section 6, RFC 4585 section 6): a walk over a
//! datagram yielding typed, validated views, and the in-place rewrites a relay needs
//! to keep RTCP consistent with the RTP it rewrites.
//!
//! Every length and count field is checked against the bytes actually present when a
//! packet is parsed, so the accessors of a view cannot run past its end. Nothing here
//! allocates or panics.

use std::iter::FusedIterator;
use std::slice::ChunksExact;
use thiserror::Error;

/// Packet type of a sender report.
pub const PT_SR: u8 = 200;
/// Packet type of a receiver report.
pub const PT_RR: u8 = 201;
/// Packet type of source description.
pub const PT_SDES: u8 = 202;
/// Packet type of goodbye.
pub const PT_BYE: u8 = 203;
/// Packet type of application-defined.
pub const PT_APP: u8 = 204;
/// Packet type of transport-layer feedback (RFC 4585).
pub const PT_RTPFB: u8 = 205;
/// Packet type of payload-specific feedback (RFC 4585).
pub const PT_PSFB: u8 = 206;
/// Packet type of extended reports (RFC 3611).
pub const PT_XR: u8 = 207;

/// Why a datagram is not a well-formed RTCP compound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtcpError {
    /// Fewer than 4 bytes where an RTCP header should start (or an empty datagram).
    #[error("fewer than 4 bytes left for an RTCP header")]
    TooShort,
    /// The version field is not 2.
    #[error("RTCP version is not 2")]
    BadVersion,
    /// The length field points past the end of the datagram.
    #[error("RTCP length field runs past the end of the datagram")]
    LengthPastEnd,
    /// The padding count is zero or eats into the header.
    #[error("RTCP padding count is invalid")]
    BadPadding,
    /// The packet is shorter than its fixed fields or what its count field announces.
    #[error("RTCP packet of type {packet_type} is shorter than its fields and count announce")]
    Truncated {
        /// The packet type whose body is too short.
        packet_type: u8,
    },
    /// An SDES chunk or item runs past the end of its packet.
    #[error("RTCP SDES chunk or item runs past the end of the packet")]
    BadSdes,
    /// An SR-only rewrite was asked of another packet type.
    #[error("not an RTCP sender report")]
    NotSenderReport,
}

#[inline]
fn be_u32(buf: &[u8], at: usize) -> u32 {
    match buf.get(at..at.saturating_add(4)) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

#[inline]
fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    if let Some(field) = buf.get_mut(at..at.saturating_add(4)) {
        field.copy_from_slice(&v.to_be_bytes());
    }
}

/// The 4-byte header common to every RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpHeader {
    /// P bit: the packet ends in padding whose count is its last byte.
    pub padding: bool,
    /// The 5-bit count field: report count, source count, subtype or feedback FMT.
    pub count: u8,
    /// Packet type (200 SR, 201 RR, …).
    pub packet_type: u8,
    /// The length field: packet length in 32-bit words minus one.
    pub length_words: u16,
}

impl RtcpHeader {
    /// Size of the common header.
    pub const LEN: usize = 4;

    /// Parses the common header at the start of `buf` (version must be 2).
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<RtcpHeader, RtcpError> {
        let Some(b) = buf.get(..Self::LEN) else {
            return Err(RtcpError::TooShort);
        };
        if b[0] >> 6 != 2 {
            return Err(RtcpError::BadVersion);
        }
        Ok(RtcpHeader {
            padding: b[0] & 0x20 != 0,
            count: b[0] & 0x1f,
            packet_type: b[1],
            length_words: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    /// Length of the whole packet in bytes, header and padding included.
    #[inline]
    pub fn packet_len(&self) -> usize {
        4 * (usize::from(self.length_words) + 1)
    }
}

/// One reception report block of an SR or RR (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// SSRC of the source this block reports on.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed: duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub extended_highest_seq: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received (LSR).
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s (DLSR).
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    /// Size of a report block.
    pub const LEN: usize = 24;

    /// Decodes the report block at the start of `buf`; `None` if shorter than 24 bytes.
    #[inline]
    pub fn parse(buf: &[u8]) -> Option<ReportBlock> {
        let b = buf.get(..Self::LEN)?;
        // Sign-extend the 24-bit count by shifting it to the top and back.
        let cumulative_lost = i32::from_be_bytes([b[5], b[6], b[7], 0]) >> 8;
        Some(ReportBlock {
            ssrc: be_u32(b, 0),
            fraction_lost: b[4],
            cumulative_lost,
            extended_highest_seq: be_u32(b, 8),
            jitter: be_u32(b, 12),
            last_sr: be_u32(b, 16),
            delay_since_last_sr: be_u32(b, 20),
        })
    }

    /// Encodes the block into the start of `buf` (the lost count clamped to 24 bits);
    /// returns 24, or `None` (nothing written) if `buf` is shorter.
    #[inline]
    pub fn write_to(&self, buf: &mut [u8]) -> Option<usize> {
        let out = buf.get_mut(..Self::LEN)?;
        let lost = self
            .cumulative_lost
            .clamp(-0x80_0000, 0x7f_ffff)
            .to_be_bytes();
        put_u32(out, 0, self.ssrc);
        out[4] = self.fraction_lost;
        out[5..8].copy_from_slice(&lost[1..4]);
        put_u32(out, 8, self.extended_highest_seq);
        put_u32(out, 12, self.jitter);
        put_u32(out, 16, self.last_sr);
        put_u32(out, 20, self.delay_since_last_sr);
        Some(Self::LEN)
    }
}

/// Iterator over the report blocks of an SR or RR.
#[derive(Debug, Clone)]
pub struct ReportBlocks<'a> {
    chunks: ChunksExact<'a, u8>,
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    #[inline]
    fn next(&mut self) -> Option<ReportBlock> {
        self.chunks.next().and_then(ReportBlock::parse)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.chunks.size_hint()
    }
}

impl ExactSizeIterator for ReportBlocks<'_> {}
impl FusedIterator for ReportBlocks<'_> {}

/// A sender report (SR, PT 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport<'a> {
    /// Header through the end of the profile extension; padding excluded.
    bytes: &'a [u8],
    count: u8,
}

impl<'a> SenderReport<'a> {
    const FIXED: usize = 28;

    /// SSRC of the sender.
    #[inline]
    pub fn ssrc(&self) -> u32 {
        be_u32(self.bytes, 4)
    }

    /// The 64-bit NTP timestamp (seconds since 1900 in the high 32 bits).
    #[inline]
    pub fn ntp_timestamp(&self) -> u64 {
        (u64::from(be_u32(self.bytes, 8)) << 32) | u64::from(be_u32(self.bytes, 12))
    }

    /// RTP timestamp corresponding to the NTP timestamp.
    #[inline]
    pub fn rtp_timestamp(&self) -> u32 {
        be_u32(self.bytes, 16)
    }

    /// Sender's packet count.
    #[inline]
    pub fn packet_count(&self) -> u32 {
        be_u32(self.bytes, 20)
    }

    /// Sender's octet count.
    #[inline]
    pub fn octet_count(&self) -> u32 {
        be_u32(self.bytes, 24)
    }

    /// The reception report blocks (as many as the report count says).
    #[inline]
    pub fn report_blocks(&self) -> ReportBlocks<'a> {
        report_blocks(self.bytes, Self::FIXED, self.count)
    }

    /// Profile-specific extension after the report blocks (usually empty).
    #[inline]
    pub fn extension(&self) -> &'a [u8] {
        self.bytes
            .get(Self::FIXED + ReportBlock::LEN * usize::from(self.count)..)
            .unwrap_or(&[])
    }
}

/// A receiver report (RR, PT 201).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverReport<'a> {
    bytes: &'a [u8],
    count: u8,
}

impl<'a> ReceiverReport<'a> {
    const FIXED: usize = 8;

    /// SSRC of the packet's sender.
    #[inline]
    pub fn ssrc(&self) -> u32 {
        be_u32(self.bytes, 4)
    }

    /// The reception report blocks (as many as the report count says).
    #[inline]
    pub fn report_blocks(&self) -> ReportBlocks<'a> {
        report_blocks(self.bytes, Self::FIXED, self.count)
    }

    /// Profile-specific extension after the report blocks (usually empty).
    #[inline]
    pub fn extension(&self) -> &'a [u8] {
        self.bytes
            .get(Self::FIXED + ReportBlock::LEN * usize::from(self.count)..)
            .unwrap_or(&[])
    }
}

#[inline]
fn report_blocks(bytes: &[u8], fixed: usize, count: u8) -> ReportBlocks<'_> {
    let end = fixed + ReportBlock::LEN * usize::from(count);
    let blocks = bytes.get(fixed..end).unwrap_or(&[]);
    ReportBlocks {
        chunks: blocks.chunks_exact(ReportBlock::LEN),
    }
}

/// The type of an SDES item (RFC 3550 section 6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdesItemType {
    /// Canonical end-point identifier.
    Cname,
    /// User name.
    Name,
    /// Electronic mail address.
    Email,
    /// Phone number.
    Phone,
    /// Geographic location.
    Loc,
    /// Application or tool name.
    Tool,
    /// Notice/status.
    Note,
    /// Private extension.
    Priv,
    /// Any other item type.
    Other(u8),
}

impl From<u8> for SdesItemType {
    #[inline]
    fn from(kind: u8) -> Self {
        match kind {
            1 => SdesItemType::Cname,
            2 => SdesItemType::Name,
            3 => SdesItemType::Email,
            4 => SdesItemType::Phone,
            5 => SdesItemType::Loc,
            6 => SdesItemType::Tool,
            7 => SdesItemType::Note,
            8 => SdesItemType::Priv,
            other => SdesItemType::Other(other),
        }
    }
}

/// One SDES item: its type and its text (UTF-8 by the RFC, not checked here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItem<'a> {
    /// Item type.
    pub kind: SdesItemType,
    /// Item value, as sent.
    pub value: &'a [u8],
}

/// Iterator over the items of one SDES chunk.
#[derive(Debug, Clone)]
pub struct SdesItems<'a> {
    /// Items of the chunk, up to (not including) the null terminator.
    rest: &'a [u8],
}

impl<'a> Iterator for SdesItems<'a> {
    type Item = SdesItem<'a>;

    #[inline]
    fn next(&mut self) -> Option<SdesItem<'a>> {
        let (&kind, after) = self.rest.split_first()?;
        let Some((&len, after)) = after.split_first() else {
            self.rest = &[];
            return None;
        };
        let Some(value) = after.get(..usize::from(len)) else {
            self.rest = &[];
            return None;
        };
        self.rest = &after[usize::from(len)..];
        Some(SdesItem {
            kind: SdesItemType::from(kind),
            value,
        })
    }
}

impl FusedIterator for SdesItems<'_> {}

/// One SDES chunk: a source and its items.
#[derive(Debug, Clone)]
pub struct SdesChunk<'a> {
    /// SSRC or CSRC the items describe.
    pub ssrc: u32,
    /// The chunk's items.
    pub items: SdesItems<'a>,
}

/// A parsed chunk: its SSRC, its items' byte range, and where the next chunk starts.
struct ChunkBounds {
    ssrc: u32,
    items: (usize, usize),
    next: usize,
}

/// Walks the chunk at `pos` in an SDES packet whose bytes (padding excluded) end at `end`.
#[inline]
fn sdes_chunk(bytes: &[u8], pos: usize, end: usize) -> Result<ChunkBounds, RtcpError> {
    let end = end.min(bytes.len());
    if pos.saturating_add(4) > end {
        return Err(RtcpError::BadSdes);
    }
    let ssrc = be_u32(bytes, pos);
    let start = pos + 4;
    let mut at = start;
    loop {
        if at >= end {
            // Lenient: the last chunk may end with the packet instead of a null item.
            return Ok(ChunkBounds {
                ssrc,
                items: (start, end),
                next: end,
            });
        }
        if bytes[at] == 0 {
            // Null item, then null padding to the next 32-bit boundary.
            let next = ((at + 1 + 3) & !3).min(end);
            return Ok(ChunkBounds {
                ssrc,
                items: (start, at),
                next,
            });
        }
        // An item needs its type and length octets before `end`.
        let Some(&len) = bytes[..end].get(at + 1) else {
            return Err(RtcpError::BadSdes);
        };
        at += 2 + usize::from(len);
        if at > end {
            return Err(RtcpError::BadSdes);
        }
    }
}

/// Source description (SDES, PT 202).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sdes<'a> {
    bytes: &'a [u8],
    count: u8,
}

impl<'a> Sdes<'a> {
    /// Number of chunks (the source count).
    #[inline]
    pub fn chunk_count(&self) -> u8 {
        self.count
    }

    /// The chunks, in order.
    #[inline]
    pub fn chunks(&self) -> SdesChunks<'a> {
        SdesChunks {
            bytes: self.bytes,
            pos: RtcpHeader::LEN,
            left: self.count,
        }
    }

    /// The first CNAME item of the chunk for `ssrc`, if any.
    pub fn cname_of(&self, ssrc: u32) -> Option<&'a [u8]> {
        self.chunks()
            .filter(|c| c.ssrc == ssrc)
            .flat_map(|c| c.items)
            .find(|i| i.kind == SdesItemType::Cname)
            .map(|i| i.value)
    }
}

/// Iterator over the chunks of an SDES packet.
#[derive(Debug, Clone)]
pub struct SdesChunks<'a> {
    bytes: &'a [u8],
    pos: usize,
    left: u8,
}

impl<'a> Iterator for SdesChunks<'a> {
    type Item = SdesChunk<'a>;

    #[inline]
    fn next(&mut self) -> Option<SdesChunk<'a>> {
        if self.left == 0 {
            return None;
        }
        match sdes_chunk(self.bytes, self.pos, self.bytes.len()) {
            Ok(c) => {
                self.left -= 1;
                self.pos = c.next;
                Some(SdesChunk {
                    ssrc: c.ssrc,
                    items: SdesItems {
                        rest: self.bytes.get(c.items.0..c.items.1).unwrap_or(&[]),
                    },
                })
            }
            Err(_) => {
                // Unreachable for a validated packet; stop rather than loop.
                self.left = 0;
                None
            }
        }
    }
}

impl FusedIterator for SdesChunks<'_> {}

/// Goodbye (BYE, PT 203).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bye<'a> {
    bytes: &'a [u8],
    count: u8,
}

impl<'a> Bye<'a> {
    /// The sources leaving, in order.
    #[inline]
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        let end = RtcpHeader::LEN + 4 * usize::from(self.count);
        self.bytes
            .get(RtcpHeader::LEN..end)
            .unwrap_or(&[])
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// The reason for leaving, if one was given.
    #[inline]
    pub fn reason(&self) -> Option<&'a [u8]> {
        let at = RtcpHeader::LEN + 4 * usize::from(self.count);
        let len = usize::from(*self.bytes.get(at)?);
        self.bytes.get(at + 1..at + 1 + len)
    }
}

/// Application-defined (APP, PT 204).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct App<'a> {
    bytes: &'a [u8],
    count: u8,
}

impl<'a> App<'a> {
    /// The subtype (the header's count field).
    #[inline]
    pub fn subtype(&self) -> u8 {
        self.count
    }

    /// SSRC of the sender.
    #[inline]
    pub fn ssrc(&self) -> u32 {
        be_u32(self.bytes, 4)
    }

    /// The four-character name.
    #[inline]
    pub fn name(&self) -> [u8; 4] {
        be_u32(self.bytes, 8).to_be_bytes()
    }

    /// Application-dependent data.
    #[inline]
    pub fn data(&self) -> &'a [u8] {
        self.bytes.get(12..).unwrap_or(&[])
    }
}

/// One Generic NACK entry (RFC 4585 section 6.2.1): a lost packet and a bitmask of the 16 after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenericNack {
    /// Packet ID: sequence number of a lost packet.
    pub pid: u16,
    /// Bitmask of following lost packets: bit i set means `pid + i + 1` is lost.
    pub blp: u16,
}

/// A feedback message (RFC 4585): transport-layer (RTPFB, 205) or payload-specific (PSFB, 206).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feedback<'a> {
    bytes: &'a [u8],
    count: u8,
}

impl<'a> Feedback<'a> {
    /// Feedback message type (FMT): for RTPFB 1 is Generic NACK; for PSFB 1 PLI, 4 FIR, 15 AFB.
    #[inline]
    pub fn fmt(&self) -> u8 {
        self.count
    }

    /// SSRC of the packet sender.
    #[inline]
    pub fn sender_ssrc(&self) -> u32 {
        be_u32(self.bytes, 4)
    }

    /// SSRC of the media source the feedback is about.
    #[inline]
    pub fn media_ssrc(&self) -> u32 {
        be_u32(self.bytes, 8)
    }

    /// Feedback control information.
    #[inline]
    pub fn fci(&self) -> &'a [u8] {
        self.bytes.get(12..).unwrap_or(&[])
    }

    /// The FCI read as Generic NACK entries (meaningful for RTPFB with FMT 1).
    #[inline]
    pub fn generic_nacks(&self) -> impl Iterator<Item = GenericNack> + 'a {
        self.fci().chunks_exact(4).map(|c| GenericNack {
            pid: u16::from_be_bytes([c[0], c[1]]),
            blp: u16::from_be_bytes([c[2], c[3]]),
        })
    }
}

/// A packet of a type not decoded here (XR and anything else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unknown<'a> {
    bytes: &'a [u8],
    count: u8,
}

impl<'a> Unknown<'a> {
    /// The packet type.
    #[inline]
    pub fn packet_type(&self) -> u8 {
        self.bytes.get(1).copied().unwrap_or(0)
    }

    /// The header's count field.
    #[inline]
    pub fn count(&self) -> u8 {
        self.count
    }

    /// Everything after the 4-byte header, padding excluded.
    #[inline]
    pub fn body(&self) -> &'a [u8] {
        self.bytes.get(RtcpHeader::LEN..).unwrap_or(&[])
    }
}

/// One packet of a compound, as a typed view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    /// Sender report (200).
    SenderReport(SenderReport<'a>),
    /// Receiver report (201).
    ReceiverReport(ReceiverReport<'a>),
    /// Source description (202).
    SourceDescription(Sdes<'a>),
    /// Goodbye (203).
    Bye(Bye<'a>),
    /// Application-defined (204).
    App(App<'a>),
    /// Transport-layer feedback (205).
    TransportFeedback(Feedback<'a>),
    /// Payload-specific feedback (206).
    PayloadFeedback(Feedback<'a>),
    /// Any other type, XR (207) included.
    Unknown(Unknown<'a>),
}

impl<'a> RtcpPacket<'a> {
    /// Parses and validates the packet at the start of `buf`; returns it and its length
    /// in bytes (header and padding included), which is where the next packet starts.
    pub fn parse(buf: &'a [u8]) -> Result<(RtcpPacket<'a>, usize), RtcpError> {
        let header = RtcpHeader::parse(buf)?;
        let len = header.packet_len();
        let Some(whole) = buf.get(..len) else {
            return Err(RtcpError::LengthPastEnd);
        };
        let end = if header.padding {
            // len >= 4, so the last byte exists.
            let pad = usize::from(whole[len - 1]);
            if pad == 0 || pad > len - RtcpHeader::LEN {
                return Err(RtcpError::BadPadding);
            }
            len - pad
        } else {
            len
        };
        let bytes = &whole[..end];
        let count = header.count;
        let pt = header.packet_type;
        let need = |min: usize| {
            if bytes.len() < min {
                Err(RtcpError::Truncated { packet_type: pt })
            } else {
                Ok(())
            }
        };
        let packet = match pt {
            PT_SR => {
                need(SenderReport::FIXED + ReportBlock::LEN * usize::from(count))?;
                RtcpPacket::SenderReport(SenderReport { bytes, count })
            }
            PT_RR => {
                need(ReceiverReport::FIXED + ReportBlock::LEN * usize::from(count))?;
                RtcpPacket::ReceiverReport(ReceiverReport { bytes, count })
            }
            PT_SDES => {
                let mut pos = RtcpHeader::LEN;
                for _ in 0..count {
                    pos = sdes_chunk(bytes, pos, bytes.len())?.next;
                }
                RtcpPacket::SourceDescription(Sdes { bytes, count })
            }
            PT_BYE => {
                let ssrcs_end = RtcpHeader::LEN + 4 * usize::from(count);
                need(ssrcs_end)?;
                if let Some(&reason_len) = bytes.get(ssrcs_end) {
                    need(ssrcs_end + 1 + usize::from(reason_len))?;
                }
                RtcpPacket::Bye(Bye { bytes, count })
            }
            PT_APP => {
                need(12)?;
                RtcpPacket::App(App { bytes, count })
            }
            PT_RTPFB | PT_PSFB => {
                need(12)?;
                let fb = Feedback { bytes, count };
                if pt == PT_RTPFB {
                    RtcpPacket::TransportFeedback(fb)
                } else {
                    RtcpPacket::PayloadFeedback(fb)
                }
            }
            _ => RtcpPacket::Unknown(Unknown { bytes, count }),
        };
        Ok((packet, len))
    }

    /// The packet type.
    #[inline]
    pub fn packet_type(&self) -> u8 {
        self.bytes().get(1).copied().unwrap_or(0)
    }

    /// The packet's bytes from its header up to its padding (padding excluded).
    #[inline]
    pub fn bytes(&self) -> &'a [u8] {
        match self {
            RtcpPacket::SenderReport(p) => p.bytes,
            RtcpPacket::ReceiverReport(p) => p.bytes,
            RtcpPacket::SourceDescription(p) => p.bytes,
            RtcpPacket::Bye(p) => p.bytes,
            RtcpPacket::App(p) => p.bytes,
            RtcpPacket::TransportFeedback(p) | RtcpPacket::PayloadFeedback(p) => p.bytes,
            RtcpPacket::Unknown(p) => p.bytes,
        }
    }

    /// The SSRC of the packet's sender: the first word after the header for SR, RR,
    /// APP, feedback and XR; the first chunk of an SDES; the first source of a BYE.
    #[inline]
    pub fn sender_ssrc(&self) -> Option<u32> {
        if has_sender_ssrc(self.packet_type(), self.bytes()) {
            Some(be_u32(self.bytes(), 4))
        } else {
            None
        }
    }
}

/// Whether the packet (bytes from its header, validated) carries a sender SSRC at offset 4.
#[inline]
fn has_sender_ssrc(packet_type: u8, bytes: &[u8]) -> bool {
    let count = bytes.first().map_or(0, |b| b & 0x1f);
    let known = match packet_type {
        PT_SR | PT_RR | PT_APP | PT_RTPFB | PT_PSFB | PT_XR => true,
        PT_SDES | PT_BYE => count > 0,
        _ => false,
    };
    known && bytes.len() >= 8
}

/// Walks the packets of a compound RTCP datagram, yielding each as a typed view.
///
/// After the first error it yields that error and then stops. An empty datagram yields
/// [`RtcpError::TooShort`].
#[derive(Debug, Clone)]
pub struct RtcpCompound<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> RtcpCompound<'a> {
    /// Starts a walk over the compound packet in `buf`.
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        RtcpCompound {
            buf,
            pos: 0,
            done: false,
        }
    }

    /// Offset in the datagram of the next packet the walk will yield.
    #[inline]
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Validates the whole compound; returns the number of packets in it.
    pub fn validate(buf: &'a [u8]) -> Result<usize, RtcpError> {
        let mut n = 0;
        for packet in RtcpCompound::new(buf) {
            packet?;
            n += 1;
        }
        Ok(n)
    }
}

impl<'a> Iterator for RtcpCompound<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done || (self.pos >= self.buf.len() && self.pos > 0) {
            self.done = true;
            return None;
        }
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        match RtcpPacket::parse(rest) {
            Ok((packet, len)) => {
                self.pos += len;
                Some(Ok(packet))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl FusedIterator for RtcpCompound<'_> {}

/// Validates the compound in `buf`, then calls `f` on each packet's bytes (padding
/// included) for in-place rewrites; returns the number of packets. Nothing is called,
/// and nothing changed, if any packet is malformed. `f` must not change length fields.
pub fn for_each_packet_mut(
    buf: &mut [u8],
    mut f: impl FnMut(&mut [u8]),
) -> Result<usize, RtcpError> {
    let n = RtcpCompound::validate(buf)?;
    let mut pos = 0;
    for _ in 0..n {
        // Validated above: every header is present and its length fits.
        let len = RtcpHeader::parse(buf.get(pos..).unwrap_or(&[]))
            .map(|h| h.packet_len())
            .unwrap_or(usize::MAX);
        let Some(packet) = buf.get_mut(pos..pos.saturating_add(len)) else {
            break;
        };
        f(packet);
        pos += len;
    }
    Ok(n)
}

/// Sets the sender SSRC (see [`RtcpPacket::sender_ssrc`]) of the single RTCP packet at
/// the start of `packet`; returns whether the type carries one (nothing written if not).
#[inline]
pub fn set_sender_ssrc(packet: &mut [u8], ssrc: u32) -> Result<bool, RtcpError> {
    let (view, _) = RtcpPacket::parse(packet)?;
    if view.sender_ssrc().is_none() {
        return Ok(false);
    }
    put_u32(packet, 4, ssrc);
    Ok(true)
}

/// Sets the RTP timestamp of the sender report at the start of `packet`.
#[inline]
pub fn set_sr_rtp_timestamp(packet: &mut [u8], ts: u32) -> Result<(), RtcpError> {
    let (view, _) = RtcpPacket::parse(packet)?;
    if !matches!(view, RtcpPacket::SenderReport(_)) {
        return Err(RtcpError::NotSenderReport);
    }
    put_u32(packet, 16, ts);
    Ok(())
}

/// Rewrites a compound in place for RTP continuity: every sender SSRC becomes `ssrc`
/// (if given) and every SR's RTP timestamp is advanced (wrapping) by `ts_offset`.
/// Returns the number of packets; on a malformed compound nothing is changed.
///
/// An end system sends one SDES chunk and BYEs itself, so only the first chunk and the
/// first BYE source are rewritten; a mixer's CSRC chunks are left alone.
pub fn rewrite_compound(
    buf: &mut [u8],
    ssrc: Option<u32>,
    ts_offset: u32,
) -> Result<usize, RtcpError> {
    for_each_packet_mut(buf, |packet| {
        // Re-parse (cheap) so padding is never mistaken for a field.
        let (has_ssrc, is_sr) = match RtcpPacket::parse(packet) {
            Ok((view, _)) => (
                view.sender_ssrc().is_some(),
                matches!(view, RtcpPacket::SenderReport(_)),
            ),
            Err(_) => return,
        };
        if let (Some(ssrc), true) = (ssrc, has_ssrc) {
            put_u32(packet, 4, ssrc);
        }
        if is_sr && ts_offset != 0 {
            put_u32(packet, 16, be_u32(packet, 16).wrapping_add(ts_offset));
        }
    })
}

/// Writes a sender report without report blocks into the start of `buf`; returns its
/// length (28), or `None` (nothing written) if `buf` is shorter.
pub fn write_sender_report(
    buf: &mut [u8],
    ssrc: u32,
    ntp: u64,
    rtp_timestamp: u32,
    packet_count: u32,
    octet_count: u32,
) -> Option<usize> {
    let out = buf.get_mut(..SenderReport::FIXED)?;
    out[..4].copy_from_slice(&[0x80, PT_SR, 0, 6]);
    put_u32(out, 4, ssrc);
    put_u32(out, 8, (ntp >> 32) as u32);
    put_u32(out, 12, ntp as u32);
    put_u32(out, 16, rtp_timestamp);
    put_u32(out, 20, packet_count);
    put_u32(out, 24, octet_count);
    Some(SenderReport::FIXED)
}

/// Writes a BYE for the single source `ssrc` into the start of `buf`; returns its
/// length (8), or `None` (nothing written) if `buf` is shorter.
pub fn write_bye(buf: &mut [u8], ssrc: u32) -> Option<usize> {
    let out = buf.get_mut(..8)?;
    out[..4].copy_from_slice(&[0x81, PT_BYE, 0, 1]);
    put_u32(out, 4, ssrc);
    Some(8)
}

/// The middle 32 bits of a 64-bit NTP timestamp, as carried in LSR.
#[inline]
pub fn compact_ntp(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::fuzzing::check_rtcp_compound;

    /// SR (one report block) + SDES (one CNAME), the usual compound of RFC 3550
    /// section 6.1, laid out field by field.
    const SR_SDES: [u8; 80] = [
        // SR: V=2 P=0 RC=1, PT=200, length 12 (52 bytes)
        0x81, 0xc8, 0x00, 0x0c, //
        0x90, 0x2f, 0x9e, 0x2e, // sender SSRC
        0xe4, 0x1b, 0x2c, 0x3d, // NTP seconds
        0x80, 0x00, 0x00, 0x00, // NTP fraction (0.5 s)
        0x00, 0x03, 0xe8, 0x00, // RTP timestamp 256000
        0x00, 0x00, 0x00, 0x64, // packet count 100
        0x00, 0x00, 0x3e, 0x80, // octet count 16000
        // report block
        0x12, 0x34, 0x56, 0x78, // SSRC_1
        0x19, 0xff, 0xff, 0xff, // fraction lost 25/256, cumulative lost -1
        0x00, 0x01, 0x00, 0x05, // extended highest sequence (one wrap, seq 5)
        0x00, 0x00, 0x00, 0x20, // jitter 32
        0x2c, 0x3d, 0x80, 0x00, // LSR
        0x00, 0x01, 0x80, 0x00, // DLSR 1.5 s
        // SDES: V=2 P=0 SC=1, PT=202, length 6 (28 bytes)
        0x81, 0xca, 0x00, 0x06, //
        0x90, 0x2f, 0x9e, 0x2e, // chunk SSRC
        0x01, 0x10, b'u', b's', b'e', b'r', b'@', b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.',
        b'c', b'o', b'm', // CNAME, 16 bytes
        0x00, 0x00, // null item, pad to the word boundary
    ];

    fn packets(buf: &[u8]) -> Vec<Result<RtcpPacket<'_>, RtcpError>> {
        RtcpCompound::new(buf).collect()
    }

    #[test]
    fn walks_sr_and_sdes() {
        let all = packets(&SR_SDES);
        assert_eq!(all.len(), 2);
        let RtcpPacket::SenderReport(sr) = all[0].unwrap() else {
            panic!("first packet is not an SR: {:?}", all[0]);
        };
        assert_eq!(sr.ssrc(), 0x902f_9e2e);
        assert_eq!(sr.ntp_timestamp(), 0xe41b_2c3d_8000_0000);
        assert_eq!(compact_ntp(sr.ntp_timestamp()), 0x2c3d_8000);
        assert_eq!(sr.rtp_timestamp(), 256_000);
        assert_eq!((sr.packet_count(), sr.octet_count()), (100, 16_000));
        assert!(sr.extension().is_empty());
        let blocks: Vec<_> = sr.report_blocks().collect();
        assert_eq!(
            blocks,
            [ReportBlock {
                ssrc: 0x1234_5678,
                fraction_lost: 25,
                cumulative_lost: -1,
                extended_highest_seq: 0x1_0005,
                jitter: 32,
                last_sr: 0x2c3d_8000,
                delay_since_last_sr: 0x1_8000,
            }]
        );

        let RtcpPacket::SourceDescription(sdes) = all[1].unwrap() else {
            panic!("second packet is not SDES: {:?}", all[1]);
        };
        assert_eq!(sdes.chunk_count(), 1);
        let chunk = sdes.chunks().next().unwrap();
        assert_eq!(chunk.ssrc, 0x902f_9e2e);
        let items: Vec<_> = chunk.items.collect();
        assert_eq!(
            items,
            [SdesItem {
                kind: SdesItemType::Cname,
                value: b"user@example.com"
            }]
        );
        assert_eq!(sdes.cname_of(0x902f_9e2e), Some(&b"user@example.com"[..]));
        assert_eq!(sdes.cname_of(1), None);
        assert_eq!(RtcpCompound::validate(&SR_SDES), Ok(2));
        check_rtcp_compound(&SR_SDES);
    }

    #[test]
    fn rewrites_ssrc_and_sr_timestamp_in_place() {
        let mut buf = SR_SDES;
        assert_eq!(
            rewrite_compound(&mut buf, Some(0x0bad_cafe), 0xffff_0000),
            Ok(2)
        );
        assert_eq!(buf[4..8], [0x0b, 0xad, 0xca, 0xfe]);
        assert_eq!(buf[16..20], 0x0002_e800u32.to_be_bytes()); // 256000 + 0xffff0000, wrapped
        assert_eq!(buf[56..60], [0x0b, 0xad, 0xca, 0xfe]); // SDES chunk
        assert_eq!(
            buf[28..32],
            SR_SDES[28..32],
            "report block SSRC is the other side's"
        );
        let mut expected = SR_SDES;
        expected[4..8].copy_from_slice(&buf[4..8]);
        expected[16..20].copy_from_slice(&buf[16..20]);
        expected[56..60].copy_from_slice(&buf[56..60]);
        assert_eq!(buf, expected);

        // The single-packet setters do the same.
        let mut sr = SR_SDES;
        assert_eq!(set_sender_ssrc(&mut sr[..52], 0x0bad_cafe), Ok(true));
        assert_eq!(set_sr_rtp_timestamp(&mut sr[..52], 0x0002_e800), Ok(()));
        assert_eq!(set_sender_ssrc(&mut sr[52..], 0x0bad_cafe), Ok(true));
        assert_eq!(sr, buf);
        assert_eq!(
            set_sr_rtp_timestamp(&mut sr[52..], 1),
            Err(RtcpError::NotSenderReport)
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for len in 0..SR_SDES.len() {
            let r = RtcpCompound::validate(&SR_SDES[..len]);
            match len {
                52 => assert_eq!(r, Ok(1)),
                0 => assert_eq!(r, Err(RtcpError::TooShort)),
                _ => assert!(r.is_err(), "prefix of {len} bytes accepted"),
            }
            check_rtcp_compound(&SR_SDES[..len]);
        }
    }

    #[test]
    fn length_fields_are_checked() {
        let mut buf = SR_SDES;
        buf[3] = 13; // SR claims 56 bytes: runs into the SDES, whose header is now garbage
        assert!(RtcpCompound::validate(&buf).is_err());
        let mut buf = SR_SDES;
        buf[55] = 7; // SDES claims 32 bytes, 28 present
        assert_eq!(RtcpCompound::validate(&buf), Err(RtcpError::LengthPastEnd));
        let mut buf = SR_SDES;
        buf[0] = 0x9f; // RC=31 in a 52-byte SR
        assert_eq!(
            RtcpCompound::validate(&buf),
            Err(RtcpError::Truncated { packet_type: PT_SR })
        );
        let mut buf = SR_SDES;
        buf[57 + 4] = 0x40; // CNAME length 64 in a 28-byte packet
        assert_eq!(RtcpCompound::validate(&buf), Err(RtcpError::BadSdes));
        let mut buf = SR_SDES;
        buf[52] = 0x82; // SC=2, one chunk present
        assert_eq!(RtcpCompound::validate(&buf), Err(RtcpError::BadSdes));
        let mut buf = SR_SDES;
        buf[0] = 0x41;
        assert_eq!(RtcpCompound::validate(&buf), Err(RtcpError::BadVersion));

        let mut unchanged = SR_SDES;
        unchanged[55] = 7;
        let before = unchanged;
        assert_eq!(
            rewrite_compound(&mut unchanged, Some(1), 1),
            Err(RtcpError::LengthPastEnd)
        );
        assert_eq!(
            unchanged, before,
            "a malformed compound must not be half rewritten"
        );
    }

    #[test]
    fn walk_yields_packets_then_the_error_then_stops() {
        let mut buf = [0u8; 54];
        buf[..52].copy_from_slice(&SR_SDES[..52]);
        buf[52] = 0x80;
        let mut walk = RtcpCompound::new(&buf);
        assert!(matches!(walk.next(), Some(Ok(RtcpPacket::SenderReport(_)))));
        assert_eq!(walk.offset(), 52);
        assert_eq!(walk.next(), Some(Err(RtcpError::TooShort)));
        assert_eq!(walk.next(), None);
        assert_eq!(walk.next(), None);
        assert_eq!(packets(&[]), [Err(RtcpError::TooShort)]);
    }

    #[test]
    fn empty_rr_bye_with_reason_and_padding() {
        let buf = [
            0x80, 0xc9, 0x00, 0x01, 0x00, 0x00, 0x00, 0x2a, // RR, RC=0, SSRC 42
            0xa1, 0xcb, 0x00, 0x02, 0x00, 0x00, 0x00, 0x2a, // BYE, P=1, SC=1, SSRC 42
            0x03, b'b', b'y', b'e', // reason "bye"
        ];
        // The BYE above has no room for padding; make a padded one separately.
        let all = packets(&buf);
        assert_eq!(
            all[1],
            Err(RtcpError::BadPadding),
            "pad count 'e' eats the header"
        );
        let mut buf = buf;
        buf[8] = 0x81; // clear P
        let all = packets(&buf);
        let RtcpPacket::ReceiverReport(rr) = all[0].unwrap() else {
            panic!("{all:?}")
        };
        assert_eq!((rr.ssrc(), rr.report_blocks().len()), (42, 0));
        let RtcpPacket::Bye(bye) = all[1].unwrap() else {
            panic!("{all:?}")
        };
        assert_eq!(bye.ssrcs().collect::<Vec<_>>(), [42]);
        assert_eq!(bye.reason(), Some(&b"bye"[..]));

        let padded = [
            0xa1, 0xcb, 0x00, 0x02, 0x00, 0x00, 0x00, 0x2a, // BYE, P=1, SC=1
            0x00, 0x00, 0x00, 0x04, // 4 bytes of padding
        ];
        let all = packets(&padded);
        let RtcpPacket::Bye(bye) = all[0].unwrap() else {
            panic!("{all:?}")
        };
        assert_eq!(bye.reason(), None);
        assert_eq!(all[0].unwrap().bytes().len(), 8);
        check_rtcp_compound(&padded);

        let mut zero_pad = padded;
        zero_pad[11] = 0;
        assert_eq!(
            RtcpCompound::validate(&zero_pad),
            Err(RtcpError::BadPadding)
        );
        let mut bad_reason = buf;
        bad_reason[16] = 9;
        assert_eq!(
            RtcpCompound::validate(&bad_reason),
            Err(RtcpError::Truncated {
                packet_type: PT_BYE
            })
        );
    }

    #[test]
    fn feedback_app_and_unknown() {
        let buf = [
            0x81, 0xcd, 0x00, 0x03, 0, 0, 0, 1, 0, 0, 0, 2, 0x01, 0x02, 0x00,
            0x05, // NACK 258 + 259, 261
            0x81, 0xce, 0x00, 0x02, 0, 0, 0, 1, 0, 0, 0, 2, // PLI
            0x83, 0xcc, 0x00, 0x03, 0, 0, 0, 1, b'R', b'T', b'P', b'K', 1, 2, 3,
            4, // APP subtype 3
            0x80, 0xcf, 0x00, 0x01, 0, 0, 0, 1, // XR, no blocks
            0x80, 0xd2, 0x00, 0x01, 0, 0, 0, 1, // type 210
        ];
        let all: Vec<_> = packets(&buf).into_iter().map(Result::unwrap).collect();
        let RtcpPacket::TransportFeedback(nack) = all[0] else {
            panic!("{all:?}")
        };
        assert_eq!(
            (nack.fmt(), nack.sender_ssrc(), nack.media_ssrc()),
            (1, 1, 2)
        );
        assert_eq!(
            nack.generic_nacks().collect::<Vec<_>>(),
            [GenericNack {
                pid: 0x0102,
                blp: 5
            }]
        );
        let RtcpPacket::PayloadFeedback(pli) = all[1] else {
            panic!("{all:?}")
        };
        assert_eq!((pli.fmt(), pli.fci().len()), (1, 0));
        let RtcpPacket::App(app) = all[2] else {
            panic!("{all:?}")
        };
        assert_eq!(
            (app.subtype(), app.ssrc(), &app.name(), app.data()),
            (3, 1, b"RTPK", &[1u8, 2, 3, 4][..])
        );
        let RtcpPacket::Unknown(xr) = all[3] else {
            panic!("{all:?}")
        };
        assert_eq!((xr.packet_type(), xr.body().len()), (PT_XR, 4));
        assert_eq!(all[3].sender_ssrc(), Some(1));
        assert_eq!(
            all[4].sender_ssrc(),
            None,
            "unknown types are not rewritten"
        );
        check_rtcp_compound(&buf);

        let mut rewritten = buf;
        assert_eq!(rewrite_compound(&mut rewritten, Some(9), 5), Ok(5));
        for off in [4, 20, 32, 48] {
            assert_eq!(rewritten[off..off + 4], [0, 0, 0, 9]);
        }
        assert_eq!(rewritten[56..60], [0, 0, 0, 1]);
        assert_eq!(
            rewritten[8..12],
            [0, 0, 0, 2],
            "media SSRC is the other side's"
        );

        let short_fb = [0x81, 0xcd, 0x00, 0x01, 0, 0, 0, 1];
        assert_eq!(
            RtcpCompound::validate(&short_fb),
            Err(RtcpError::Truncated {
                packet_type: PT_RTPFB
            })
        );
    }

    #[test]
    fn padding_is_never_rewritten_as_a_field() {
        // XR of header + 4 bytes of padding: no sender SSRC, padding intact.
        let mut buf = [0xa0, 0xcf, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04];
        assert_eq!(RtcpPacket::parse(&buf).unwrap().0.sender_ssrc(), None);
        assert_eq!(rewrite_compound(&mut buf, Some(0xffff_ffff), 0), Ok(1));
        assert_eq!(buf, [0xa0, 0xcf, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04]);
        assert_eq!(set_sender_ssrc(&mut buf, 1), Ok(false));
        check_rtcp_compound(&buf);
    }

    #[test]
    fn sdes_with_several_chunks_and_items() {
        let buf = [
            0x82, 0xca, 0x00, 0x06, // SC=2, 28 bytes
            0, 0, 0, 1, 1, 1, b'a', 0, // chunk 1: CNAME "a", null (already aligned)
            0, 0, 0, 2, 1, 2, b'b', b'c', 6, 3, b'r', b't', b'p', 0, 0,
            0, // chunk 2: CNAME, TOOL
        ];
        let all = packets(&buf);
        let RtcpPacket::SourceDescription(sdes) = all[0].unwrap() else {
            panic!("{all:?}")
        };
        let chunks: Vec<_> = sdes
            .chunks()
            .map(|c| (c.ssrc, c.items.collect::<Vec<_>>()))
            .collect();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].0, 1);
        assert_eq!(chunks[0].1[0].value, b"a");
        assert_eq!(chunks[1].0, 2);
        assert_eq!(
            chunks[1]
                .1
                .iter()
                .map(|i| (i.kind, i.value))
                .collect::<Vec<_>>(),
            [
                (SdesItemType::Cname, &b"bc"[..]),
                (SdesItemType::Tool, &b"rtp"[..])
            ]
        );
        assert_eq!(SdesItemType::from(9), SdesItemType::Other(9));
        check_rtcp_compound(&buf);

        // A mixer's second chunk keeps its SSRC; the first (the sender's) is rewritten.
        let mut rewritten = buf;
        rewrite_compound(&mut rewritten, Some(7), 0).unwrap();
        assert_eq!(rewritten[4..8], [0, 0, 0, 7]);
        assert_eq!(rewritten[12..16], [0, 0, 0, 2]);
    }

    #[test]
    fn writers_round_trip() {
        let mut buf = [0u8; 36];
        let n = write_sender_report(&mut buf, 5, 0x0102_0304_0506_0708, 160, 1, 172).unwrap();
        let m = write_bye(&mut buf[n..], 5).unwrap();
        assert_eq!((n, m), (28, 8));
        let all: Vec<_> = packets(&buf).into_iter().map(Result::unwrap).collect();
        let RtcpPacket::SenderReport(sr) = all[0] else {
            panic!("{all:?}")
        };
        assert_eq!(
            (
                sr.ssrc(),
                sr.ntp_timestamp(),
                sr.rtp_timestamp(),
                sr.packet_count(),
                sr.octet_count()
            ),
            (5, 0x0102_0304_0506_0708, 160, 1, 172)
        );
        assert_eq!(sr.report_blocks().len(), 0);
        let RtcpPacket::Bye(bye) = all[1] else {
            panic!("{all:?}")
        };
        assert_eq!(bye.ssrcs().collect::<Vec<_>>(), [5]);
        assert_eq!(write_sender_report(&mut [0; 27], 0, 0, 0, 0, 0), None);
        assert_eq!(write_bye(&mut [0; 7], 0), None);

        let block = ReportBlock {
            ssrc: 1,
            fraction_lost: 2,
            cumulative_lost: -0x80_0000,
            extended_highest_seq: 3,
            jitter: 4,
            last_sr: 5,
            delay_since_last_sr: 6,
        };
        let mut out = [0u8; 24];
        assert_eq!(block.write_to(&mut out), Some(24));
        assert_eq!(out[5..8], [0x80, 0, 0]);
        assert_eq!(ReportBlock::parse(&out), Some(block));
        let clamped = ReportBlock {
            cumulative_lost: i32::MAX,
            ..block
        };
        clamped.write_to(&mut out).unwrap();
        assert_eq!(ReportBlock::parse(&out).unwrap().cumulative_lost, 0x7f_ffff);
        assert_eq!(ReportBlock::parse(&out[..23]), None);
    }
}
