//! The SIP cores' model over the engine: a call is a Call-ID, a party is a SIP
//! tag, and each party has one leg per media section, facing its endpoint.
//! Both the rtpproxy and the ng front ends run offer/answer through here.
//!
//! An offer carries the SDP of the party named by `from-tag`; rtpark answers it
//! with the ports of the other party's legs (those go into the SDP the other
//! party receives, so it sends to them). An answer carries the SDP of the party
//! named by `to-tag`, and is answered with the offerer's ports. Until the answer
//! names it, the other party is "pending": its legs exist but have no tag.

use super::engine::Engine;
use crate::control::{
    CallInfo, Command, ControlError, CreateLeg, ErrorCode, MediaRef, PlayMedia, Repeat, Reply,
    UpdateLeg,
};
use crate::session::Codec;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// One media section of a party's SDP, as the front end read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaOffer {
    /// Where the party receives RTP; `None` for a zero address (RFC 2543 hold)
    /// or when not signalled.
    pub remote: Option<SocketAddr>,
    /// Where it receives RTCP, if signalled apart from RTP port + 1.
    pub remote_rtcp: Option<SocketAddr>,
    /// Its codecs.
    pub codecs: Vec<Codec>,
    /// It multiplexes RTCP on the RTP port.
    pub rtcp_mux: bool,
    /// Its packet time.
    pub ptime: Option<u32>,
    /// The stream is rejected (port 0): no legs for it.
    pub disabled: bool,
}

/// Per-command options shared by the protocols.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Send to the signalled address; never learn one from packets.
    pub trust_address: bool,
}

/// rtpark's side of one media section: where the party must send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    /// The advertised address.
    pub ip: IpAddr,
    /// RTP port.
    pub rtp_port: u16,
    /// RTCP port.
    pub rtcp_port: u16,
}

/// What a party plays to the other when it puts it on hold (ng `moh`).
#[derive(Debug, Clone, PartialEq)]
pub struct MohSpec {
    /// The music.
    pub media: MediaRef,
}

#[derive(Debug)]
struct Party {
    tag: Option<String>,
    /// Leg name per media section (index 0 = first m= line).
    legs: Vec<Option<String>>,
    /// Signalled address per media section, to tell a real change from a repeat.
    remotes: Vec<Option<SocketAddr>>,
    /// rtpark's address per media section: where the endpoint sends.
    locals: Vec<Option<Local>>,
    /// Index of the party it talks to.
    counterpart: Option<usize>,
    /// Music for the counterpart while this party holds it.
    moh: Option<MohSpec>,
    /// This party has put its counterpart on rtpark's music.
    holding: bool,
    created: SystemTime,
}

impl Party {
    fn new(tag: Option<&str>) -> Party {
        Party {
            tag: tag.map(str::to_owned),
            legs: Vec::new(),
            remotes: Vec::new(),
            locals: Vec::new(),
            counterpart: None,
            moh: None,
            holding: false,
            created: SystemTime::now(),
        }
    }
}

#[derive(Debug)]
struct SigCall {
    parties: Vec<Party>,
    created: SystemTime,
    last_signal: SystemTime,
    /// Some offer or answer named codecs (rtpproxy `P ... session` needs them).
    codecs: bool,
}

impl SigCall {
    fn party(&self, tag: &str) -> Option<usize> {
        self.parties
            .iter()
            .position(|p| p.tag.as_deref() == Some(tag))
    }
}

/// Which side of the call a command names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The SDP is the offerer's (`from-tag`); reply with the other party's ports.
    Offer,
    /// The SDP is the answerer's (`to-tag`); reply with the offerer's ports.
    Answer,
}

/// A party of a call, for queries.
#[derive(Debug, Clone, PartialEq)]
pub struct PartyInfo {
    /// Its tag, if known yet.
    pub tag: Option<String>,
    /// The tag of the party it talks to.
    pub peer_tag: Option<String>,
    /// Its legs by media section (`None` for a rejected stream).
    pub legs: Vec<Option<String>>,
    /// When it was created.
    pub created: SystemTime,
}

