//! RTP, RTCP and RFC 4733 wire formats: borrowed views over `&[u8]`, in-place
//! rewrites, and sequence/timestamp arithmetic. No IO, no allocation.

pub mod header;

pub use header::{RtpError, RtpHeader};

/// Whether a datagram received on an rtcp-mux port is RTCP (RFC 5761 section 4):
/// RTCP packet types 192–223 put 64–95 in the RTP payload-type position.
#[inline]
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && (64..=95).contains(&(buf[1] & 0x7f))
}
