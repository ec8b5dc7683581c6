//! The command model every control front end parses into, and the replies and
//! events they format. No IO: `io` executes commands against the workers.

pub mod bencode;
pub mod native;
pub mod ng;
pub mod rtpproxy;

pub use crate::session::{Codec, LegCounters};
use serde::Serialize;
use std::net::SocketAddr;
use thiserror::Error;

/// A control request, independent of the protocol it arrived in.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Liveness check.
    Ping,
    /// Allocate a leg (an RTP/RTCP port pair) in a call, creating the call if new.
    CreateLeg(CreateLeg),
    /// Change a leg's signalled remote address, codecs or options.
    UpdateLeg(UpdateLeg),
    /// Bridge two legs so media flows both ways between them.
    Bridge {
        /// One leg.
        a: String,
        /// The other leg.
        b: String,
    },
    /// Take a leg out of its bridge (both sides stop relaying to each other).
    Unbridge {
        /// The leg.
        leg: String,
    },
    /// Delete one leg and release its ports.
    DeleteLeg {
        /// The leg.
        leg: String,
    },
    /// Delete a call with all its legs.
    DeleteCall {
        /// The call.
        call: String,
    },
    /// Describe one call and its legs.
    QueryCall {
        /// The call.
        call: String,
    },
    /// List every call.
    ListCalls,
    /// Engine-wide counters.
    Stats,
    /// Turn this control connection into an event stream.
    Subscribe,
    /// Put a leg on hold: it hears a MOH class, its audio reaches no one.
    Hold {
        /// The leg to hold (the one that hears the music).
        leg: String,
        /// MOH class; `default` when absent.
        class: Option<String>,
        /// What its peer hears meanwhile; the engine default when absent.
        peer_hears: Option<PeerHears>,
    },
    /// Take a leg off hold.
    Unhold {
        /// The leg.
        leg: String,
    },
    /// Play an announcement to a leg, then live media, MOH, or nothing.
    Play {
        /// The leg that hears it.
        leg: String,
        /// Announcement name from the media library.
        announcement: String,
        /// What follows.
        then: Then,
        /// MOH class for `then: moh`; `default` when absent.
        class: Option<String>,
    },
    /// Stop an announcement or music; the leg hears its peer again.
    StopPlay {
        /// The leg.
        leg: String,
    },
    /// List MOH classes and announcements.
    ListMedia,
    /// Park a leg in a lot: it leaves its bridge and hears the lot's MOH.
    Park {
        /// The leg to park.
        leg: String,
        /// The lot; `default` when absent.
        lot: Option<String>,
        /// A specific slot; the lot's policy picks one when absent.
        slot: Option<u32>,
        /// The leg that parked it (hears the slot number; named in events);
        /// its former peer when absent.
        parker: Option<String>,
    },
    /// Bridge a leg to a parked call (by slot, or the lot's longest waiting).
    Retrieve {
        /// The retrieving leg.
        leg: String,
        /// The lot; `default` when absent.
        lot: Option<String>,
        /// The slot; the longest-waiting call when absent.
        slot: Option<u32>,
    },
    /// Play a file, a blob or a library entry to a leg, a number of times or
    /// until stopped (the rtpproxy `P` and ng `play media` commands).
    PlayMedia(PlayMedia),
    /// End media started by `PlayMedia` or `Play`; the leg hears its peer again
    /// (a hold, if any, is left alone).
    StopMedia {
        /// The leg.
        leg: String,
    },
    /// Decide what happens to a leg's own audio on its way to its peer.
    SetIngress {
        /// The leg whose audio is blocked, silenced or relayed again.
        leg: String,
        /// What happens to it.
        ingress: crate::session::Ingress,
    },
    /// List parked calls.
    ListParked,
    /// List parking lots.
    ListLots,
}