/// A call as the SIP-core protocols see it.
#[derive(Debug, Clone, PartialEq)]
pub struct SigCallInfo {
    /// When the call was created.
    pub created: SystemTime,
    /// When the last offer or answer arrived.
    pub last_signal: SystemTime,
    /// Its parties.
    pub parties: Vec<PartyInfo>,
    /// The engine's view: legs, states and counters.
    pub call: CallInfo,
}

/// Counters of the signalling layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SigStats {
    /// Calls now known.
    pub calls: usize,
    /// Calls created since start.
    pub created: u64,
    /// Calls deleted since start.
    pub deleted: u64,
    /// Of those, deleted because no leg received RTP for the media timeout.
    pub timed_out: u64,
}

/// What [`Signalling::negotiate`] did.
pub struct Negotiated {
    /// Per media entry, where the counterpart must send (`None`: rejected stream).
    pub locals: Vec<Option<Local>>,
    /// Whether this offer created the call.
    pub created: bool,
}

/// The call/tag directory in front of the engine.
pub struct Signalling {
    engine: Arc<Engine>,
    calls: Mutex<Directory>,
    started: Instant,
}

#[derive(Default)]
struct Directory {
    calls: HashMap<String, SigCall>,
    created: u64,
    deleted: u64,
    timed_out: u64,
}

fn unknown_call(call_id: &str) -> ControlError {
    ControlError::new(
        ErrorCode::UnknownCall,
        format!("unknown call-id `{call_id}`: no offer created it, or it was deleted"),
    )
}

fn unknown_tag(call_id: &str, tag: &str) -> ControlError {
    ControlError::new(
        ErrorCode::UnknownLeg,
        format!("call `{call_id}` has no party with tag `{tag}`"),
    )
}

impl Signalling {
    /// A signalling layer over `engine`.
    pub fn new(engine: Arc<Engine>) -> Signalling {
        Signalling {
            engine,
            calls: Mutex::new(Directory::default()),
            started: Instant::now(),
        }
    }

    /// The engine it drives.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Seconds since the layer started.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Runs an offer (`side = Offer`: `media` is `from_tag`'s) or an answer
    /// (`side = Answer`: `media` is `to_tag`'s). `media` pairs a media-section
    /// index with what the SDP says about it. Returns, per entry of `media`,
    /// where that party's counterpart must send (`None` for a rejected stream),
    /// and whether this offer created the call.
    pub fn negotiate(
        &self,
        side: Side,
        call_id: &str,
        from_tag: &str,
        to_tag: Option<&str>,
        media: &[(usize, MediaOffer)],
        opts: Options,
    ) -> Result<Negotiated, ControlError> {
        if call_id.is_empty() || from_tag.is_empty() {
            return Err(ControlError::new(
                ErrorCode::MissingField,
                "call-id and from-tag must not be empty",
            ));
        }
        let mut dir = lock(&self.calls);
        let is_new = !dir.calls.contains_key(call_id);
        if is_new && side == Side::Answer {
            return Err(unknown_call(call_id));
        }
        if is_new {
            dir.created += 1;
        }
        let call = dir
            .calls
            .entry(call_id.to_owned())
            .or_insert_with(|| SigCall {
                parties: Vec::new(),
                created: SystemTime::now(),
                last_signal: SystemTime::now(),
                codecs: false,
            });
        call.last_signal = SystemTime::now();
        call.codecs |= media.iter().any(|(_, m)| !m.codecs.is_empty());
        let (owner, other) = match side {
            Side::Offer => offer_parties(call, from_tag, to_tag),
            Side::Answer => {
                let Some(to) = to_tag.filter(|t| !t.is_empty()) else {
                    return Err(ControlError::new(
                        ErrorCode::MissingField,
                        "an answer needs the answering party's to-tag",
                    ));
                };
                let from = call
                    .party(from_tag)
                    .ok_or_else(|| unknown_tag(call_id, from_tag))?;
                (answer_party(call, from, to), from)
            }
        };
        let result = self.wire_media(call_id, call, owner, other, media, opts);
        if is_new && result.is_err() {
            // A failed first offer leaves nothing behind.
            self.abandon_locked(&mut dir, call_id);
        }
        result.map(|locals| Negotiated {
            locals,
            created: is_new,
        })
    }

