//! The line-preserving rewrite: replace, drop or insert whole lines, copy the rest.

use std::net::IpAddr;

use super::parse::{fields, parse_rtcp};
use super::{typed_addr, zero_if, Ending, LineKind, MediaRewrite, Rewrite, Sdp, Section};

/// Changes to the original lines, applied in one pass at the end.
struct Edits {
    /// New content for a line (its ending is kept).
    replaced: Vec<Option<Vec<u8>>>,
    /// Lines left out.
    dropped: Vec<bool>,
    /// New lines, each after an anchor line; several after one anchor keep push order.
    inserted: Vec<(usize, Vec<u8>)>,
}

pub(super) fn rewrite(sdp: &Sdp, plan: &Rewrite) -> Vec<u8> {
    let n = sdp.lines.len();
    let mut ed = Edits {
        replaced: vec![None; n],
        dropped: vec![false; n],
        inserted: Vec::new(),
    };

    if let (Some(addr), Some(o)) = (plan.origin, sdp.origin_line) {
        ed.replaced[o] = splice_addr(sdp.content(o), 4, addr);
    }
    if plan.remove_ice {
        let first_m = sdp.sections.first().map_or(n, |s| s.m_line);
        for i in 0..first_m {
            ed.dropped[i] = sdp.lines[i].kind == LineKind::Ice;
        }
    }

    // Port-0 sections are rejected streams: never rewritten, whatever the plan says.
    let planned = |i: usize| -> Option<MediaRewrite> {
        plan.media
            .get(i)
            .copied()
            .flatten()
            .filter(|_| sdp.media[i].port != 0)
    };
    let relies_on_session = |i: usize| sdp.sections[i].c_line.is_none();
    let count = sdp.sections.len();

    // The session c= follows the first rewritten section that relies on it; with
    // `session_connection`, the first rewritten section.
    let first_relying = (0..count).find(|&i| relies_on_session(i) && planned(i).is_some());
    let session_zero = sdp.session_connection.is_some_and(|a| a.is_unspecified());
    let session_target: Option<IpAddr> = match (sdp.session_c_line, first_relying) {
        (None, _) => None,
        (Some(_), Some(i)) => planned(i).map(|r| zero_if(sdp.media[i].zero_address_hold(), r.addr)),
        (Some(_), None) if plan.session_connection => (0..count)
            .find_map(planned)
            .map(|r| zero_if(session_zero, r.addr)),
        (Some(_), None) => None,
    };
    if let (Some(target), Some(c)) = (session_target, sdp.session_c_line) {
        ed.replaced[c] = splice_addr(sdp.content(c), 1, target);
    }
    let session_moved = session_target.is_some_and(|t| Some(t) != sdp.session_connection);

    for (i, sec) in sdp.sections.iter().enumerate() {
        let Some(r) = planned(i) else {
            if session_moved && relies_on_session(i) && sdp.media[i].port != 0 {
                // Pin the untouched stream to the address it had.
                if let Some(c) = sdp.session_c_line {
                    ed.inserted
                        .push((c_anchor(sdp, sec), sdp.content(c).to_vec()));
                }
            }
            continue;
        };
        ed.replaced[sec.m_line] = splice_port(sdp.content(sec.m_line), r.rtp_port);

        let hold = sdp.media[i].zero_address_hold();
        let want = zero_if(hold, r.addr);
        match sec.c_line {
            Some(c) => ed.replaced[c] = splice_addr(sdp.content(c), 1, want),
            None if session_target != Some(want) => ed.inserted.push((
                c_anchor(sdp, sec),
                format!("c=IN {}", typed_addr(want)).into_bytes(),
            )),
            None => {}
        }

        let rtcp_port = r.rtcp_port.unwrap_or(r.rtp_port);
        let mut has_rtcp = false;
        for l in sec.m_line + 1..sec.end {
            match sdp.lines[l].kind {
                LineKind::Rtcp => {
                    has_rtcp = true;
                    ed.replaced[l] = rewrite_rtcp(sdp.content(l), rtcp_port, r.addr, hold);
                }
                LineKind::Ice if plan.remove_ice => ed.dropped[l] = true,
                _ => {}
            }
        }
        if let Some(p) = r.rtcp_port {
            // RFC 3605: a=rtcp is needed only when RTCP is not on RTP + 1.
            if !has_rtcp && Some(p) != r.rtp_port.checked_add(1) {
                let anchor = (sec.m_line..sec.end)
                    .rev()
                    .find(|&l| sdp.lines[l].kind != LineKind::Blank)
                    .unwrap_or(sec.m_line);
                ed.inserted
                    .push((anchor, format!("a=rtcp:{p}").into_bytes()));
            }
        }
    }
    emit(sdp, ed)
}

