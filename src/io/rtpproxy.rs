//! Runs rtpproxy-protocol commands (what the Kamailio and OpenSIPS `rtpproxy`
//! modules send) against the signalling layer.

use super::signalling::{codec_of, MediaOffer, Options, Side, Signalling};
use crate::control::rtpproxy::{
    capability_supported, ecode, format_error, format_feature, format_info, format_ok, format_port,
    format_query, format_stats, format_version, parse_bytes, Framing, InfoCounters, Interface,
    QueryCounters, Remote, RpCommand, Session, StatValue, Tag, DEFAULT_SUPPORTED,
};
use crate::control::{Command, ControlError, ErrorCode, MediaRef, PlayMedia, Repeat, Reply};
use crate::session::Codec;
use std::path::PathBuf;

/// The error answered when a reply of `len` bytes does not fit in a datagram
/// (rtpproxy's own replies never grow so large; an echoed cookie can).
pub fn reply_too_big(_len: usize) -> Vec<u8> {
    format_error(None, ecode::SYNTAX).into_bytes()
}

/// Runs one bare command (cookie already removed by the transport) and returns
/// the bare reply (the transport adds the cookie back).
pub fn handle(sig: &Signalling, input: &[u8]) -> Vec<u8> {
    let req = match parse_bytes(input, Framing::Bare) {
        Ok(r) => r,
        Err(e) => {
            log::info!(
                "rtpproxy: {:?}: E{}: {}",
                String::from_utf8_lossy(input),
                e.code,
                e.message
            );
            return format_error(None, e.code).into_bytes();
        }
    };
    match run(sig, req.command) {
        Ok(reply) => reply,
        Err((code, e)) => {
            log::info!(
                "rtpproxy: {:?}: E{code}: {}",
                String::from_utf8_lossy(input),
                e.message
            );
            format_error(None, code)
        }
    }
    .into_bytes()
}

type RpResult = Result<String, (u32, ControlError)>;

fn run(sig: &Signalling, cmd: RpCommand) -> RpResult {
    match cmd {
        RpCommand::Version => Ok(format_version(None)),
        RpCommand::VersionFeature(date) => Ok(format_feature(
            None,
            capability_supported(&date, DEFAULT_SUPPORTED),
        )),
        RpCommand::Update(s) => update(sig, Side::Offer, s),
        RpCommand::Lookup(s) => update(sig, Side::Answer, s),
        RpCommand::Delete(d) => {
            sig.delete(&d.call_id)
                .map_err(|e| (ecode::SESSION_NOT_FOUND, e))?;
            Ok(format_ok(None))
        }
        RpCommand::Play(p) => {
            let leg = leg_of(sig, &p.call_id, &p.from_tag)?;
            if p.uses_session_codecs() && !sig.codecs_signalled(&p.call_id) {
                return Err((
                    ecode::INVALID_ARGUMENT,
                    ControlError::new(
                        ErrorCode::InvalidField,
                        "P with `session` codecs, but U/L named none (no c modifier)",
                    ),
                ));
            }
            let repeat = match p.count {
                // `P0` only stops what plays, as in rtpproxy.
                0 => {
                    sig.engine()
                        .execute(Command::StopMedia { leg })
                        .map_err(|e| (ecode::SESSION_NOT_FOUND, e))?;
                    return Ok(format_ok(None));
                }
                c if c < 0 => Repeat::Forever,
                c => Repeat::Times(c as u32),
            };
            sig.engine()
                .execute(Command::PlayMedia(PlayMedia {
                    leg,
                    media: MediaRef::Prompt(PathBuf::from(&p.prompt)),
                    repeat,
                    start_ms: 0,
                    hold: false,
                }))
                .map_err(|e| (ecode::PLAY_FAILED, e))?;
            Ok(format_ok(None))
        }
        RpCommand::Stop(s) => {
            let leg = leg_of(sig, &s.call_id, &s.from_tag)?;
            sig.engine()
                .execute(Command::StopMedia { leg })
                .map_err(|e| (ecode::SESSION_NOT_FOUND, e))?;
            Ok(format_ok(None))
        }
        RpCommand::Query(q) => {
            let info = sig
                .query(&q.call_id)
                .map_err(|e| (ecode::SESSION_NOT_FOUND, e))?;
            let mine = leg_of(sig, &q.call_id, &q.from_tag)?;
            let mut c = QueryCounters {
                ttl: sig.engine().media_timeout_secs() as i64,
                ..QueryCounters::default()
            };
            for leg in &info.call.legs {
                let n = &leg.counters;
                if leg.leg == mine {
                    c.packets_in_a += n.rtp_in;
                } else if leg.peer.as_deref() == Some(mine.as_str()) {
                    c.packets_in_o += n.rtp_in;
                } else {
                    continue;
                }
                // rtpproxy's nrelayed does not count played packets.
                c.relayed += n.relayed();
                c.dropped += n.dropped();
            }
            if q.stats.is_empty() {
                return Ok(format_query(None, q.verbose, &c));
            }
            let mut values = Vec::with_capacity(q.stats.len());
            for name in &q.stats {
                let v = match name.as_str() {
                    "ttl" => c.ttl,
                    "npkts_ina" => c.packets_in_a as i64,
                    "npkts_ino" => c.packets_in_o as i64,
                    "nrelayed" => c.relayed as i64,
                    "ndropped" => c.dropped as i64,
                    other => {
                        return Err((
                            ecode::QUERY_FAILED,
                            ControlError::new(
                                ErrorCode::InvalidField,
                                format!("rtpark has no `{other}` counter (it keeps no RTP analysis); ask for ttl, npkts_ina, npkts_ino, nrelayed or ndropped"),
                            ),
                        ))
                    }
                };
                values.push((name.as_str(), StatValue::Int(v)));
            }
            Ok(format_stats(None, q.verbose, &values))
        }
        RpCommand::Info { .. } => {
            let st = sig.stats();
            let (totals, streams) = match sig.engine().execute(Command::Stats) {
                Ok(Reply::Stats(s)) => (s.totals, s.legs as u64),
                _ => Default::default(),
            };
            Ok(format_info(
                None,
                &InfoCounters {
                    sessions_created: st.created,
                    sessions_active: st.calls as u64,
                    streams_active: streams,
                    packets_received: totals.rtp_in,
                    packets_transmitted: totals.rtp_out,
                    average_load: None,
                },
            ))
        }
        RpCommand::GetStats { verbose, names } => {
            let st = sig.stats();
            let totals = match sig.engine().execute(Command::Stats) {
                Ok(Reply::Stats(s)) => s.totals,
                _ => Default::default(),
            };
            let mut values = Vec::with_capacity(names.len());
            for name in &names {
                let v = match name.as_str() {
                    "nsess_created" => st.created,
                    "nsess_destroyed" => st.deleted,
                    "nsess_timeout" => st.timed_out,
                    // Packet counters cover the calls now up.
                    "npkt_rcvd" => totals.rtp_in,
                    "npkt_relayed" => totals.relayed(),
                    "npkt_played" => totals.media_out,
                    "npkt_discard" => totals.dropped(),
                    other => {
                        return Err((
                            ecode::STATS_FAILED,
                            ControlError::new(
                                ErrorCode::InvalidField,
                                format!("no counter `{other}`; rtpark has nsess_created, nsess_destroyed, nsess_timeout, npkt_rcvd, npkt_relayed, npkt_played, npkt_discard"),
                            ),
                        ))
                    }
                };
                values.push((name.as_str(), StatValue::Int(v as i64)));
            }
            Ok(format_stats(None, verbose, &values))
        }
        RpCommand::DeleteAll => {
            sig.delete_all();
            Ok(format_ok(None))
        }
        RpCommand::Record(_) | RpCommand::Copy(_) | RpCommand::NoRecord(_) => Err((
            ecode::COPY_FAILED,
            ControlError::new(ErrorCode::UnknownCommand, "rtpark does not record calls"),
        )),
    }
}