/// Media to play, by where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaRef {
    /// A MOH class or an announcement of the library.
    Named(String),
    /// An audio file (WAV, FLAC, MP3, Ogg), decoded once and cached.
    File(std::path::PathBuf),
    /// rtpproxy's prompt resolution: pre-encoded `<path>.<pt>` files, else an
    /// audio file at the path, else the library entry named by its base name.
    Prompt(std::path::PathBuf),
    /// Audio file contents sent in the command.
    Blob(Vec<u8>),
}

/// How many times media plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// This many times (at least once).
    Times(u32),
    /// Until stopped.
    Forever,
}

/// Arguments of [`Command::PlayMedia`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlayMedia {
    /// The leg that hears it.
    pub leg: String,
    /// What to play.
    pub media: MediaRef,
    /// How often.
    pub repeat: Repeat,
    /// Where the first pass starts, in milliseconds.
    pub start_ms: u64,
    /// Also hold the leg: its own audio reaches no one meanwhile.
    pub hold: bool,
}

/// What the peer of a held leg hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerHears {
    /// No packets at all.
    Nothing,
    /// Silence frames in its codec, keeping its stream (and NAT bindings) alive.
    Silence,
}

/// What follows an announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// The leg hears its peer again.
    Live,
    /// The leg hears music on hold.
    Moh,
    /// The leg hears nothing.
    Nothing,
}

/// Arguments of [`Command::CreateLeg`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateLeg {
    /// The call the leg belongs to (created on first use).
    pub call: String,
    /// A name for the leg, unique in the engine; generated when absent.
    pub leg: Option<String>,
    /// Where the leg's endpoint says it receives RTP (from its SDP).
    pub remote: Option<SocketAddr>,
    /// Where it receives RTCP, if not at the RTP port + 1.
    pub remote_rtcp: Option<SocketAddr>,
    /// Send to the signalled address and never learn one from received packets.
    pub trust_address: bool,
    /// RTP and RTCP share the RTP port (RFC 5761).
    pub rtcp_mux: bool,
    /// Codecs offered for this leg, in preference order.
    pub codecs: Vec<Codec>,
    /// Seconds without RTP before a media-timeout event (engine default if absent).
    pub media_timeout: Option<u32>,
    /// The leg is expected to be silent (e.g. on hold): use the longer timeout.
    pub silent: bool,
    /// Start a new SSRC at every source switch instead of continuing one stream.
    pub ssrc_per_source: bool,
    /// Packet time for media played to the leg (ms; engine default when absent).
    pub ptime: Option<u32>,
}

/// Arguments of [`Command::UpdateLeg`]; absent fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateLeg {
    /// The leg.
    pub leg: String,
    /// New signalled RTP address; opens the re-latch window.
    pub remote: Option<SocketAddr>,
    /// New signalled RTCP address.
    pub remote_rtcp: Option<SocketAddr>,
    /// New codec list.
    pub codecs: Option<Vec<Codec>>,
    /// New rtcp-mux setting.
    pub rtcp_mux: Option<bool>,
    /// New silent-leg setting.
    pub silent: Option<bool>,
    /// New packet time for media played to the leg.
    pub ptime: Option<u32>,
}

/// A failed command: a stable machine-readable code and a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{code}: {message}")]
pub struct ControlError {
    /// Stable code, part of the protocol.
    pub code: ErrorCode,
    /// What was wrong and what to do about it.
    pub message: String,
}

impl ControlError {
    /// Builds an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ControlError {
            code,
            message: message.into(),
        }
    }
}

/// Stable error codes of the control protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is not valid JSON (or not the protocol's framing).
    BadRequest,
    /// The command name is not known.
    UnknownCommand,
    /// A required field is missing.
    MissingField,
    /// A field has the wrong type or an invalid value.
    InvalidField,
    /// No leg has that name.
    UnknownLeg,
    /// No call has that id.
    UnknownCall,
    /// A leg with that name already exists.
    LegExists,
    /// The configured port range has no free pair left.
    PortsExhausted,
    /// The operation does not apply to the leg in its current state.
    InvalidState,
    /// No MOH class or announcement has that name.
    UnknownMedia,
    /// No parking lot has that name.
    UnknownLot,
    /// The requested parking slot is taken.
    SlotTaken,
    /// Every slot of the lot is taken.
    LotFull,
    /// Nothing is parked there (or it was already retrieved or released).
    SlotEmpty,
    /// The engine failed internally (a bug or a resource problem); see the log.
    Internal,
}

