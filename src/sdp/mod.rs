//! SDP (RFC 8866) bodies as the rtpengine "ng" protocol hands them over: parse what
//! a media relay needs (addresses, ports, RTCP, direction, codecs, ICE) and rewrite
//! the addresses and ports to rtpark's own while every other line survives
//! byte-for-byte, in order, with its own line ending.
//!
//! Uses nothing else from the crate and only `std` (plus `thiserror`).
//!
//! # What the parser accepts
//! * The body must be non-empty, at most [`MAX_BODY_LEN`] bytes, start with a `v=`
//!   line, and have at most [`MAX_MEDIA`] `m=` sections.
//! * Every line is `<letter>=<value>` or blank (empty or spaces/tabs only; kept as is).
//!   Lines end in CRLF or LF, mixed freely; the last line may lack an ending. A CR
//!   that does not end a line, or a NUL byte, is rejected.
//! * Lines rtpark interprets and rewrites (`o=`, `c=`, `m=`, media-level `a=rtcp`)
//!   must be well formed and UTF-8; `c=` and `a=rtcp` addresses must be numeric IPs.
//!   One `c=` per level (session or media section), as rtpengine requires.
//! * Everything else is lenient: unknown lines and attributes, and non-UTF-8 bytes
//!   in them (`s=`, `i=`, unknown `a=`), are kept untouched; a malformed `a=rtpmap`
//!   or `a=ptime` is ignored.
//!
//! # Rewrite choices (see [`Sdp::rewrite`])
//! * `m=`: only the port field changes; a `/count` suffix is dropped (rtpark
//!   allocates one RTP/RTCP pair per stream).
//! * `c=`: the address type follows the new address (`IP4`/`IP6`); a `/ttl` suffix
//!   is dropped. A zero address (`0.0.0.0`, `::`; RFC 2543 hold) stays zero, in the
//!   new address's family, except in a port-9 section, where it is trickle ICE's
//!   placeholder (RFC 8840) and is replaced, as rtpengine does.
//! * A rewritten section without its own `c=` uses the session `c=`: the session
//!   `c=` takes the address of the first such section; a later one that needs a
//!   different address gets its own `c=` inserted after its `m=`/`i=` lines, as does
//!   every rewritten section when there is no session `c=` at all. With
//!   `session_connection` set and no rewritten section relying on it, the session
//!   `c=` takes the first rewritten section's address.
//! * When the session `c=` changes, an untouched active section that relied on it
//!   gets a copy of the original session `c=` line, so its address does not change
//!   (rtpengine does the same for sections it passes through).
//! * `a=rtcp` is rewritten in place; when absent it is added at the end of the
//!   section only if the RTCP port is not RTP + 1 (RFC 3605 default). `a=rtcp-mux`
//!   is never touched.
//! * `remove_ice` drops ICE lines at session level and in rewritten sections;
//!   untouched sections keep theirs.
//! * Port-0 (rejected) sections are never rewritten.
//! * Inserted lines take the line ending of the line they follow (or the body's
//!   first ending, else CRLF); a body without a final line ending keeps lacking one
//!   (unless `remove_ice` drops that unterminated last line: the lines before it
//!   keep their own endings).

use std::net::IpAddr;

mod codec;
mod parse;
mod rewrite;
pub use codec::static_rtpmap;

/// Largest SDP body [`Sdp::parse`] accepts, in bytes.
pub const MAX_BODY_LEN: usize = 64 * 1024;

/// Largest number of `m=` sections [`Sdp::parse`] accepts.
pub const MAX_MEDIA: usize = 64;

/// A parsed SDP body that remembers every original line and its line ending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    /// The body exactly as received.
    body: Vec<u8>,
    /// Every line of `body`, in order.
    lines: Vec<Line>,
    /// Index in `lines` of the session-level `o=` line.
    origin_line: Option<usize>,
    /// Address of the `o=` line, when it is a numeric IP.
    origin: Option<IpAddr>,
    /// Index in `lines` of the session-level `c=` line.
    session_c_line: Option<usize>,
    /// Address of the session-level `c=` line.
    session_connection: Option<IpAddr>,
    /// Session-level direction attribute.
    session_direction: Option<Direction>,
    /// Whether any ICE attribute sits at session level.
    session_has_ice: bool,
    /// Line layout of each media section, parallel to `media`.
    sections: Vec<Section>,
    /// What each media section says, in order.
    media: Vec<Media>,
}