/// Writes every kept line with its ending, and the inserted lines after their anchors.
fn emit(sdp: &Sdp, mut ed: Edits) -> Vec<u8> {
    ed.inserted.sort_by_key(|&(anchor, _)| anchor); // stable: keeps push order per anchor
    let default_ending = sdp
        .lines
        .iter()
        .map(|l| l.ending)
        .find(|&e| e != Ending::None)
        .unwrap_or(Ending::CrLf);

    let mut pieces: Vec<(&[u8], Ending)> = Vec::with_capacity(sdp.lines.len() + ed.inserted.len());
    let mut inserted = ed.inserted.iter().peekable();
    for (i, line) in sdp.lines.iter().enumerate() {
        if !ed.dropped[i] {
            let content = ed.replaced[i].as_deref().unwrap_or(sdp.content(i));
            pieces.push((content, line.ending));
        }
        while let Some((_, content)) = inserted.next_if(|(anchor, _)| *anchor == i) {
            pieces.push((content, line.ending));
        }
    }

    let extra: usize = ed.inserted.iter().map(|(_, c)| c.len() + 2).sum();
    let mut out = Vec::with_capacity(sdp.body.len() + extra + 64);
    let last = pieces.len().saturating_sub(1);
    for (k, &(content, ending)) in pieces.iter().enumerate() {
        out.extend_from_slice(content);
        // Only the unterminated last line, and lines inserted after it, carry no
        // ending; whichever of them comes out last stays unterminated.
        let ending = match ending {
            Ending::None if k == last => Ending::None,
            Ending::None => default_ending,
            e => e,
        };
        out.extend_from_slice(ending.bytes());
    }
    out
}

/// Where a media-level c= goes: after the m= line and any i= lines right after it.
fn c_anchor(sdp: &Sdp, sec: &Section) -> usize {
    let mut anchor = sec.m_line;
    while anchor + 1 < sec.end && sdp.lines[anchor + 1].kind == LineKind::Info {
        anchor += 1;
    }
    anchor
}

/// Replaces fields `first` and `first + 1` of a `x=` line's value (address type and
/// address) with `addr`'s; everything else stays byte-for-byte.
fn splice_addr(line: &[u8], first: usize, addr: IpAddr) -> Option<Vec<u8>> {
    let value = line.get(2..)?;
    let mut f = fields(value).skip(first);
    let (start, _) = f.next()?;
    let (_, end) = f.next()?;
    Some(splice(
        line,
        2 + start,
        2 + end,
        typed_addr(addr).as_bytes(),
    ))
}

/// Replaces the port field of an `m=` line (with any `/count`) with `port`.
fn splice_port(line: &[u8], port: u16) -> Option<Vec<u8>> {
    let value = line.get(2..)?;
    let (start, end) = fields(value).nth(1)?;
    Some(splice(
        line,
        2 + start,
        2 + end,
        port.to_string().as_bytes(),
    ))
}

/// Rewrites an `a=rtcp:` line's port, and its address if it has one (a zero address
/// stays zero when the section is on `hold`).
fn rewrite_rtcp(line: &[u8], port: u16, addr: IpAddr, hold: bool) -> Option<Vec<u8>> {
    let off = line.iter().position(|&b| b == b':')? + 1;
    let value = &line[off..];
    let original = parse_rtcp(value).ok()?;
    let f: Vec<_> = fields(value).collect();
    let (ps, pe) = *f.first()?;
    let mut out = Vec::with_capacity(line.len() + 40);
    out.extend_from_slice(&line[..off + ps]);
    out.extend_from_slice(port.to_string().as_bytes());
    match (original.addr, f.get(2), f.get(3)) {
        (Some(old), Some(&(ts, _)), Some(&(_, ae))) => {
            out.extend_from_slice(&value[pe..ts]);
            out.extend_from_slice(
                typed_addr(zero_if(hold && old.is_unspecified(), addr)).as_bytes(),
            );
            out.extend_from_slice(&value[ae..]);
        }
        _ => out.extend_from_slice(&value[pe..]),
    }
    Some(out)
}

fn splice(line: &[u8], start: usize, end: usize, with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + with.len());
    out.extend_from_slice(&line[..start]);
    out.extend_from_slice(with);
    out.extend_from_slice(&line[end..]);
    out
}