impl ErrorCode {
    /// The code's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::UnknownLeg => "unknown_leg",
            ErrorCode::UnknownCall => "unknown_call",
            ErrorCode::LegExists => "leg_exists",
            ErrorCode::PortsExhausted => "ports_exhausted",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::UnknownMedia => "unknown_media",
            ErrorCode::UnknownLot => "unknown_lot",
            ErrorCode::SlotTaken => "slot_taken",
            ErrorCode::LotFull => "lot_full",
            ErrorCode::SlotEmpty => "slot_empty",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The successful result of a command.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// Nothing to report beyond success.
    Done {},
    /// Answer to `ping`.
    Pong {
        /// Always `"pong"`.
        pong: &'static str,
    },
    /// A leg was created.
    LegCreated(LegCreated),
    /// One call.
    Call(CallInfo),
    /// All calls.
    Calls {
        /// The calls.
        calls: Vec<CallInfo>,
    },
    /// Engine counters.
    Stats(Stats),
    /// A leg was parked.
    Parked {
        /// The lot.
        lot: String,
        /// The slot.
        slot: u32,
    },
    /// A parked call was retrieved.
    Retrieved {
        /// The lot.
        lot: String,
        /// The slot.
        slot: u32,
        /// The parked call.
        call: String,
        /// The parked leg, now bridged to the retriever.
        parked_leg: String,
    },
    /// Parked calls.
    ParkedList {
        /// The parked calls.
        parked: Vec<crate::session::park::ParkedInfo>,
    },
    /// Parking lots.
    Lots {
        /// The lots.
        lots: Vec<crate::session::park::LotInfo>,
    },
    /// The media library.
    Media {
        /// Classes and announcements.
        media: Vec<crate::media::library::MediaInfo>,
    },
    /// Media started playing.
    Playing {
        /// Length of one pass, in milliseconds.
        duration_ms: u64,
    },
    /// The connection now carries events.
    Subscribed {
        /// Always `true`.
        subscribed: bool,
    },
}

/// Result of [`Command::CreateLeg`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LegCreated {
    /// The call.
    pub call: String,
    /// The leg's name.
    pub leg: String,
    /// The address to put in SDP (the advertised address of the interface).
    pub ip: std::net::IpAddr,
    /// Local RTP port (even).
    pub rtp_port: u16,
    /// Local RTCP port (RTP + 1).
    pub rtcp_port: u16,
}

/// A call and its legs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallInfo {
    /// The call id.
    pub call: String,
    /// Seconds since the call was created.
    pub age_secs: f64,
    /// Its legs.
    pub legs: Vec<LegInfo>,
}

/// One leg's state and counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LegInfo {
    /// The leg's name.
    pub leg: String,
    /// Local RTP port.
    pub rtp_port: u16,
    /// Local RTCP port.
    pub rtcp_port: u16,
    /// Signalled RTP address, if any.
    pub remote: Option<SocketAddr>,
    /// Address learned from received RTP, if latched.
    pub latched: Option<SocketAddr>,
    /// SSRC seen from the endpoint, if any.
    pub ssrc: Option<u32>,
    /// The leg it is bridged to.
    pub peer: Option<String>,
    /// `live`, `idle` (no peer), `held`, `playing` (an announcement or music
    /// without hold) or `silent` (its peer is held and it hears nothing).
    pub state: &'static str,
    /// No RTP arrived for the media timeout (cleared by the next packet).
    pub media_timed_out: bool,
    /// Packet and byte counters.
    pub counters: LegCounters,
}