/// One line of the body: `body[start..end]` is its content, without the ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line {
    start: usize,
    end: usize,
    ending: Ending,
    kind: LineKind,
}

/// How a line ends in the original body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Last line of a body without a final line ending.
    None,
    Lf,
    CrLf,
}

impl Ending {
    fn bytes(self) -> &'static [u8] {
        match self {
            Ending::None => b"",
            Ending::Lf => b"\n",
            Ending::CrLf => b"\r\n",
        }
    }
}

/// What a line is, as far as the rewrite cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineKind {
    Blank,
    /// Session-level `o=`.
    Origin,
    /// `c=` at session or media level.
    Connection,
    /// `m=`.
    Media,
    /// `i=` (the media-level `c=` goes after it).
    Info,
    /// Media-level `a=rtcp:`.
    Rtcp,
    /// An ICE attribute at session or media level.
    Ice,
    Other,
}

/// Line layout of one media section.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Section {
    /// Index of the `m=` line.
    m_line: usize,
    /// One past the index of the section's last line.
    end: usize,
    /// Index of the section's own `c=` line.
    c_line: Option<usize>,
}

/// One `m=` section and the attributes rtpark cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// Media type from `m=`: "audio", "video", "application", ...
    pub kind: String,
    /// Port from `m=`; 0 is a rejected or disabled stream.
    pub port: u16,
    /// Transport protocol from `m=`: "RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF", ...
    pub proto: String,
    /// Format list from `m=`, as written.
    pub formats: Vec<String>,
    /// Effective address: the media-level `c=`, else the session-level `c=`.
    pub connection: Option<IpAddr>,
    /// The first `a=rtcp:` of the section.
    pub rtcp: Option<RtcpAttr>,
    /// Whether `a=rtcp-mux` is present.
    pub rtcp_mux: bool,
    /// Effective direction: media-level attribute, else session-level, else sendrecv.
    pub direction: Direction,
    /// One entry per RTP payload type of `formats` with a known encoding, in `m=` order.
    pub codecs: Vec<Rtpmap>,
    /// `a=ptime` in milliseconds.
    pub ptime: Option<u32>,
    /// Whether any ICE attribute is in this section.
    pub has_ice: bool,
}

impl Media {
    /// Whether the stream is on hold the RFC 2543 way: a zero connection address
    /// (`0.0.0.0`, `::`), except with port 9, which is trickle ICE's placeholder.
    pub fn zero_address_hold(&self) -> bool {
        self.connection.is_some_and(|a| a.is_unspecified()) && self.port != 9
    }
}

/// An `a=rtcp:port [IN IP4|IP6 addr]` attribute (RFC 3605).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpAttr {
    /// RTCP port.
    pub port: u16,
    /// RTCP address, when the attribute names one.
    pub addr: Option<IpAddr>,
}

/// A payload type's encoding, from `a=rtpmap` or the RFC 3551 static table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtpmap {
    /// RTP payload type, 0–127.
    pub pt: u8,
    /// Encoding name as written ("PCMU", "opus", "telephone-event", ...).
    pub name: String,
    /// Clock rate in Hz.
    pub rate: u32,
    /// Audio channels; 1 when not given.
    pub channels: u8,
}

/// Media direction attribute (RFC 8866 section 6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// `a=sendrecv`, the default.
    #[default]
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

/// What [`Sdp::rewrite`] changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// Per media section, by index; `None` or a missing entry leaves it untouched.
    pub media: Vec<Option<MediaRewrite>>,
    /// Replace the `o=` address (and its address type) with this one.
    pub origin: Option<IpAddr>,
    /// Rewrite the session-level `c=` even when every media section has its own `c=`.
    pub session_connection: bool,
    /// Drop ICE attributes at session level and in rewritten media sections.
    pub remove_ice: bool,
}

/// rtpark's side of one media stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaRewrite {
    /// rtpark's address for this stream.
    pub addr: IpAddr,
    /// rtpark's RTP port.
    pub rtp_port: u16,
    /// rtpark's RTCP port; `None` with rtcp-mux (an `a=rtcp` then points at `rtp_port`).
    pub rtcp_port: Option<u16>,
}

