//! Runs rtpengine "ng" commands (what the Kamailio and OpenSIPS `rtpengine`
//! modules send) against the signalling layer, rewriting SDP on the way.

use super::signalling::{codec_of, MediaOffer, MohSpec, Options, Side, Signalling};
use crate::control::bencode::{decode, BencodeErrorKind, Value};
use crate::control::ng::{parse_body, reply_error, reply_ok, reply_pong, NgCommand, NgRequest};
use crate::control::{
    Command, ControlError, ErrorCode, LegCounters, MediaRef, PlayMedia, Repeat, Reply,
};
use crate::sdp::{Direction, MediaRewrite, Rewrite, Sdp};
use crate::session::Ingress;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Whether the bytes read so far on a `unix:` ng connection hold a whole
/// dictionary (the module sends one bare dictionary and waits for the reply).
pub fn complete(buf: &[u8]) -> bool {
    match decode(buf) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind,
            BencodeErrorKind::UnexpectedEnd | BencodeErrorKind::StringTooLong { .. }
        ),
    }
}

/// Runs one request body (no cookie) and returns the encoded reply dictionary.
pub fn handle(sig: &Signalling, body: &[u8]) -> Vec<u8> {
    let reply = match parse_body(body) {
        Ok(req) => {
            let command = req.command;
            match run(sig, req) {
                Ok(v) => v,
                Err(e) => {
                    log::info!("ng {}: {}", command.name(), e.message);
                    // The exact reason Kamailio's module fails over to another node on.
                    if e.code == ErrorCode::PortsExhausted {
                        reply_error("Ran out of ports")
                    } else {
                        reply_error(&e.message)
                    }
                }
            }
        }
        Err(e) => {
            log::info!("ng: bad request: {}", e.reason());
            e.to_reply()
        }
    };
    reply.to_bytes()
}

/// The error answered when a reply of `len` bytes does not fit in a datagram.
pub fn reply_too_big(len: usize) -> Vec<u8> {
    reply_error(&format!(
        "the reply ({len} bytes) does not fit in a UDP datagram; send this command over a unix: socket"
    ))
    .to_bytes()
}

fn run(sig: &Signalling, req: NgRequest) -> Result<Value, ControlError> {
    match req.command {
        NgCommand::Ping => Ok(reply_pong()),
        NgCommand::Offer => offer_answer(sig, Side::Offer, req),
        NgCommand::Answer => offer_answer(sig, Side::Answer, req),
        NgCommand::Delete => {
            let call_id = call_id(&req)?;
            let info = sig.delete(call_id)?;
            let mut totals = LegCounters::default();
            for leg in &info.legs {
                totals.add(&leg.counters);
            }
            Ok(reply_ok(vec![
                ("created", Value::int(unix_secs(SystemTime::now()) - info.age_secs as i64)),
                ("totals", totals_value(&totals)),
            ]))
        }
        NgCommand::Query => query(sig, call_id(&req)?),
        NgCommand::List => {
            let limit = req.limit.unwrap_or(32).clamp(0, 1 << 20) as usize;
            Ok(reply_ok(vec![(
                "calls",
                Value::str_list(sig.list(limit)),
            )]))
        }
        NgCommand::Statistics => statistics(sig),
        NgCommand::PlayMedia => {
            let media = media_of(req.file.as_deref(), req.blob.as_deref(), req.db_id)?;
            let repeat = match req.repeat_times {
                Some(n) if n < 0 => Repeat::Forever,
                Some(n) => Repeat::Times(n.clamp(1, u32::MAX as i64) as u32),
                None => Repeat::Times(1),
            };
            let start_ms = req.start_pos.unwrap_or(0).max(0) as u64;
            let mut duration = 0;
            for leg in party_legs(sig, &req)? {
                let reply = sig.engine().execute(Command::PlayMedia(PlayMedia {
                    leg,
                    media: media.clone(),
                    repeat,
                    start_ms,
                    hold: false,
                }))?;
                if let Reply::Playing { duration_ms } = reply {
                    duration = duration_ms;
                }
            }
            Ok(reply_ok(vec![("duration", Value::int(duration as i64))]))
        }
        NgCommand::StopMedia => {
            for leg in party_legs(sig, &req)? {
                sig.engine().execute(Command::StopMedia { leg })?;
            }
            Ok(reply_ok(vec![]))
        }
        NgCommand::BlockMedia
        | NgCommand::UnblockMedia
        | NgCommand::SilenceMedia
        | NgCommand::UnsilenceMedia => {
            let ingress = match req.command {
                NgCommand::BlockMedia => Ingress::Block,
                NgCommand::SilenceMedia => Ingress::Silence,
                _ => Ingress::Relay,
            };
            // Without a from-tag these apply to the whole call, as in rtpengine.
            let legs = match req.from_tag.as_deref() {
                Some(_) if !req.flags.all => party_legs(sig, &req)?,
                _ => sig.legs(call_id(&req)?, None)?,
            };
            for leg in legs {
                sig.engine()
                    .execute(Command::SetIngress { leg, ingress })?;
            }
            Ok(reply_ok(vec![]))
        }
        other => Err(ControlError::new(
            ErrorCode::UnknownCommand,
            format!(
                "rtpark does not implement \"{}\"; it supports ping, offer, answer, delete, query, list, statistics, play media, stop media, block/unblock media and silence/unsilence media",
                other.name()
            ),
        )),
    }
}