    /// Undoes a call that its first offer created, when a later step of that
    /// offer failed: it is removed as if it had never been.
    pub fn abandon(&self, call_id: &str) {
        self.abandon_locked(&mut lock(&self.calls), call_id);
    }

    fn abandon_locked(&self, dir: &mut Directory, call_id: &str) {
        if dir.calls.remove(call_id).is_some() {
            dir.created -= 1;
            let _ = self.engine.execute(Command::DeleteCall {
                call: call_id.to_owned(),
            });
        }
    }

    /// Creates or updates the legs of `owner` (from `media`) and of `other`,
    /// bridges new pairs, and returns `other`'s locals.
    fn wire_media(
        &self,
        call_id: &str,
        call: &mut SigCall,
        owner: usize,
        other: usize,
        media: &[(usize, MediaOffer)],
        opts: Options,
    ) -> Result<Vec<Option<Local>>, ControlError> {
        let mut out = Vec::with_capacity(media.len());
        for (index, m) in media {
            let index = *index;
            if m.disabled {
                out.push(None);
                continue;
            }
            // Legs deleted behind our back (native protocol) are made again.
            for p in [owner, other] {
                self.forget_deleted(call, p, index);
            }
            if self.create_pair(call_id, call, [owner, other], index, m, opts)? {
                out.push(call.parties[other].locals[index]);
                continue;
            }
            let (owner_leg, owner_new) = self.ensure_leg(call_id, call, owner, index, m, opts)?;
            let (other_leg, other_new) =
                self.ensure_leg(call_id, call, other, index, &MediaOffer::default(), opts)?;
            if owner_new || other_new {
                self.engine.execute(Command::Bridge {
                    a: owner_leg.clone(),
                    b: other_leg.clone(),
                })?;
            }
            out.push(call.parties[other].locals[index]);
        }
        Ok(out)
    }

    /// Forgets party `p`'s leg for media section `index` if the engine no
    /// longer has it, with the ports it had.
    fn forget_deleted(&self, call: &mut SigCall, p: usize, index: usize) {
        let party = &mut call.parties[p];
        let gone = party
            .legs
            .get(index)
            .and_then(Option::as_deref)
            .is_some_and(|name| !self.engine.has_leg(name));
        if gone {
            party.legs[index] = None;
            party.remotes[index] = None;
            party.locals[index] = None;
        }
    }

    /// When neither party has a leg for media section `index` yet, creates
    /// both (the owner's from `m`) already bridged, with one engine request;
    /// returns whether it did.
    fn create_pair(
        &self,
        call_id: &str,
        call: &mut SigCall,
        [owner, other]: [usize; 2],
        index: usize,
        m: &MediaOffer,
        opts: Options,
    ) -> Result<bool, ControlError> {
        let has_leg = |p: usize| call.parties[p].legs.get(index).is_some_and(Option::is_some);
        if owner == other || has_leg(owner) || has_leg(other) {
            return Ok(false);
        }
        let create = |m: &MediaOffer| leg_args(call_id, m, opts);
        let none = MediaOffer::default();
        let created = self.engine.create_bridged_pair(create(m), create(&none))?;
        for ((p, m), c) in [(owner, m), (other, &none)].into_iter().zip(created) {
            let party = &mut call.parties[p];
            if party.legs.len() <= index {
                party.legs.resize(index + 1, None);
                party.remotes.resize(index + 1, None);
                party.locals.resize(index + 1, None);
            }
            party.legs[index] = Some(c.leg);
            party.remotes[index] = m.remote;
            party.locals[index] = Some(Local {
                ip: c.ip,
                rtp_port: c.rtp_port,
                rtcp_port: c.rtcp_port,
            });
        }
        Ok(true)
    }

