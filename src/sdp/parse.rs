//! Line splitting and the SDP parser.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::codec::static_rtpmap;
use super::{
    Direction, Ending, Line, LineKind, Media, RtcpAttr, Rtpmap, Sdp, SdpError, Section,
    MAX_BODY_LEN, MAX_MEDIA,
};

/// ICE attribute names (RFC 8839), compared without regard to case.
const ICE_ATTRIBUTES: &[&[u8]] = &[
    b"ice-ufrag",
    b"ice-pwd",
    b"ice-options",
    b"candidate",
    b"remote-candidates",
    b"end-of-candidates",
    b"ice-lite",
    b"ice-mismatch",
];

/// Longest line text an error message quotes.
const QUOTE_MAX: usize = 60;

/// Splits `body` at LF; a CR right before the LF belongs to the ending.
fn split_lines(body: &[u8]) -> Vec<(usize, usize, Ending)> {
    let mut lines = Vec::new();
    let mut start = 0;
    while start < body.len() {
        match body[start..].iter().position(|&b| b == b'\n') {
            Some(off) => {
                let nl = start + off;
                if nl > start && body[nl - 1] == b'\r' {
                    lines.push((start, nl - 1, Ending::CrLf));
                } else {
                    lines.push((start, nl, Ending::Lf));
                }
                start = nl + 1;
            }
            None => {
                lines.push((start, body.len(), Ending::None));
                break;
            }
        }
    }
    lines
}

/// Byte ranges of the space- or tab-separated fields of a value.
pub(super) fn fields(s: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        while pos < s.len() && is_blank(s[pos]) {
            pos += 1;
        }
        if pos >= s.len() {
            return None;
        }
        let start = pos;
        while pos < s.len() && !is_blank(s[pos]) {
            pos += 1;
        }
        Some((start, pos))
    })
}

/// The fields of a UTF-8 value, split exactly as [`fields`] splits.
fn str_fields(v: &str) -> impl Iterator<Item = &str> {
    v.split([' ', '\t']).filter(|f| !f.is_empty())
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A line shortened and made printable for an error message.
fn quote(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    if text.chars().count() > QUOTE_MAX {
        let cut: String = text.chars().take(QUOTE_MAX).collect();
        format!("{cut}…")
    } else {
        text.into_owned()
    }
}

fn utf8(v: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(v).map_err(|_| "is not valid UTF-8".to_owned())
}

/// A port field: decimal digits only, 0–65535.
fn parse_port(v: &[u8], what: &str) -> Result<u16, String> {
    let text = String::from_utf8_lossy(v);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(format!("{what} `{text}` is not a number"));
    }
    let n = v
        .iter()
        .try_fold(0u32, |n, &d| {
            n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
        })
        .filter(|&n| n <= u32::from(u16::MAX));
    match n {
        // The filter above keeps n within u16.
        Some(n) => Ok(n as u16),
        None => Err(format!("{what} `{text}` is out of range (0-65535)")),
    }
}

/// `IP4`/`IP6` plus a numeric address; a `/ttl` or `/count` suffix is ignored.
pub(super) fn parse_typed_addr(addr_type: &[u8], addr: &[u8]) -> Result<IpAddr, String> {
    let addr = addr.split(|&b| b == b'/').next().unwrap_or(addr);
    let text = String::from_utf8_lossy(addr);
    if addr_type.eq_ignore_ascii_case(b"IP4") {
        text.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| {
            format!("`{text}` is not an IPv4 address (rtpark needs a numeric address)")
        })
    } else if addr_type.eq_ignore_ascii_case(b"IP6") {
        text.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| {
            format!("`{text}` is not an IPv6 address (rtpark needs a numeric address)")
        })
    } else {
        Err(format!(
            "address type `{}` is not IP4 or IP6",
            String::from_utf8_lossy(addr_type)
        ))
    }
}

fn check_nettype(v: &[u8]) -> Result<(), String> {
    if v.eq_ignore_ascii_case(b"IN") {
        Ok(())
    } else {
        Err(format!(
            "network type `{}` is not `IN`",
            String::from_utf8_lossy(v)
        ))
    }
}

/// The value of a `c=` line: `IN IP4|IP6 <address>[/ttl]`.
fn parse_connection(v: &[u8]) -> Result<IpAddr, String> {
    let f: Vec<_> = fields(v).collect();
    if f.len() != 3 {
        return Err("c= needs exactly 3 fields: `IN IP4|IP6 <address>`".to_owned());
    }
    check_nettype(&v[f[0].0..f[0].1])?;
    parse_typed_addr(&v[f[1].0..f[1].1], &v[f[2].0..f[2].1])
}