/// Engine-wide counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Seconds since start.
    pub uptime_secs: f64,
    /// Which packet backend runs: `io_uring` or `epoll`.
    pub backend: &'static str,
    /// Number of worker threads.
    pub workers: usize,
    /// Calls in the engine.
    pub calls: usize,
    /// Legs in the engine.
    pub legs: usize,
    /// Port pairs still free.
    pub free_port_pairs: usize,
    /// Free port pairs kept bound for the next calls.
    pub warm_port_pairs: usize,
    /// Datagrams that reached a port after its leg ended, dropped as it was parked.
    pub stale_dropped: u64,
    /// Totals over all current legs.
    pub totals: LegCounters,
    /// Sends the kernel refused (e.g. buffer full, unreachable).
    pub send_errors: u64,
}

/// An asynchronous notification for subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A leg received no RTP for its media timeout.
    MediaTimeout {
        /// The call.
        call: String,
        /// The leg.
        leg: String,
        /// The timeout that elapsed, in seconds.
        after_secs: u32,
    },
    /// An announcement finished playing to a leg.
    PlaybackDone {
        /// The call.
        call: String,
        /// The leg.
        leg: String,
        /// The announcement.
        announcement: String,
    },
    /// A held caller pressed a key (RFC 4733 event received while on hold).
    Dtmf {
        /// The call.
        call: String,
        /// The leg.
        leg: String,
        /// The digit.
        digit: char,
        /// How long it was pressed, in milliseconds.
        duration_ms: u32,
    },
    /// A leg was parked (Asterisk ParkedCall, FreeSWITCH valet_info "hold").
    Parked {
        /// The lot.
        lot: String,
        /// The slot.
        slot: u32,
        /// The parked call.
        call: String,
        /// The parked leg.
        leg: String,
        /// Who parked it, if known.
        parker: Option<String>,
        /// Seconds until the park timeout.
        timeout_secs: u64,
    },
    /// A parked call was retrieved (Asterisk UnParkedCall, valet_info "bridge").
    Retrieved {
        /// The lot.
        lot: String,
        /// The slot.
        slot: u32,
        /// The parked call.
        call: String,
        /// The parked leg.
        leg: String,
        /// The leg that retrieved it.
        by: String,
        /// Who parked it, if known.
        parker: Option<String>,
        /// Seconds it waited.
        waited_secs: u64,
    },
    /// A parked call's time ran out (Asterisk ParkedCallTimeOut); it stays parked
    /// until the SIP core acts or the final timeout releases it.
    ParkTimeout {
        /// The lot.
        lot: String,
        /// The slot.
        slot: u32,
        /// The parked call.
        call: String,
        /// The parked leg.
        leg: String,
        /// Who parked it (to call back), if known.
        parker: Option<String>,
        /// Seconds it waited.
        waited_secs: u64,
    },
    /// The final timeout released a parked call's slot; the leg hears nothing.
    ParkReleased {
        /// The lot.
        lot: String,
        /// The slot.
        slot: u32,
        /// The call.
        call: String,
        /// The leg.
        leg: String,
        /// Who parked it, if known.
        parker: Option<String>,
        /// Seconds it waited.
        waited_secs: u64,
    },
    /// A parked caller went away (Asterisk ParkedCallGiveUp): deleted or silent.
    ParkGiveUp {
        /// The lot.
        lot: String,
        /// The slot.
        slot: u32,
        /// The call.
        call: String,
        /// The leg.
        leg: String,
        /// Who parked it, if known.
        parker: Option<String>,
        /// `deleted` or `media_timeout`.
        reason: &'static str,
        /// Seconds it waited.
        waited_secs: u64,
    },
    /// A slot became busy or free (for BLF lamps).
    SlotState {
        /// The lot.
        lot: String,
        /// The slot.
        slot: u32,
        /// `busy` or `free`.
        state: &'static str,
    },
    /// A call was deleted (by command or because its last leg went).
    CallDeleted {
        /// The call.
        call: String,
        /// Why: `command` or `last_leg`.
        reason: &'static str,
    },
}