    /// The leg of party `p` for media section `index`, created from `m` if
    /// missing, else updated with what changed. Returns (name, created).
    fn ensure_leg(
        &self,
        call_id: &str,
        call: &mut SigCall,
        p: usize,
        index: usize,
        m: &MediaOffer,
        opts: Options,
    ) -> Result<(String, bool), ControlError> {
        let party = &mut call.parties[p];
        if party.legs.len() <= index {
            party.legs.resize(index + 1, None);
            party.remotes.resize(index + 1, None);
            party.locals.resize(index + 1, None);
        }
        if let Some(name) = party.legs[index].clone() {
            let changed = m.remote.is_some() && m.remote != party.remotes[index];
            if changed || !m.codecs.is_empty() {
                let update = UpdateLeg {
                    leg: name.clone(),
                    remote: m.remote.filter(|_| changed),
                    remote_rtcp: m.remote_rtcp.filter(|_| changed),
                    codecs: (!m.codecs.is_empty()).then(|| m.codecs.clone()),
                    rtcp_mux: m.remote.map(|_| m.rtcp_mux),
                    silent: None,
                    ptime: m.ptime,
                };
                match self.engine.update_leg_deferred(update) {
                    Ok(_) => {}
                    // Deleted behind our back (native protocol): make a new one.
                    Err(e) if e.code == ErrorCode::UnknownLeg => {
                        party.legs[index] = None;
                        return self.ensure_leg(call_id, call, p, index, m, opts);
                    }
                    Err(e) => return Err(e),
                }
                if changed {
                    party.remotes[index] = m.remote;
                }
            }
            return Ok((name, false));
        }
        let created = self
            .engine
            .execute(Command::CreateLeg(leg_args(call_id, m, opts)))?;
        let Reply::LegCreated(c) = created else {
            return Err(ControlError::new(ErrorCode::Internal, "no leg created"));
        };
        party.legs[index] = Some(c.leg.clone());
        party.remotes[index] = m.remote;
        party.locals[index] = Some(Local {
            ip: c.ip,
            rtp_port: c.rtp_port,
            rtcp_port: c.rtcp_port,
        });
        Ok((c.leg, true))
    }