/// The value of an `o=` line; the address may be a host name (then `None`).
fn parse_origin(v: &[u8]) -> Result<Option<IpAddr>, String> {
    let f: Vec<_> = fields(v).collect();
    if f.len() != 6 {
        return Err(
            "o= needs 6 fields: `<username> <sess-id> <sess-version> IN IP4|IP6 <address>`"
                .to_owned(),
        );
    }
    Ok(parse_typed_addr(&v[f[4].0..f[4].1], &v[f[5].0..f[5].1]).ok())
}

/// The value of an `a=rtcp:` attribute, after the colon.
pub(super) fn parse_rtcp(v: &[u8]) -> Result<RtcpAttr, String> {
    let f: Vec<_> = fields(v).collect();
    let Some(&(ps, pe)) = f.first() else {
        return Err("a=rtcp has no port".to_owned());
    };
    let port = parse_port(&v[ps..pe], "a=rtcp port")?;
    let addr = match f.len() {
        1 => None,
        4 => {
            check_nettype(&v[f[1].0..f[1].1])?;
            Some(parse_typed_addr(&v[f[2].0..f[2].1], &v[f[3].0..f[3].1])?)
        }
        _ => return Err("a=rtcp needs `<port>` or `<port> IN IP4|IP6 <address>`".to_owned()),
    };
    Ok(RtcpAttr { port, addr })
}

/// The value of an `a=rtpmap:` attribute, after the colon; `None` if malformed.
fn parse_rtpmap(v: &[u8]) -> Option<Rtpmap> {
    let v = std::str::from_utf8(v).ok()?;
    let mut f = str_fields(v);
    let pt: u8 = f.next()?.parse().ok().filter(|&pt| pt <= 127)?;
    let mut enc = f.next()?.split('/');
    let name = enc.next().filter(|n| !n.is_empty())?.to_owned();
    let rate = enc.next()?.parse().ok()?;
    let channels = match enc.next() {
        Some(c) => c.parse().ok().filter(|&c| c > 0)?,
        None => 1,
    };
    Some(Rtpmap {
        pt,
        name,
        rate,
        channels,
    })
}

/// An attribute's name (before the first colon) and value (after it, if any).
fn split_attribute(v: &[u8]) -> (&[u8], Option<&[u8]>) {
    match v.iter().position(|&b| b == b':') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    }
}

fn parse_direction(name: &[u8]) -> Option<Direction> {
    [
        (&b"sendrecv"[..], Direction::SendRecv),
        (b"sendonly", Direction::SendOnly),
        (b"recvonly", Direction::RecvOnly),
        (b"inactive", Direction::Inactive),
    ]
    .into_iter()
    .find(|(n, _)| name.eq_ignore_ascii_case(n))
    .map(|(_, d)| d)
}