fn call_id(req: &NgRequest) -> Result<&str, ControlError> {
    req.call_id
        .as_deref()
        .ok_or_else(|| ControlError::new(ErrorCode::MissingField, "No call-id in message"))
}

/// The legs a media command addresses: the `from-tag` party's, or every
/// party's with the `all` flag.
fn party_legs(sig: &Signalling, req: &NgRequest) -> Result<Vec<String>, ControlError> {
    let call_id = call_id(req)?;
    let tag = if req.flags.all {
        None
    } else {
        Some(req.from_tag.as_deref().ok_or_else(|| {
            ControlError::new(
                ErrorCode::MissingField,
                "No participant party specified (give from-tag or the flag all)",
            )
        })?)
    };
    sig.legs(call_id, tag)
}

/// What `file`, `blob` or `db-id` names: an existing file by path, else a
/// library class or announcement by the file's base name.
fn media_of(
    file: Option<&str>,
    blob: Option<&[u8]>,
    db_id: Option<i64>,
) -> Result<MediaRef, ControlError> {
    if let Some(f) = file {
        let path = Path::new(f);
        if path.exists() {
            return Ok(MediaRef::File(path.to_owned()));
        }
        let base = path.file_stem().and_then(|s| s.to_str()).unwrap_or(f);
        return Ok(MediaRef::Named(base.to_owned()));
    }
    if let Some(b) = blob {
        return Ok(MediaRef::Blob(b.to_vec()));
    }
    if db_id.is_some() {
        return Err(ControlError::new(
            ErrorCode::InvalidField,
            "db-id media is not supported: rtpark has no media database; give file or blob",
        ));
    }
    Err(ControlError::new(
        ErrorCode::MissingField,
        "No media file specified (give file or blob)",
    ))
}

fn offer_answer(sig: &Signalling, side: Side, req: NgRequest) -> Result<Value, ControlError> {
    let call_id = call_id(&req)?;
    let from_tag = req
        .from_tag
        .as_deref()
        .ok_or_else(|| ControlError::new(ErrorCode::MissingField, "No from-tag in message"))?;
    let body = req
        .sdp
        .as_deref()
        .ok_or_else(|| ControlError::new(ErrorCode::MissingField, "No SDP body in message"))?;
    let sdp = Sdp::parse(body).map_err(|e| {
        ControlError::new(ErrorCode::InvalidField, format!("Failed to parse SDP: {e}"))
    })?;
    let demux = req.rtcp_mux.iter().any(|f| f == "demux");
    let media: Vec<(usize, MediaOffer)> = sdp
        .media()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let addr = m.connection.filter(|a| !a.is_unspecified());
            let offer = MediaOffer {
                remote: addr.map(|a| SocketAddr::new(a, m.port)),
                remote_rtcp: m
                    .rtcp
                    .and_then(|r| r.addr.or(addr).map(|a| SocketAddr::new(a, r.port))),
                codecs: m.codecs.iter().map(|c| codec_of(c.clone())).collect(),
                rtcp_mux: m.rtcp_mux && !demux,
                ptime: m.ptime,
                // Port 0 is a rejected stream; non-RTP streams (T.38 over UDPTL,
                // BFCP) are left to flow directly.
                disabled: m.port == 0 || !m.proto.contains("RTP"),
            };
            (i, offer)
        })
        .collect();
    let owner = match side {
        Side::Offer => from_tag,
        Side::Answer => req
            .to_tag
            .as_deref()
            .ok_or_else(|| ControlError::new(ErrorCode::MissingField, "No to-tag in message"))?,
    };
    let opts = Options {
        trust_address: req.flags.trust_address || req.flags.asymmetric,
    };
    // Checked before anything is created, so that a bad moh refuses the offer whole.
    let moh = req
        .moh
        .as_ref()
        .map(|m| media_of(m.file.as_deref(), m.blob.as_deref(), m.db_id))
        .transpose()?;
    let negotiated = sig.negotiate(side, call_id, from_tag, req.to_tag.as_deref(), &media, opts)?;
    let locals = negotiated.locals;
    // The rest, once the legs exist: the rewritten SDP, the party's music on
    // hold and whether it holds.
    let finish = || -> Result<Value, ControlError> {
        let plan = Rewrite {
            media: media
                .iter()
                .zip(locals)
                .map(|((_, m), l)| {
                    l.map(|l| MediaRewrite {
                        addr: l.ip,
                        rtp_port: l.rtp_port,
                        // With rtcp-mux agreed (an answer keeping it), RTCP shares the port.
                        rtcp_port: if side == Side::Answer && m.rtcp_mux {
                            None
                        } else {
                            Some(l.rtcp_port)
                        },
                    })
                })
                .collect(),
            origin: req.replace.origin.then(|| sig.engine().advertised()),
            session_connection: req.replace.session_connection,
            // rtpark does not speak ICE: candidates would route media around it.
            remove_ice: true,
        };
        let rewritten = sdp.rewrite(&plan);
        if let Some(media) = moh {
            sig.set_moh(call_id, owner, MohSpec { media })?;
        }
        let holds = sdp
            .media()
            .iter()
            .find(|m| m.port != 0 && m.kind == "audio")
            .is_some_and(|m| {
                matches!(m.direction, Direction::SendOnly | Direction::Inactive)
                    || m.zero_address_hold()
            });
        sig.direction(call_id, owner, holds)?;
        Ok(reply_ok(vec![("sdp", Value::bytes(rewritten))]))
    };
    let finished = finish();
    if finished.is_err() && negotiated.created {
        // A first offer that fails leaves no call behind.
        sig.abandon(call_id);
    }
    finished
}

fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn totals_value(t: &LegCounters) -> Value {
    Value::dict([
        (
            "RTP",
            Value::dict([
                ("packets", Value::int(t.rtp_in as i64)),
                ("bytes", Value::int(t.rtp_in_bytes as i64)),
                (
                    "errors",
                    Value::int((t.dropped_malformed + t.dropped_foreign) as i64),
                ),
            ]),
        ),
        (
            "RTCP",
            Value::dict([
                ("packets", Value::int(t.rtcp_in as i64)),
                ("bytes", Value::int(0)),
                ("errors", Value::int(0)),
            ]),
        ),
    ])
}

fn query(sig: &Signalling, call_id: &str) -> Result<Value, ControlError> {
    let info = sig.query(call_id)?;
    let mut totals = LegCounters::default();
    let mut tags = Vec::new();
    for party in &info.parties {
        let Some(tag) = &party.tag else { continue };
        let mut medias = Vec::new();
        for (i, name) in party.legs.iter().enumerate() {
            let Some(leg) = name
                .as_ref()
                .and_then(|n| info.call.legs.iter().find(|l| &l.leg == n))
            else {
                continue;
            };
            totals.add(&leg.counters);
            let endpoint =
                leg.latched
                    .or(leg.remote)
                    .map_or(Value::dict(Vec::<(&str, Value)>::new()), |a| {
                        Value::dict([
                            (
                                "family",
                                Value::str(if a.is_ipv4() { "IPv4" } else { "IPv6" }),
                            ),
                            ("address", Value::str(&a.ip().to_string())),
                            ("port", Value::int(a.port() as i64)),
                        ])
                    });
            medias.push(Value::dict([
                ("index", Value::int(i as i64 + 1)),
                ("type", Value::str("audio")),
                ("state", Value::str(leg.state)),
                (
                    "streams",
                    Value::list(vec![Value::dict([
                        ("local port", Value::int(leg.rtp_port as i64)),
                        ("endpoint", endpoint),
                        (
                            "stats",
                            Value::dict([
                                ("packets", Value::int(leg.counters.rtp_in as i64)),
                                ("bytes", Value::int(leg.counters.rtp_in_bytes as i64)),
                                (
                                    "errors",
                                    Value::int(
                                        (leg.counters.dropped_malformed
                                            + leg.counters.dropped_foreign)
                                            as i64,
                                    ),
                                ),
                            ]),
                        ),
                        ("SSRC", Value::int(leg.ssrc.unwrap_or(0) as i64)),
                    ])]),
                ),
            ]));
        }
        let mut fields = vec![
            ("tag", Value::str(tag)),
            ("created", Value::int(unix_secs(party.created))),
            ("medias", Value::list(medias)),
        ];
        if let Some(peer) = &party.peer_tag {
            fields.push(("in dialogue with", Value::str(peer)));
        }
        tags.push((tag.clone(), Value::dict(fields)));
    }
    Ok(reply_ok(vec![
        ("created", Value::int(unix_secs(info.created))),
        ("last signal", Value::int(unix_secs(info.last_signal))),
        ("tags", Value::dict(tags)),
        ("totals", totals_value(&totals)),
    ]))
}

fn statistics(sig: &Signalling) -> Result<Value, ControlError> {
    let st = sig.stats();
    let engine = match sig.engine().execute(Command::Stats)? {
        Reply::Stats(s) => s,
        _ => Default::default(),
    };
    Ok(reply_ok(vec![(
        "statistics",
        Value::dict([
            (
                "currentstatistics",
                Value::dict([
                    ("sessionsown", Value::int(st.calls as i64)),
                    ("sessionsforeign", Value::int(0)),
                    ("sessionstotal", Value::int(st.calls as i64)),
                    ("transcodedmedia", Value::int(0)),
                ]),
            ),
            (
                "totalstatistics",
                Value::dict([
                    ("uptime", Value::int(sig.uptime_secs() as i64)),
                    ("managedsessions", Value::int(st.created as i64)),
                    ("closedsessions", Value::int(st.deleted as i64)),
                    ("packetsrelayed", Value::int(engine.totals.relayed() as i64)),
                    ("mediapackets", Value::int(engine.totals.media_out as i64)),
                ]),
            ),
        ]),
    )]))
}