/// Why an SDP body was rejected.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum SdpError {
    /// The body has no bytes at all.
    #[error("SDP body is empty")]
    Empty,
    /// The body is larger than [`MAX_BODY_LEN`].
    #[error("SDP body is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Body length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body has more than [`MAX_MEDIA`] `m=` sections.
    #[error("SDP has more than {max} media sections (m= lines)")]
    TooManyMedia {
        /// The limit.
        max: usize,
    },
    /// The first line is not a `v=` line.
    #[error("SDP must start with a `v=` line, but line 1 is `{text}`")]
    NoVersion {
        /// The first line, shortened for display.
        text: String,
    },
    /// One line is malformed.
    #[error("SDP line {line} (`{text}`): {reason}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// The line, shortened for display.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl Sdp {
    /// Parses an SDP body; see the module documentation for what is accepted.
    pub fn parse(body: &[u8]) -> Result<Sdp, SdpError> {
        parse::parse(body)
    }

    /// The body exactly as it was parsed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.body
    }

    /// Session-level `c=` address, if any.
    pub fn session_connection(&self) -> Option<IpAddr> {
        self.session_connection
    }

    /// The `o=` address, if the `o=` line has a numeric one.
    pub fn origin(&self) -> Option<IpAddr> {
        self.origin
    }

    /// The media sections in order.
    pub fn media(&self) -> &[Media] {
        &self.media
    }

    /// Session-level direction attribute, if any.
    pub fn session_direction(&self) -> Option<Direction> {
        self.session_direction
    }

    /// Whether any ICE attribute sits at session level (e.g. `a=ice-lite`).
    pub fn session_has_ice(&self) -> bool {
        self.session_has_ice
    }

    /// Produces the rewritten body; see the module documentation for the rules.
    pub fn rewrite(&self, plan: &Rewrite) -> Vec<u8> {
        rewrite::rewrite(self, plan)
    }

    fn content(&self, line: usize) -> &[u8] {
        let l = &self.lines[line];
        &self.body[l.start..l.end]
    }
}

/// The address a rewritten line gets: `new`, or the zero address of `new`'s family
/// when the original signalled hold with a zero address.
fn zero_if(hold: bool, new: IpAddr) -> IpAddr {
    match new {
        IpAddr::V4(_) if hold => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) if hold => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        _ => new,
    }
}

/// `IP4 1.2.3.4` or `IP6 ::1`, as `c=`, `o=` and `a=rtcp` write an address.
fn typed_addr(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("IP4 {a}"),
        IpAddr::V6(a) => format!("IP6 {a}"),
    }
}

#[doc(hidden)]
pub mod fuzzing {
    //! Property check shared by the cargo-fuzz target (`fuzz/`) and the corpus replay
    //! test (`tests/fuzz-corpus-replay.rs`). It panics on a violated property, which
    //! is the point. Not part of the API.

    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;

    /// Parses `data`; if it parses, checks that an empty plan reproduces it exactly,
    /// then rewrites it with a plan derived from the input and checks the output
    /// re-parses to the planned values with every line the rewrite does not own
    /// unchanged and in order.
    pub fn check_sdp_rewrite(data: &[u8]) {
        let sdp = match Sdp::parse(data) {
            Ok(sdp) => sdp,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                return;
            }
        };
        assert_eq!(
            sdp.rewrite(&Rewrite::default()),
            data,
            "empty plan changed the body"
        );

        let plan = plan_from(data, sdp.media().len());
        let out = sdp.rewrite(&plan);
        let again = match Sdp::parse(&out) {
            Ok(again) => again,
            Err(SdpError::TooLarge { .. }) if out.len() > MAX_BODY_LEN => return,
            Err(e) => panic!("rewritten body does not parse: {e}"),
        };
        assert_eq!(
            again.media().len(),
            sdp.media().len(),
            "media count changed"
        );
        // Dropping an unterminated last ICE line may leave a terminated blank line last.
        let last_dropped =
            plan.remove_ice && sdp.lines.last().map(|l| l.kind) == Some(LineKind::Ice);
        if !last_dropped {
            assert_eq!(
                out.ends_with(b"\n"),
                data.ends_with(b"\n"),
                "final line ending changed"
            );
        }
        assert_eq!(again.session_direction(), sdp.session_direction());
        if let (Some(o), Some(_)) = (plan.origin, sdp.origin_line) {
            assert_eq!(again.origin(), Some(o), "origin not replaced");
        } else {
            assert_eq!(again.origin(), sdp.origin(), "origin changed");
        }
        if plan.remove_ice {
            assert!(!again.session_has_ice(), "session ICE survived remove_ice");
        } else {
            assert_eq!(again.session_has_ice(), sdp.session_has_ice());
        }