fn is_ice(name: &[u8]) -> bool {
    ICE_ATTRIBUTES.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// A media section while its lines are being read.
struct SectionBuilder {
    section: Section,
    kind: String,
    port: u16,
    proto: String,
    formats: Vec<String>,
    connection: Option<IpAddr>,
    rtcp: Option<RtcpAttr>,
    rtcp_mux: bool,
    direction: Option<Direction>,
    rtpmaps: Vec<Rtpmap>,
    ptime: Option<u32>,
    has_ice: bool,
}

impl SectionBuilder {
    /// From the value of an `m=` line: `<media> <port>[/<count>] <proto> <fmt> ...`.
    fn new(m_line: usize, v: &[u8]) -> Result<SectionBuilder, String> {
        let v = utf8(v)?;
        let mut f = str_fields(v);
        let (Some(kind), Some(port), Some(proto)) = (f.next(), f.next(), f.next()) else {
            return Err(
                "m= needs at least 3 fields: `<media> <port> <proto> <fmt> ...`".to_owned(),
            );
        };
        let (port, count) = match port.split_once('/') {
            Some((p, c)) => (p, Some(c)),
            None => (port, None),
        };
        let port = parse_port(port.as_bytes(), "port")?;
        if let Some(c) = count {
            if c.is_empty()
                || !c.bytes().all(|b| b.is_ascii_digit())
                || c.bytes().all(|b| b == b'0')
            {
                return Err(format!(
                    "port count `{c}` after `/` is not a positive number"
                ));
            }
        }
        Ok(SectionBuilder {
            section: Section {
                m_line,
                end: m_line + 1,
                c_line: None,
            },
            kind: kind.to_owned(),
            port,
            proto: proto.to_owned(),
            formats: f.map(str::to_owned).collect(),
            connection: None,
            rtcp: None,
            rtcp_mux: false,
            direction: None,
            rtpmaps: Vec::new(),
            ptime: None,
            has_ice: false,
        })
    }

    fn finish(
        mut self,
        end: usize,
        session_connection: Option<IpAddr>,
        session_direction: Option<Direction>,
    ) -> (Section, Media) {
        self.section.end = end;
        let is_rtp = self.proto.to_ascii_uppercase().contains("RTP/");
        let codecs = if is_rtp {
            self.formats
                .iter()
                .filter_map(|f| f.parse::<u8>().ok().filter(|&pt| pt <= 127))
                .filter_map(|pt| {
                    self.rtpmaps
                        .iter()
                        .find(|m| m.pt == pt)
                        .cloned()
                        .or_else(|| static_rtpmap(pt))
                })
                .collect()
        } else {
            Vec::new()
        };
        let media = Media {
            kind: self.kind,
            port: self.port,
            proto: self.proto,
            formats: self.formats,
            connection: self.connection.or(session_connection),
            rtcp: self.rtcp,
            rtcp_mux: self.rtcp_mux,
            direction: self.direction.or(session_direction).unwrap_or_default(),
            codecs,
            ptime: self.ptime,
            has_ice: self.has_ice,
        };
        (self.section, media)
    }
}

pub(super) fn parse(body: &[u8]) -> Result<Sdp, SdpError> {
    if body.is_empty() {
        return Err(SdpError::Empty);
    }
    if body.len() > MAX_BODY_LEN {
        return Err(SdpError::TooLarge {
            len: body.len(),
            max: MAX_BODY_LEN,
        });
    }
    let raw = split_lines(body);
    if !raw
        .first()
        .is_some_and(|&(s, e, _)| body[s..e].starts_with(b"v="))
    {
        let text = raw
            .first()
            .map(|&(s, e, _)| quote(&body[s..e]))
            .unwrap_or_default();
        return Err(SdpError::NoVersion { text });
    }

    let mut sdp = Sdp {
        body: body.to_vec(),
        lines: Vec::with_capacity(raw.len()),
        origin_line: None,
        origin: None,
        session_c_line: None,
        session_connection: None,
        session_direction: None,
        session_has_ice: false,
        sections: Vec::new(),
        media: Vec::new(),
    };
    let mut current: Option<SectionBuilder> = None;
    for (idx, &(start, end, ending)) in raw.iter().enumerate() {
        let content = &body[start..end];
        let bad = |reason: String| SdpError::BadLine {
            line: idx + 1,
            text: quote(content),
            reason,
        };
        if content.starts_with(b"m=")
            && sdp.media.len() + usize::from(current.is_some()) >= MAX_MEDIA
        {
            return Err(SdpError::TooManyMedia { max: MAX_MEDIA });
        }
        let kind = classify(&mut sdp, &mut current, idx, content).map_err(bad)?;
        sdp.lines.push(Line {
            start,
            end,
            ending,
            kind,
        });
    }
    if let Some(section) = current.take() {
        let (sec, media) = section.finish(raw.len(), sdp.session_connection, sdp.session_direction);
        sdp.sections.push(sec);
        sdp.media.push(media);
    }
    Ok(sdp)
}

/// Checks one line, records what it says, and tells what kind of line it is.
fn classify(
    sdp: &mut Sdp,
    current: &mut Option<SectionBuilder>,
    idx: usize,
    content: &[u8],
) -> Result<LineKind, String> {
    if content.contains(&b'\r') {
        return Err("has a carriage return inside it (lines must end in CRLF or LF)".to_owned());
    }
    if content.contains(&0) {
        return Err("contains a NUL byte".to_owned());
    }
    if content.iter().all(|&b| is_blank(b)) {
        return Ok(LineKind::Blank);
    }
    if content.len() < 2 || !content[0].is_ascii_alphabetic() || content[1] != b'=' {
        return Err("is not of the form `<letter>=<value>`".to_owned());
    }
    let value = &content[2..];
    match content[0] {
        b'm' => {
            let next = SectionBuilder::new(idx, value)?;
            if let Some(prev) = current.replace(next) {
                let (sec, media) = prev.finish(idx, sdp.session_connection, sdp.session_direction);
                sdp.sections.push(sec);
                sdp.media.push(media);
            }
            Ok(LineKind::Media)
        }
        b'c' => {
            let addr = parse_connection(value)?;
            match current {
                Some(m) if m.section.c_line.is_some() => {
                    Err("second c= line in this media section; only one is allowed".to_owned())
                }
                Some(m) => {
                    m.section.c_line = Some(idx);
                    m.connection = Some(addr);
                    Ok(LineKind::Connection)
                }
                None if sdp.session_c_line.is_some() => {
                    Err("second c= line at session level; only one is allowed".to_owned())
                }
                None => {
                    sdp.session_c_line = Some(idx);
                    sdp.session_connection = Some(addr);
                    Ok(LineKind::Connection)
                }
            }
        }
        b'o' if current.is_none() => {
            if sdp.origin_line.is_some() {
                return Err("second o= line; only one is allowed".to_owned());
            }
            sdp.origin = parse_origin(value)?;
            sdp.origin_line = Some(idx);
            Ok(LineKind::Origin)
        }
        b'i' => Ok(LineKind::Info),
        b'a' => classify_attribute(sdp, current, value),
        _ => Ok(LineKind::Other),
    }
}

fn classify_attribute(
    sdp: &mut Sdp,
    current: &mut Option<SectionBuilder>,
    value: &[u8],
) -> Result<LineKind, String> {
    let (name, arg) = split_attribute(value);
    if is_ice(name) {
        match current {
            Some(m) => m.has_ice = true,
            None => sdp.session_has_ice = true,
        }
        return Ok(LineKind::Ice);
    }
    if arg.is_none() {
        if let Some(d) = parse_direction(name) {
            match current {
                Some(m) => {
                    m.direction.get_or_insert(d);
                }
                None => {
                    sdp.session_direction.get_or_insert(d);
                }
            }
            return Ok(LineKind::Other);
        }
    }
    let Some(m) = current else {
        return Ok(LineKind::Other);
    };
    match arg {
        Some(arg) if name.eq_ignore_ascii_case(b"rtcp") => {
            let rtcp = parse_rtcp(arg)?;
            m.rtcp.get_or_insert(rtcp);
            Ok(LineKind::Rtcp)
        }
        Some(arg) if name.eq_ignore_ascii_case(b"rtpmap") => {
            if let Some(map) = parse_rtpmap(arg) {
                if !m.rtpmaps.iter().any(|r| r.pt == map.pt) {
                    m.rtpmaps.push(map);
                }
            }
            Ok(LineKind::Other)
        }
        Some(arg) if name.eq_ignore_ascii_case(b"ptime") => {
            if m.ptime.is_none() {
                m.ptime = std::str::from_utf8(arg)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
            }
            Ok(LineKind::Other)
        }
        None if name.eq_ignore_ascii_case(b"rtcp-mux") => {
            m.rtcp_mux = true;
            Ok(LineKind::Other)
        }
        _ => Ok(LineKind::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_each_ending_and_a_missing_final_one() {
        let body = b"v=0\r\no=x\ns=y";
        let lines = split_lines(body);
        assert_eq!(
            lines,
            vec![
                (0, 3, Ending::CrLf),
                (5, 8, Ending::Lf),
                (9, 12, Ending::None)
            ]
        );
        assert_eq!(
            split_lines(b"v=0\n\n"),
            vec![(0, 3, Ending::Lf), (4, 4, Ending::Lf)]
        );
    }

    #[test]
    fn fields_skip_runs_of_spaces_and_tabs() {
        let v = b" IN  IP4\t1.2.3.4 ";
        let f: Vec<_> = fields(v).map(|(s, e)| &v[s..e]).collect();
        assert_eq!(f, vec![&b"IN"[..], b"IP4", b"1.2.3.4"]);
    }

    #[test]
    fn port_parsing_rejects_signs_and_overflow() {
        assert_eq!(parse_port(b"65535", "port"), Ok(65535));
        assert_eq!(parse_port(b"00009", "port"), Ok(9));
        assert!(parse_port(b"+5", "port").is_err());
        assert!(parse_port(b"65536", "port")
            .unwrap_err()
            .contains("out of range"));
        assert!(parse_port(b"99999999999999999999", "port").is_err());
        assert!(parse_port(b"", "port").is_err());
    }

    #[test]
    fn rtcp_attribute_with_and_without_address() {
        assert_eq!(
            parse_rtcp(b"53001"),
            Ok(RtcpAttr {
                port: 53001,
                addr: None
            })
        );
        assert_eq!(
            parse_rtcp(b"53001 IN IP6 2001:db8::5"),
            Ok(RtcpAttr {
                port: 53001,
                addr: Some("2001:db8::5".parse().unwrap())
            })
        );
        assert!(parse_rtcp(b"").is_err());
        assert!(parse_rtcp(b"9 IN IP4").is_err());
    }

    #[test]
    fn rtpmap_defaults_channels_and_ignores_garbage() {
        assert_eq!(
            parse_rtpmap(b"111 opus/48000/2"),
            Some(Rtpmap {
                pt: 111,
                name: "opus".into(),
                rate: 48000,
                channels: 2
            })
        );
        assert_eq!(parse_rtpmap(b"0 PCMU/8000").map(|m| m.channels), Some(1));
        assert_eq!(parse_rtpmap(b"200 X/8000"), None);
        assert_eq!(parse_rtpmap(b"96 H264"), None);
        assert_eq!(parse_rtpmap(b"96 x/8000/0"), None);
    }
}