    /// Deletes a call with all its legs. (rtpark deletes at once; rtpengine's
    /// `delete-delay` is not emulated.)
    pub fn delete(&self, call_id: &str) -> Result<CallInfo, ControlError> {
        let mut dir = lock(&self.calls);
        let known = dir.calls.remove(call_id).is_some();
        if known {
            dir.deleted += 1;
        }
        match self.engine.delete_call_reporting(call_id) {
            Ok(info) => Ok(info),
            // Its legs were deleted behind our back (native protocol).
            Err(e) if e.code == ErrorCode::UnknownCall && known => Ok(CallInfo {
                call: call_id.to_owned(),
                age_secs: 0.0,
                legs: Vec::new(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Deletes every call (rtpproxy `X`).
    pub fn delete_all(&self) -> usize {
        let ids: Vec<String> = lock(&self.calls).calls.keys().cloned().collect();
        ids.iter().filter(|id| self.delete(id).is_ok()).count()
    }

    /// The legs of the party named `tag` (all media sections), or of every
    /// party when `tag` is `None`.
    pub fn legs(&self, call_id: &str, tag: Option<&str>) -> Result<Vec<String>, ControlError> {
        let dir = lock(&self.calls);
        let call = dir
            .calls
            .get(call_id)
            .ok_or_else(|| unknown_call(call_id))?;
        let parties: Vec<&Party> = match tag {
            Some(t) => vec![&call.parties[call.party(t).ok_or_else(|| unknown_tag(call_id, t))?]],
            None => call.parties.iter().collect(),
        };
        Ok(parties
            .into_iter()
            .flat_map(|p| p.legs.iter().flatten().cloned())
            .collect())
    }

    /// The leg of party `tag` for media section `index` (0-based).
    pub fn leg(&self, call_id: &str, tag: &str, index: usize) -> Result<String, ControlError> {
        let dir = lock(&self.calls);
        let call = dir
            .calls
            .get(call_id)
            .ok_or_else(|| unknown_call(call_id))?;
        let p = call.party(tag).ok_or_else(|| unknown_tag(call_id, tag))?;
        call.parties[p]
            .legs
            .get(index)
            .cloned()
            .flatten()
            .ok_or_else(|| {
                ControlError::new(
                    ErrorCode::UnknownLeg,
                    format!(
                        "party `{tag}` of call `{call_id}` has no media section {}",
                        index + 1
                    ),
                )
            })
    }

    /// Remembers what `tag` plays to its counterpart when it holds it (ng `moh`).
    pub fn set_moh(&self, call_id: &str, tag: &str, moh: MohSpec) -> Result<(), ControlError> {
        let mut dir = lock(&self.calls);
        let call = dir
            .calls
            .get_mut(call_id)
            .ok_or_else(|| unknown_call(call_id))?;
        let p = call.party(tag).ok_or_else(|| unknown_tag(call_id, tag))?;
        call.parties[p].moh = Some(moh);
        Ok(())
    }

    /// Applies a direction change signalled by `tag`'s SDP: `holds` (sendonly or
    /// inactive) starts its `moh` on the counterpart, sendrecv stops it.
    /// Does nothing for a party without `moh`.
    pub fn direction(&self, call_id: &str, tag: &str, holds: bool) -> Result<(), ControlError> {
        let mut dir = lock(&self.calls);
        let Some(call) = dir.calls.get_mut(call_id) else {
            return Ok(());
        };
        let Some(p) = call.party(tag) else {
            return Ok(());
        };
        let (Some(moh), Some(other)) = (call.parties[p].moh.clone(), call.parties[p].counterpart)
        else {
            return Ok(());
        };
        if holds == call.parties[p].holding {
            return Ok(());
        }
        let legs: Vec<String> = call.parties[other].legs.iter().flatten().cloned().collect();
        for leg in &legs {
            if holds {
                self.engine.execute(Command::PlayMedia(PlayMedia {
                    leg: leg.clone(),
                    media: moh.media.clone(),
                    repeat: Repeat::Forever,
                    start_ms: 0,
                    hold: true,
                }))?;
            } else {
                self.engine.execute(Command::Unhold { leg: leg.clone() })?;
            }
        }
        call.parties[p].holding = holds;
        Ok(())
    }

    /// A call's parties and the engine's view of its legs.
    pub fn query(&self, call_id: &str) -> Result<SigCallInfo, ControlError> {
        let dir = lock(&self.calls);
        let call = dir
            .calls
            .get(call_id)
            .ok_or_else(|| unknown_call(call_id))?;
        let info = match self.engine.execute(Command::QueryCall {
            call: call_id.to_owned(),
        })? {
            Reply::Call(info) => info,
            _ => return Err(ControlError::new(ErrorCode::Internal, "no call info")),
        };
        let parties = call
            .parties
            .iter()
            .map(|p| PartyInfo {
                tag: p.tag.clone(),
                peer_tag: p
                    .counterpart
                    .and_then(|c| call.parties.get(c))
                    .and_then(|c| c.tag.clone()),
                legs: p.legs.clone(),
                created: p.created,
            })
            .collect();
        Ok(SigCallInfo {
            created: call.created,
            last_signal: call.last_signal,
            parties,
            call: info,
        })
    }

    /// Handles an engine event: a SIP-core call none of whose legs has received
    /// RTP for the media timeout is deleted, as rtpengine and rtpproxy do (the
    /// SIP core may have lost the BYE). Native-protocol calls are left alone.
    pub fn on_event(&self, event: &crate::control::Event) {
        let crate::control::Event::MediaTimeout { call, .. } = event else {
            return;
        };
        if !lock(&self.calls).calls.contains_key(call) {
            return;
        }
        let Ok(Reply::Call(info)) = self
            .engine
            .execute(Command::QueryCall { call: call.clone() })
        else {
            return;
        };
        if info.legs.iter().all(|l| l.media_timed_out) {
            log::info!("call {call}: no RTP on any leg for the media timeout; deleting it");
            match self.delete(call) {
                Ok(_) => lock(&self.calls).timed_out += 1,
                Err(e) => log::warn!("call {call}: cannot delete after media timeout: {e}"),
            }
        }
    }

    /// Whether an offer or answer of the call named codecs.
    pub fn codecs_signalled(&self, call_id: &str) -> bool {
        lock(&self.calls)
            .calls
            .get(call_id)
            .is_some_and(|c| c.codecs)
    }

    /// Call-IDs, sorted, at most `limit`.
    pub fn list(&self, limit: usize) -> Vec<String> {
        let dir = lock(&self.calls);
        let mut ids: Vec<String> = dir.calls.keys().cloned().collect();
        ids.sort();
        ids.truncate(limit);
        ids
    }

    /// Counters.
    pub fn stats(&self) -> SigStats {
        let dir = lock(&self.calls);
        SigStats {
            calls: dir.calls.len(),
            created: dir.created,
            deleted: dir.deleted,
            timed_out: dir.timed_out,
        }
    }
}

/// The engine's codec for a payload type as SDP (or the static table) names it.
pub fn codec_of(m: crate::sdp::Rtpmap) -> Codec {
    Codec {
        pt: m.pt,
        name: m.name,
        rate: m.rate,
        channels: m.channels,
    }
}

/// The engine's arguments for a leg of `call_id` facing the endpoint `m` describes.
fn leg_args(call_id: &str, m: &MediaOffer, opts: Options) -> CreateLeg {
    CreateLeg {
        call: call_id.to_owned(),
        leg: None,
        remote: m.remote,
        remote_rtcp: m.remote_rtcp,
        trust_address: opts.trust_address,
        rtcp_mux: m.rtcp_mux,
        codecs: m.codecs.clone(),
        media_timeout: None,
        silent: false,
        ssrc_per_source: false,
        ptime: m.ptime,
    }
}

/// For an offer: the party of `from` (created if new) and its counterpart
/// (`to`'s party, else the pending party of an earlier offer, else a new one).
fn offer_parties(call: &mut SigCall, from: &str, to: Option<&str>) -> (usize, usize) {
    let owner = match call.party(from) {
        Some(p) => p,
        None => {
            call.parties.push(Party::new(Some(from)));
            call.parties.len() - 1
        }
    };
    let to = to.filter(|t| !t.is_empty());
    let other = match to.and_then(|t| call.party(t)) {
        Some(p) => p,
        None => match call.parties[owner].counterpart {
            Some(c) => {
                if let Some(t) = to {
                    call.parties[c].tag = Some(t.to_owned());
                }
                c
            }
            None => {
                call.parties.push(Party::new(to));
                call.parties.len() - 1
            }
        },
    };
    call.parties[owner].counterpart = Some(other);
    call.parties[other].counterpart = Some(owner);
    (owner, other)
}

/// For an answer to `from`'s offer: the answering party, tagged `to`. A
/// pending counterpart takes the tag; with forking, the latest answer wins.
fn answer_party(call: &mut SigCall, from: usize, to: &str) -> usize {
    let p = match call.party(to) {
        Some(p) => p,
        None => match call.parties[from].counterpart {
            Some(c) => {
                call.parties[c].tag = Some(to.to_owned());
                c
            }
            None => {
                call.parties.push(Party::new(Some(to)));
                call.parties.len() - 1
            }
        },
    };
    call.parties[from].counterpart = Some(p);
    call.parties[p].counterpart = Some(from);
    p
}

/// Locks a mutex, recovering from poisoning.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