        for (i, (before, after)) in sdp.media().iter().zip(again.media()).enumerate() {
            check_media(before, after, plan.media.get(i).copied().flatten(), &plan);
        }
        assert_eq!(
            unowned_lines(&sdp, &plan),
            unowned_lines(&again, &plan),
            "a line the rewrite does not own changed"
        );
    }

    fn check_media(before: &Media, after: &Media, r: Option<MediaRewrite>, plan: &Rewrite) {
        assert_eq!(
            (&before.kind, &before.proto, &before.formats, &before.codecs),
            (&after.kind, &after.proto, &after.formats, &after.codecs)
        );
        assert_eq!(
            (before.rtcp_mux, before.direction, before.ptime),
            (after.rtcp_mux, after.direction, after.ptime)
        );
        let r = match r {
            Some(r) if before.port != 0 => r,
            _ => {
                assert_eq!(
                    (before.port, before.rtcp, before.has_ice),
                    (after.port, after.rtcp, after.has_ice)
                );
                if before.port != 0 {
                    assert_eq!(
                        before.connection, after.connection,
                        "untouched stream moved"
                    );
                }
                return;
            }
        };
        assert_eq!(after.port, r.rtp_port);
        let hold = before.zero_address_hold();
        assert_eq!(after.connection, Some(zero_if(hold, r.addr)));
        let rtcp_port = r.rtcp_port.unwrap_or(r.rtp_port);
        let want_rtcp = match before.rtcp {
            Some(rtcp) => Some(RtcpAttr {
                port: rtcp_port,
                addr: rtcp
                    .addr
                    .map(|a| zero_if(hold && a.is_unspecified(), r.addr)),
            }),
            None => r
                .rtcp_port
                .filter(|&p| Some(p) != r.rtp_port.checked_add(1))
                .map(|port| RtcpAttr { port, addr: None }),
        };
        assert_eq!(after.rtcp, want_rtcp);
        assert_eq!(after.has_ice, before.has_ice && !plan.remove_ice);
    }

    /// Contents of the lines no rewrite rule may touch or insert, in order.
    fn unowned_lines<'a>(sdp: &'a Sdp, plan: &Rewrite) -> Vec<&'a [u8]> {
        (0..sdp.lines.len())
            .filter(|&i| match sdp.lines[i].kind {
                LineKind::Connection | LineKind::Media | LineKind::Rtcp => false,
                LineKind::Origin => plan.origin.is_none(),
                LineKind::Ice => !plan.remove_ice,
                _ => true,
            })
            .map(|i| sdp.content(i))
            .collect()
    }

    /// A plan drawn from a hash of the input, so every input gets a fixed plan.
    fn plan_from(data: &[u8], media: usize) -> Rewrite {
        let mut state = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let mut next = move || {
            // xorshift64*: cheap and deterministic; a zero seed just gives a fixed plan.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let addr = |n: u64| -> IpAddr {
            if n & 1 == 0 {
                IpAddr::V4(Ipv4Addr::new(203, 0, 113, (n >> 8) as u8 | 1))
            } else {
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    0,
                    0,
                    0,
                    0,
                    (n >> 8) as u16 | 1,
                ))
            }
        };
        let mut plan = Rewrite::default();
        for _ in 0..media {
            let n = next();
            if n % 4 == 0 {
                plan.media.push(None);
                continue;
            }
            let rtp_port = (n >> 16) as u16;
            let rtcp_port = match (n >> 32) % 3 {
                0 => None,
                1 => rtp_port.checked_add(1),
                _ => Some((n >> 40) as u16),
            };
            plan.media.push(Some(MediaRewrite {
                addr: addr(n >> 48),
                rtp_port,
                rtcp_port,
            }));
        }
        let n = next();
        plan.origin = (n & 1 == 1).then(|| addr(n >> 8));
        plan.session_connection = n & 2 == 2;
        plan.remove_ice = n & 4 == 4;
        plan
    }
}