/// `U` (the offerer's address, `from_tag`) or `L` (the answerer's, `to_tag`).
fn update(sig: &Signalling, side: Side, s: Session) -> RpResult {
    // rtpark has one media interface: bridging modes have nothing to bridge.
    if let Some(i) = s.modifiers.interfaces.first() {
        let code = match i {
            Interface::External => ecode::EXTERNAL_INTERFACE,
            Interface::Internal => ecode::INTERNAL_INTERFACE,
        };
        return Err((
            code,
            ControlError::new(
                ErrorCode::InvalidField,
                "e/i bridging needs two interfaces; rtpark has one",
            ),
        ));
    }
    let remote = match s.remote() {
        Remote::Address(a) if s.port != 0 => Some(a),
        _ => None,
    };
    let offer = MediaOffer {
        remote,
        remote_rtcp: None,
        codecs: s
            .modifiers
            .codecs
            .iter()
            .filter_map(|&pt| static_codec(pt))
            .collect(),
        rtcp_mux: false,
        ptime: None,
        disabled: false,
    };
    let index = media_index(&s.from_tag)?;
    let opts = Options {
        // `a`: asymmetric, the endpoint sends from elsewhere; never latch.
        trust_address: s.modifiers.asymmetric,
    };
    let to = s.to_tag.as_ref().map(|t| t.tag.as_str());
    let result = sig.negotiate(
        side,
        &s.call_id,
        &s.from_tag.tag,
        to,
        &[(index, offer)],
        opts,
    );
    match result {
        Ok(n) => match n.locals.first().copied().flatten() {
            Some(l) => Ok(format_port(None, l.rtp_port, l.ip)),
            None => Ok(format_ok(None)),
        },
        // rtpproxy answers `L` for an unknown session with `0`.
        Err(e)
            if side == Side::Answer
                && matches!(e.code, ErrorCode::UnknownCall | ErrorCode::UnknownLeg) =>
        {
            log::info!(
                "rtpproxy: L for unknown session {}: {}",
                s.call_id,
                e.message
            );
            Ok(format_ok(None))
        }
        Err(e) => {
            let code = match e.code {
                ErrorCode::PortsExhausted => ecode::PORT_ALLOCATION_NEW,
                ErrorCode::UnknownCall | ErrorCode::UnknownLeg => ecode::SESSION_NOT_FOUND,
                _ => ecode::INTERNAL,
            };
            Err((code, e))
        }
    }
}

/// The 0-based media section a tag's `;medianum` names, within SDP's limit.
fn media_index(tag: &Tag) -> Result<usize, (u32, ControlError)> {
    let n = tag.medianum_or_first();
    if n == 0 || n as usize > crate::sdp::MAX_MEDIA {
        return Err((
            ecode::INVALID_ARGUMENT,
            ControlError::new(
                ErrorCode::InvalidField,
                format!(
                    "media number {n} is out of range 1..={}",
                    crate::sdp::MAX_MEDIA
                ),
            ),
        ));
    }
    Ok(n as usize - 1)
}

fn leg_of(sig: &Signalling, call_id: &str, tag: &Tag) -> Result<String, (u32, ControlError)> {
    let index = media_index(tag)?;
    sig.leg(call_id, &tag.tag, index)
        .map_err(|e| (ecode::SESSION_NOT_FOUND, e))
}

/// The codec of an RFC 3551 static payload type, if `pt` is one.
pub fn static_codec(pt: u8) -> Option<Codec> {
    crate::sdp::static_rtpmap(pt).map(codec_of)
}
