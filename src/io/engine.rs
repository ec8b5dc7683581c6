//! The control executor: runs [`Command`]s against the workers and keeps the
//! directory of calls and legs. Commands are serialised by one mutex, which
//! makes every multi-step command atomic; the packet path never takes it.

use super::ports::{PortAllocator, PortError, PortPair};
use super::worker::{WorkerCtx, WorkerGone, WorkerHandle};
use crate::config::Config;
use crate::control::{
    CallInfo, Command, ControlError, CreateLeg, ErrorCode, Event, LegCounters, LegCreated, LegInfo,
    Reply, Stats, UpdateLeg,
};
use crate::control::{MediaRef, PeerHears, PlayMedia, Repeat, Then};
use crate::media::library::Library;
use crate::media::{Codec, MediaError};
use crate::session::park::{GiveUpReason, ParkError, ParkEvent, ParkingLots};
use crate::session::{
    After, Frames, LatchPolicy, LegConfig, LegKey, LegUpdate, Program, Repeated, SessionEvent,
    Source,
};
use crossbeam_channel::Sender;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

struct CallEntry {
    worker: usize,
    legs: Vec<String>,
    created: Instant,
}

/// A leg's key on its worker: known, or still being assigned by a posted job.
#[derive(Clone)]
enum KeyRef {
    Ready(LegKey),
    /// Filled by the posted job numbered `seq` on the leg's worker (`None` if
    /// the worker could not add the leg, whose sockets it then closed).
    Pending {
        slot: Arc<OnceLock<Option<LegKey>>>,
        seq: u64,
        port: u16,
    },
}

struct LegEntry {
    call: String,
    worker: usize,
    key: KeyRef,
    /// Packet time of media played to the leg (ms).
    ptime: u32,
}

/// A leg validated, named and bound, not yet on its worker.
struct PreparedLeg {
    name: String,
    worker: usize,
    config: LegConfig,
    sockets: PortPair,
}

struct Directory {
    ports: PortAllocator,
    lots: ParkingLots,
    calls: HashMap<String, CallEntry>,
    legs: HashMap<String, LegEntry>,
    legs_per_worker: Vec<usize>,
    next_leg: u64,
}

/// The engine as the control plane sees it.
pub struct Engine {
    dir: Mutex<Directory>,
    workers: Vec<WorkerHandle>,
    config: Config,
    subscribers: Mutex<Vec<Sender<Event>>>,
    started: Instant,
    backend: &'static str,
    library: Arc<Library>,
    /// Pokes the park timer thread when a new deadline may be earlier.
    park_wake: Sender<()>,
    park_wake_rx: Mutex<Option<crossbeam_channel::Receiver<()>>>,
}

thread_local! {
    /// Jobs this thread posted without waiting, as (worker, sequence number):
    /// [`Engine::flush`] waits for them before a reply leaves.
    static POSTED: RefCell<Vec<(usize, u64)>> = const { RefCell::new(Vec::new()) };
}

fn note_posted(worker: usize, seq: u64) {
    POSTED.with(|p| {
        let mut p = p.borrow_mut();
        match p.iter_mut().find(|(w, _)| *w == worker) {
            Some(e) => e.1 = e.1.max(seq),
            None => p.push((worker, seq)),
        }
    });
}

impl From<WorkerGone> for ControlError {
    fn from(e: WorkerGone) -> Self {
        ControlError::new(ErrorCode::Internal, format!("{e}; see the log"))
    }
}

fn unknown_leg(name: &str) -> ControlError {
    ControlError::new(
        ErrorCode::UnknownLeg,
        format!("no leg named `{name}`; list_calls shows the legs that exist"),
    )
}

fn lost_leg(name: &str) -> ControlError {
    ControlError::new(
        ErrorCode::Internal,
        format!("leg `{name}` was lost: its worker could not receive on its ports; see the log and delete its call"),
    )
}

fn unknown_call(call: &str) -> ControlError {
    ControlError::new(
        ErrorCode::UnknownCall,
        format!("no call `{call}`; list_calls shows the calls that exist"),
    )
}

impl Engine {
    /// An engine over running workers.
    pub fn new(
        config: Config,
        workers: Vec<WorkerHandle>,
        backend: &'static str,
        library: Arc<Library>,
    ) -> Engine {
        let ports = PortAllocator::new(config.interface.bind, config.port_min, config.port_max);
        // Lots were validated with the configuration; a duplicate is dropped with a log line.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let mut lots = ParkingLots::new(seed);
        for lot in &config.lots {
            if let Err(e) = lots.add_lot(lot.clone()) {
                log::error!("parking lot {}: {e}", lot.name);
            }
        }
        let (park_wake, park_wake_rx) = crossbeam_channel::bounded(1);
        Engine {
            dir: Mutex::new(Directory {
                ports,
                lots,
                calls: HashMap::new(),
                legs: HashMap::new(),
                legs_per_worker: vec![0; workers.len()],
                next_leg: 1,
            }),
            workers,
            config,
            subscribers: Mutex::new(Vec::new()),
            started: Instant::now(),
            backend,
            library,
            park_wake,
            park_wake_rx: Mutex::new(Some(park_wake_rx)),
        }
    }

    /// Adds an event subscriber.
    pub fn subscribe(&self, tx: Sender<Event>) {
        lock(&self.subscribers).push(tx);
    }

    /// Sends an event to every subscriber, dropping the ones that went away.
    pub fn publish(&self, event: Event) {
        lock(&self.subscribers).retain(|s| s.send(event.clone()).is_ok());
    }

    /// Turns a worker's session event into a control event and publishes it.
    pub fn on_session_event(&self, _worker: usize, ev: SessionEvent) {
        match ev {
            SessionEvent::MediaTimeout {
                call, name, after, ..
            } => {
                log::info!("call {call} leg {name}: no RTP for {}s", after.as_secs());
                let mut dir = lock(&self.dir);
                if let Some(p) =
                    dir.lots
                        .remove_leg(Instant::now(), &name, GiveUpReason::MediaTimeout)
                {
                    // A parked caller who went silent has hung up: stop the music.
                    self.silence_leg(&dir, &p.leg);
                    self.publish_park_events(&mut dir, None);
                }
                drop(dir);
                self.publish(Event::MediaTimeout {
                    call,
                    leg: name,
                    after_secs: after.as_secs() as u32,
                })
            }
            SessionEvent::PlaybackDone {
                call,
                name,
                program,
                ..
            } => self.publish(Event::PlaybackDone {
                call,
                leg: name,
                announcement: program,
            }),
            SessionEvent::Dtmf {
                call,
                name,
                digit,
                duration_ms,
                ..
            } => self.publish(Event::Dtmf {
                call,
                leg: name,
                digit,
                duration_ms,
            }),
        }
    }

    /// Seconds without RTP before a leg's media times out.
    pub fn media_timeout_secs(&self) -> u64 {
        self.config.media_timeout.as_secs()
    }

    /// Whether a leg of this name exists.
    pub fn has_leg(&self, name: &str) -> bool {
        lock(&self.dir).legs.contains_key(name)
    }

    /// The address written into SDP.
    pub fn advertised(&self) -> std::net::IpAddr {
        self.config.interface.advertised
    }

    /// The worker and key of leg `name`, waiting for its worker to assign the key.
    fn leg_of(&self, dir: &Directory, name: &str) -> Result<(usize, LegKey), ControlError> {
        let e = dir.legs.get(name).ok_or_else(|| unknown_leg(name))?;
        match self.resolve(e.worker, &e.key)? {
            Some(key) => Ok((e.worker, key)),
            None => Err(lost_leg(name)),
        }
    }

    /// A leg's key once its worker has assigned it; `None` if adding it failed.
    fn resolve(&self, worker: usize, key: &KeyRef) -> Result<Option<LegKey>, WorkerGone> {
        match key {
            KeyRef::Ready(k) => Ok(Some(*k)),
            KeyRef::Pending { slot, seq, .. } => {
                if let Some(k) = slot.get() {
                    return Ok(*k);
                }
                self.workers[worker].wait_for(*seq)?;
                Ok(slot.get().copied().flatten())
            }
        }
    }

    /// Waits until every job this thread posted without waiting has run, so that
    /// a reply sent afterwards describes media the workers already handle.
    pub fn flush(&self) {
        let posted = POSTED.with(|p| std::mem::take(&mut *p.borrow_mut()));
        for (w, seq) in posted {
            if let Err(e) = self.workers[w].wait_for(seq) {
                log::error!("{e}; a reply may describe media that is not set up");
            }
        }
    }

    /// Stops every worker.
    pub fn shutdown(&self) {
        for w in &self.workers {
            w.shutdown();
        }
    }

    /// Runs one command.
    pub fn execute(&self, cmd: Command) -> Result<Reply, ControlError> {
        match cmd {
            Command::Ping => Ok(Reply::Pong { pong: "pong" }),
            Command::CreateLeg(c) => self.create_leg(c).map(Reply::LegCreated),
            Command::UpdateLeg(u) => self.update_leg(u),
            Command::Bridge { a, b } => self.bridge(&a, &b),
            Command::Unbridge { leg } => {
                let dir = lock(&self.dir);
                let (w, key) = self.leg_of(&dir, &leg)?;
                self.workers[w]
                    .call(move |ctx| ctx.shard.unbridge(key).map(|_| ()))?
                    .map_err(|e| ControlError::new(ErrorCode::InvalidState, e.to_string()))?;
                Ok(Reply::Done {})
            }
            Command::DeleteLeg { leg } => {
                let mut dir = lock(&self.dir);
                let call = dir
                    .legs
                    .get(&leg)
                    .ok_or_else(|| unknown_leg(&leg))?
                    .call
                    .clone();
                self.remove_leg(&mut dir, &leg)?;
                let entry = dir.calls.get_mut(&call);
                if let Some(entry) = entry {
                    entry.legs.retain(|l| l != &leg);
                    if entry.legs.is_empty() {
                        dir.calls.remove(&call);
                        drop(dir);
                        self.publish(Event::CallDeleted {
                            call,
                            reason: "last_leg",
                        });
                    }
                }
                Ok(Reply::Done {})
            }
            Command::DeleteCall { call } => {
                let mut dir = lock(&self.dir);
                let entry = dir.calls.remove(&call).ok_or_else(|| unknown_call(&call))?;
                for leg in &entry.legs {
                    self.remove_leg(&mut dir, leg)?;
                }
                drop(dir);
                self.publish(Event::CallDeleted {
                    call,
                    reason: "command",
                });
                Ok(Reply::Done {})
            }
            Command::QueryCall { call } => {
                let dir = lock(&self.dir);
                let entry = dir.calls.get(&call).ok_or_else(|| unknown_call(&call))?;
                Ok(Reply::Call(self.call_info(&dir, &call, entry)?))
            }
            Command::ListCalls => {
                let dir = lock(&self.dir);
                let mut calls = Vec::with_capacity(dir.calls.len());
                for (id, entry) in &dir.calls {
                    calls.push(self.call_info(&dir, id, entry)?);
                }
                calls.sort_by(|a, b| a.call.cmp(&b.call));
                Ok(Reply::Calls { calls })
            }
            Command::Stats => self.stats().map(Reply::Stats),
            Command::Subscribe => Ok(Reply::Subscribed { subscribed: true }),
            Command::Hold {
                leg,
                class,
                peer_hears,
            } => {
                not_parked(&lock(&self.dir), &leg)?;
                self.hold(&leg, class.as_deref(), peer_hears)
            }
            Command::Unhold { leg } | Command::StopPlay { leg } => {
                let dir = lock(&self.dir);
                not_parked(&dir, &leg)?;
                let (w, key) = self.leg_of(&dir, &leg)?;
                self.workers[w]
                    .call(move |ctx| ctx.shard.unhold(key))?
                    .map_err(|e| ControlError::new(ErrorCode::InvalidState, e.to_string()))?;
                Ok(Reply::Done {})
            }
            Command::Play {
                leg,
                announcement,
                then,
                class,
            } => {
                let dir = lock(&self.dir);
                not_parked(&dir, &leg)?;
                self.play(&dir, &leg, &announcement, then, class.as_deref())
            }
            Command::ListMedia => Ok(Reply::Media {
                media: self.library.list(),
            }),
            Command::Park {
                leg,
                lot,
                slot,
                parker,
            } => self.park(&leg, lot.as_deref().unwrap_or("default"), slot, parker),
            Command::Retrieve { leg, lot, slot } => {
                self.retrieve(&leg, lot.as_deref().unwrap_or("default"), slot)
            }
            Command::PlayMedia(p) => {
                let dir = lock(&self.dir);
                not_parked(&dir, &p.leg)?;
                self.play_media(&dir, p)
            }
            Command::StopMedia { leg } => {
                let dir = lock(&self.dir);
                not_parked(&dir, &leg)?;
                let (w, key) = self.leg_of(&dir, &leg)?;
                self.workers[w]
                    .call(move |ctx| ctx.shard.stop_media(key, Source::Peer))?
                    .map_err(|e| ControlError::new(ErrorCode::InvalidState, e.to_string()))?;
                Ok(Reply::Done {})
            }
            Command::SetIngress { leg, ingress } => {
                let dir = lock(&self.dir);
                let (w, key) = self.leg_of(&dir, &leg)?;
                self.workers[w]
                    .call(move |ctx| ctx.shard.set_ingress(key, ingress))?
                    .map_err(|e| ControlError::new(ErrorCode::InvalidState, e.to_string()))?;
                Ok(Reply::Done {})
            }
            Command::ListParked => Ok(Reply::ParkedList {
                parked: lock(&self.dir).lots.parked(Instant::now()),
            }),
            Command::ListLots => Ok(Reply::Lots {
                lots: lock(&self.dir).lots.lots(),
            }),
        }
    }

    fn park(
        &self,
        leg: &str,
        lot: &str,
        slot: Option<u32>,
        parker: Option<String>,
    ) -> Result<Reply, ControlError> {
        let mut dir = lock(&self.dir);
        let lot_cfg = lot_of(&dir, lot)?;
        let (w, key) = self.leg_of(&dir, leg)?;
        let call = dir
            .legs
            .get(leg)
            .map(|e| e.call.clone())
            .unwrap_or_default();
        let (fmt, _) = self.media_format(&dir, leg)?;
        let program = self.moh_program(&lot_cfg.moh_class, fmt)?;
        let former_peer = self.workers[w].call(move |ctx| {
            let peer = ctx.shard.leg(key)?.peer?;
            Some(ctx.shard.leg(peer)?.config.name.clone())
        })?;
        let parker = parker.or(former_peer);
        let now = Instant::now();
        let slot = dir
            .lots
            .park(now, lot, slot, &call, leg, parker.clone())
            .map_err(park_error)?;
        // The parked leg leaves its bridge (freeing its peer) and hears the lot's MOH.
        let moved = self.workers[w].call(move |ctx| {
            ctx.shard.unbridge(key)?;
            ctx.shard.hold(Instant::now(), key, program, None)
        })?;
        if let Err(e) = moved {
            dir.lots.remove_leg(now, leg, GiveUpReason::Deleted);
            return Err(ControlError::new(ErrorCode::InvalidState, e.to_string()));
        }
        if lot_cfg.announce_slot {
            if let Some(p) = parker.as_deref().filter(|p| dir.legs.contains_key(*p)) {
                // A leg that parked itself hears its slot, then the lot's music;
                // any other parker goes back to what it heard (its peer, or nothing).
                let after = if p == leg {
                    let (fmt, _) = self.media_format(&dir, leg)?;
                    After::Play(Box::new(self.moh_program(&lot_cfg.moh_class, fmt)?))
                } else {
                    After::Peer
                };
                if let Err(e) = self.announce_slot(&dir, p, slot, after) {
                    log::warn!("cannot announce slot {slot} to {p}: {}", e.message);
                }
            }
        }
        self.publish_park_events(&mut dir, None);
        let _ = self.park_wake.try_send(());
        Ok(Reply::Parked {
            lot: lot.to_owned(),
            slot,
        })
    }

    /// Speaks "you have been parked on slot" and the slot's digits to `leg`.
    fn announce_slot(
        &self,
        dir: &Directory,
        leg: &str,
        slot: u32,
        after: After,
    ) -> Result<(), ControlError> {
        let (w, key) = self.leg_of(dir, leg)?;
        let (fmt, _) = self.media_format(dir, leg)?;
        let mut names: Vec<String> = vec!["parked-on-slot".into()];
        names.extend(slot.to_string().chars().map(|d| format!("digit-{d}")));
        let mut then = after;
        for name in names.iter().rev() {
            let frames = self
                .library
                .announcement(name, fmt.codec, fmt.ptime)
                .map_err(media_error)?;
            then = After::Play(Box::new(Program {
                name: name.clone(),
                frames,
                pt: fmt.pt,
                join: crate::media::JoinMode::FromStart,
                epoch: self.started,
                looping: false,
                then,
            }));
        }
        let After::Play(first) = then else {
            return Ok(());
        };
        self.workers[w]
            .call(move |ctx| ctx.shard.play(Instant::now(), key, *first))?
            .map_err(|e| ControlError::new(ErrorCode::InvalidState, e.to_string()))
    }

    fn retrieve(&self, leg: &str, lot: &str, slot: Option<u32>) -> Result<Reply, ControlError> {
        let mut dir = lock(&self.dir);
        let lot_cfg = lot_of(&dir, lot)?;
        self.leg_of(&dir, leg)?;
        if let Some(p) = dir.lots.find_leg(leg) {
            return Err(ControlError::new(
                ErrorCode::InvalidState,
                format!(
                    "leg `{leg}` is itself parked (lot {} slot {}); retrieve with another leg",
                    p.lot, p.slot
                ),
            ));
        }
        let parked = dir
            .lots
            .retrieve(Instant::now(), lot, slot)
            .map_err(park_error)?;
        self.publish_park_events(&mut dir, Some(leg));
        let tone = lot_cfg.courtesy_tone;
        let tone_for = |who: &str, wanted: bool| -> Option<Program> {
            if !wanted {
                return None;
            }
            self.announcement_program(&dir, who, "courtesy-tone", Then::Live, None)
                .map_err(|e| log::warn!("courtesy tone to {who}: {}", e.message))
                .ok()
        };
        let to_retriever = tone_for(leg, tone.to_retriever());
        let to_parked = tone_for(&parked.leg, tone.to_parked());
        // Bridging ends the parked leg's MOH and continues both streams; the
        // tones start in the same worker job, so no live packet goes first.
        self.bridge_locked_then(&mut dir, leg, &parked.leg, move |shard, now, kr, kp| {
            for (key, program) in [(kp, to_parked), (kr, to_retriever)] {
                if let Some(p) = program {
                    if let Err(e) = shard.play(now, key, p) {
                        log::warn!("courtesy tone: {e}");
                    }
                }
            }
        })?;
        Ok(Reply::Retrieved {
            lot: parked.lot,
            slot: parked.slot,
            call: parked.call,
            parked_leg: parked.leg,
        })
    }

    /// Stops whatever a leg hears (a released or abandoned parked call).
    fn silence_leg(&self, dir: &Directory, leg: &str) {
        if let Ok((w, key)) = self.leg_of(dir, leg) {
            let _ = self.workers[w].call(move |ctx| ctx.shard.stop_media(key, Source::Nothing));
        }
    }

    /// Publishes the parking lots' pending events (`retriever` names who
    /// retrieved, for `retrieved` events).
    fn publish_park_events(&self, dir: &mut Directory, retriever: Option<&str>) {
        while let Some(ev) = dir.lots.poll_event() {
            let secs = |d: Duration| d.as_secs();
            let event = match ev {
                ParkEvent::Parked {
                    lot,
                    slot,
                    call,
                    leg,
                    parker,
                    timeout_secs,
                } => Event::Parked {
                    lot,
                    slot,
                    call,
                    leg,
                    parker,
                    timeout_secs,
                },
                ParkEvent::Retrieved {
                    lot,
                    slot,
                    call,
                    leg,
                    parker,
                    waited,
                } => Event::Retrieved {
                    lot,
                    slot,
                    call,
                    leg,
                    by: retriever.unwrap_or_default().to_owned(),
                    parker,
                    waited_secs: secs(waited),
                },
                ParkEvent::Timeout {
                    lot,
                    slot,
                    call,
                    leg,
                    parker,
                    waited,
                } => Event::ParkTimeout {
                    lot,
                    slot,
                    call,
                    leg,
                    parker,
                    waited_secs: secs(waited),
                },
                ParkEvent::Released {
                    lot,
                    slot,
                    call,
                    leg,
                    parker,
                    waited,
                } => {
                    self.silence_leg(dir, &leg);
                    Event::ParkReleased {
                        lot,
                        slot,
                        call,
                        leg,
                        parker,
                        waited_secs: secs(waited),
                    }
                }
                ParkEvent::GiveUp {
                    lot,
                    slot,
                    call,
                    leg,
                    parker,
                    reason,
                    waited,
                } => Event::ParkGiveUp {
                    lot,
                    slot,
                    call,
                    leg,
                    parker,
                    reason: reason.as_str(),
                    waited_secs: secs(waited),
                },
                ParkEvent::SlotState { lot, slot, busy } => Event::SlotState {
                    lot,
                    slot,
                    state: if busy { "busy" } else { "free" },
                },
            };
            self.publish(event);
        }
    }

    /// Runs park timeouts until the engine goes away: one thread, woken at the
    /// earliest deadline or when a park may have added an earlier one.
    pub fn run_park_timer(self: Arc<Self>) {
        let Some(wake) = lock(&self.park_wake_rx).take() else {
            return;
        };
        loop {
            let next = {
                let mut dir = lock(&self.dir);
                dir.lots.handle_timeout(Instant::now());
                self.publish_park_events(&mut dir, None);
                dir.lots.poll_timeout()
            };
            let wait = next
                .map_or(Duration::from_secs(3600), |t| {
                    t.saturating_duration_since(Instant::now())
                })
                .max(Duration::from_millis(1));
            if let Err(crossbeam_channel::RecvTimeoutError::Disconnected) = wake.recv_timeout(wait)
            {
                return;
            }
        }
    }

    /// The codec, payload type and packet time media for `leg` must use.
    fn media_format(
        &self,
        dir: &Directory,
        name: &str,
    ) -> Result<(MediaFormat, Option<MediaFormat>), ControlError> {
        let (w, key) = self.leg_of(dir, name)?;
        let ptime_of = |leg: &str| dir.legs.get(leg).map_or(self.config.ptime, |e| e.ptime);
        let (fmt, peer) = self.workers[w]
            .call(move |ctx| {
                let leg = ctx.shard.leg(key)?;
                let peer = leg
                    .peer
                    .and_then(|p| ctx.shard.leg(p))
                    .map(|p| (choose_codec(p), p.config.name.clone()));
                Some((choose_codec(leg), peer))
            })?
            .ok_or_else(|| unknown_leg(name))?;
        let fmt = MediaFormat {
            codec: fmt.0,
            pt: fmt.1,
            ptime: ptime_of(name),
        };
        let peer = peer.map(|((codec, pt), peer_name)| MediaFormat {
            codec,
            pt,
            ptime: ptime_of(&peer_name),
        });
        Ok((fmt, peer))
    }

    /// A looping MOH program of `class` in `fmt`.
    fn moh_program(&self, class: &str, fmt: MediaFormat) -> Result<Program, ControlError> {
        let cf = self
            .library
            .class(class, fmt.codec, fmt.ptime)
            .map_err(media_error)?;
        // The class clock starts with the engine, shifted for `random_start`.
        let count = cf.frames.frame_count().max(1) as u64;
        let ptime = Duration::from_millis(fmt.ptime as u64);
        let shift = ptime.saturating_mul((cf.start_offset % count) as u32);
        let epoch = self.started.checked_sub(shift).unwrap_or(self.started);
        Ok(Program {
            name: cf.class,
            frames: cf.frames,
            pt: fmt.pt,
            join: cf.join,
            epoch,
            looping: true,
            then: After::Nothing,
        })
    }

    fn hold(
        &self,
        leg: &str,
        class: Option<&str>,
        peer_hears: Option<PeerHears>,
    ) -> Result<Reply, ControlError> {
        let dir = lock(&self.dir);
        let (w, key) = self.leg_of(&dir, leg)?;
        let (fmt, peer_fmt) = self.media_format(&dir, leg)?;
        let program = self.moh_program(class.unwrap_or("default"), fmt)?;
        let silence = match peer_hears {
            Some(PeerHears::Silence) => true,
            Some(PeerHears::Nothing) => false,
            None => self.config.hold_peer_silence,
        };
        let peer_program = match (silence, peer_fmt) {
            (true, Some(pf)) => {
                let frames = self
                    .library
                    .silence(pf.codec, pf.ptime)
                    .map_err(media_error)?;
                Some(Program {
                    name: "silence".into(),
                    frames,
                    pt: pf.pt,
                    join: crate::session::JoinMode::FromStart,
                    epoch: self.started,
                    looping: true,
                    then: After::Nothing,
                })
            }
            _ => None,
        };
        self.workers[w]
            .call(move |ctx| ctx.shard.hold(Instant::now(), key, program, peer_program))?
            .map_err(|e| ControlError::new(ErrorCode::InvalidState, e.to_string()))?;
        Ok(Reply::Done {})
    }

    /// Resolves `media` to frames in the leg's format: the program's name, its
    /// frames, and whether it is a MOH class (which plays on the class clock).
    fn resolve_media(
        &self,
        media: &MediaRef,
        fmt: MediaFormat,
    ) -> Result<(String, Arc<dyn Frames>, bool), ControlError> {
        let named = |name: &str| -> Result<(String, Arc<dyn Frames>, bool), ControlError> {
            if self.library.has_class(name) {
                let cf = self
                    .library
                    .class(name, fmt.codec, fmt.ptime)
                    .map_err(media_error)?;
                return Ok((cf.class, cf.frames, true));
            }
            let clip = self
                .library
                .announcement(name, fmt.codec, fmt.ptime)
                .map_err(media_error)?;
            Ok((name.to_owned(), clip, false))
        };
        let label = |p: &std::path::Path| p.display().to_string();
        match media {
            MediaRef::Named(name) => named(name),
            MediaRef::File(path) => {
                let clip = self
                    .library
                    .file(path, fmt.codec, fmt.ptime)
                    .map_err(media_error)?;
                Ok((label(path), clip, false))
            }
            MediaRef::Prompt(path) => {
                if let Some(raw) = self.library.raw_prompt(path, fmt.codec, fmt.ptime) {
                    return Ok((label(path), raw.map_err(media_error)?, false));
                }
                if path.is_file() {
                    let clip = self
                        .library
                        .file(path, fmt.codec, fmt.ptime)
                        .map_err(media_error)?;
                    return Ok((label(path), clip, false));
                }
                let base = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default();
                named(base).map_err(|_| {
                    ControlError::new(
                        ErrorCode::UnknownMedia,
                        format!(
                            "no prompt {0}.{{0,8,9}}, no audio file {0} and no MOH class or announcement `{base}`",
                            path.display()
                        ),
                    )
                })
            }
            MediaRef::Blob(bytes) => {
                let clip = self
                    .library
                    .blob(bytes, fmt.codec, fmt.ptime)
                    .map_err(media_error)?;
                Ok(("blob".to_owned(), clip, false))
            }
        }
    }

    fn play_media(&self, dir: &Directory, p: PlayMedia) -> Result<Reply, ControlError> {
        let (w, key) = self.leg_of(dir, &p.leg)?;
        let (fmt, _) = self.media_format(dir, &p.leg)?;
        let (name, frames, is_class) = self.resolve_media(&p.media, fmt)?;
        let count = frames.frame_count();
        if count == 0 {
            return Err(ControlError::new(
                ErrorCode::UnknownMedia,
                format!("{name} has no audio"),
            ));
        }
        let duration_ms = count as u64 * fmt.ptime as u64;
        let start = (p.start_ms / fmt.ptime.max(1) as u64).min(count as u64 - 1) as usize;
        let program = if is_class && p.repeat == Repeat::Forever && start == 0 {
            // A class played until stopped is music on hold: on its class clock.
            let mut program = self.moh_program(&name, fmt)?;
            program.name = name;
            program
        } else {
            let (frames, looping): (Arc<dyn Frames>, bool) = match p.repeat {
                Repeat::Forever if start == 0 => (frames, true),
                Repeat::Forever => (
                    Arc::new(Repeated {
                        inner: frames,
                        start,
                        times: 1,
                    }),
                    true,
                ),
                Repeat::Times(1) if start == 0 => (frames, false),
                Repeat::Times(n) => (
                    Arc::new(Repeated {
                        inner: frames,
                        start,
                        times: n.max(1) as usize,
                    }),
                    false,
                ),
            };
            Program {
                name,
                frames,
                pt: fmt.pt,
                join: crate::session::JoinMode::FromStart,
                epoch: self.started,
                looping,
                then: After::Peer,
            }
        };
        let hold = p.hold;
        self.workers[w]
            .call(move |ctx| {
                if hold {
                    ctx.shard.hold(Instant::now(), key, program, None)
                } else {
                    ctx.shard.play(Instant::now(), key, program)
                }
            })?
            .map_err(|e| ControlError::new(ErrorCode::InvalidState, e.to_string()))?;
        Ok(Reply::Playing { duration_ms })
    }

    fn play(
        &self,
        dir: &Directory,
        leg: &str,
        announcement: &str,
        then: Then,
        class: Option<&str>,
    ) -> Result<Reply, ControlError> {
        let (w, key) = self.leg_of(dir, leg)?;
        let program = self.announcement_program(dir, leg, announcement, then, class)?;
        self.workers[w]
            .call(move |ctx| ctx.shard.play(Instant::now(), key, program))?
            .map_err(|e| ControlError::new(ErrorCode::InvalidState, e.to_string()))?;
        Ok(Reply::Done {})
    }

    /// An announcement for `leg`, in its codec, followed by `then`.
    fn announcement_program(
        &self,
        dir: &Directory,
        leg: &str,
        announcement: &str,
        then: Then,
        class: Option<&str>,
    ) -> Result<Program, ControlError> {
        let (fmt, _) = self.media_format(dir, leg)?;
        let frames = self
            .library
            .announcement(announcement, fmt.codec, fmt.ptime)
            .map_err(media_error)?;
        let then = match then {
            Then::Live => After::Live,
            Then::Nothing => After::Nothing,
            Then::Moh => After::Play(Box::new(self.moh_program(class.unwrap_or("default"), fmt)?)),
        };
        Ok(Program {
            name: announcement.to_owned(),
            frames,
            pt: fmt.pt,
            join: crate::session::JoinMode::FromStart,
            epoch: self.started,
            looping: false,
            then,
        })
    }

    fn create_leg(&self, c: CreateLeg) -> Result<LegCreated, ControlError> {
        let mut dir = lock(&self.dir);
        let leg = self.prepare_leg(&mut dir, &c, None, None)?;
        let ptime = c.ptime.unwrap_or(self.config.ptime);
        let worker = leg.worker;
        let port = leg.sockets.port;
        let PreparedLeg {
            name,
            config,
            sockets,
            ..
        } = leg;
        let added = self.workers[worker]
            .call(move |ctx: &mut WorkerCtx| ctx.add_leg(Instant::now(), config, sockets));
        let key = match added {
            Ok(Ok(key)) => key,
            Ok(Err(e)) => {
                dir.ports.release(port);
                return Err(ControlError::new(
                    ErrorCode::Internal,
                    format!("cannot receive on port {port}: {e}"),
                ));
            }
            Err(e) => {
                dir.ports.release(port);
                return Err(e.into());
            }
        };
        Ok(self.record_leg(
            &mut dir,
            c.call,
            name,
            KeyRef::Ready(key),
            worker,
            port,
            ptime,
        ))
    }

    /// Binds free port pairs ahead of calls and keeps released ones bound, as
    /// `warm_ports` says, within `capacity` pairs bound at once (the descriptor
    /// budget). Returns the pairs bound now and the most kept.
    pub fn prebind_ports(&self, capacity: usize) -> (usize, usize) {
        let mut dir = lock(&self.dir);
        let limit = self
            .config
            .warm_ports
            .unwrap_or(usize::MAX)
            .min(dir.ports.total_pairs())
            .min(capacity);
        (dir.ports.prebind(limit, capacity), limit)
    }

    /// Creates two legs of one call and bridges them, in a single worker job:
    /// what an offer needs for each new media section. Either both legs exist
    /// afterwards, bridged, or neither does.
    pub fn create_bridged_pair(
        &self,
        a: CreateLeg,
        b: CreateLeg,
    ) -> Result<[LegCreated; 2], ControlError> {
        if a.call != b.call {
            return Err(ControlError::new(
                ErrorCode::InvalidField,
                "a bridged pair's legs must belong to one call",
            ));
        }
        if a.leg.is_some() && a.leg == b.leg {
            return Err(ControlError::new(
                ErrorCode::InvalidState,
                "cannot bridge a leg to itself; name two different legs",
            ));
        }
        let mut dir = lock(&self.dir);
        let first = self.prepare_leg(&mut dir, &a, None, None)?;
        let second = match self.prepare_leg(&mut dir, &b, Some(first.worker), Some(&first.name)) {
            Ok(l) => l,
            Err(e) => {
                dir.ports.release(first.sockets.port);
                return Err(e);
            }
        };
        let worker = first.worker;
        let ports = [first.sockets.port, second.sockets.port];
        let names = [first.name, second.name];
        let (ca, sa, cb, sb) = (first.config, first.sockets, second.config, second.sockets);
        let slots = [Arc::new(OnceLock::new()), Arc::new(OnceLock::new())];
        let [fa, fb] = slots.clone();
        // The reply needs only the ports, so the legs join their worker without a
        // wait; the caller flushes before replying and later commands resolve the keys.
        let seq = self.workers[worker].post(move |ctx: &mut WorkerCtx| {
            let now = Instant::now();
            let added = ctx.add_leg(now, ca, sa).map_err(|e| (ports[0], e));
            let added = added.and_then(|ka| match ctx.add_leg(now, cb, sb) {
                Ok(kb) => Ok((ka, kb)),
                Err(e) => {
                    // Dropping the detached sockets closes them here.
                    drop(ctx.detach_leg(ka));
                    Err((ports[1], e))
                }
            });
            let added = added.and_then(|(ka, kb)| match ctx.shard.bridge(ka, kb) {
                Ok(()) => Ok((ka, kb)),
                Err(e) => {
                    drop(ctx.detach_leg(ka));
                    drop(ctx.detach_leg(kb));
                    Err((ports[0], std::io::Error::other(e.to_string())))
                }
            });
            let (ka, kb) = match added {
                Ok((ka, kb)) => (Some(ka), Some(kb)),
                Err((port, e)) => {
                    log::error!("worker {}: cannot receive on port {port}: {e}", ctx.id);
                    (None, None)
                }
            };
            let _ = fa.set(ka);
            let _ = fb.set(kb);
        });
        note_posted(worker, seq);
        let pa = a.ptime.unwrap_or(self.config.ptime);
        let pb = b.ptime.unwrap_or(self.config.ptime);
        let [na, nb] = names;
        let [sa, sb] = slots;
        let key = |slot, port| KeyRef::Pending { slot, seq, port };
        let la = self.record_leg(
            &mut dir,
            a.call,
            na,
            key(sa, ports[0]),
            worker,
            ports[0],
            pa,
        );
        let lb = self.record_leg(
            &mut dir,
            b.call,
            nb,
            key(sb, ports[1]),
            worker,
            ports[1],
            pb,
        );
        Ok([la, lb])
    }

    /// Validates a new leg, names it, picks its worker (`worker` if given, else
    /// its call's, else the least loaded) and binds its ports. `taken` is a name
    /// already claimed by the same request.
    fn prepare_leg(
        &self,
        dir: &mut Directory,
        c: &CreateLeg,
        worker: Option<usize>,
        taken: Option<&str>,
    ) -> Result<PreparedLeg, ControlError> {
        if c.call.is_empty() {
            return Err(ControlError::new(
                ErrorCode::InvalidField,
                "call must be a non-empty string",
            ));
        }
        let name = match &c.leg {
            Some(name) if dir.legs.contains_key(name) || taken == Some(name.as_str()) => {
                return Err(ControlError::new(
                    ErrorCode::LegExists,
                    format!(
                        "a leg named `{name}` already exists; pick another name or delete it first"
                    ),
                ))
            }
            Some(name) => name.clone(),
            None => loop {
                let n = dir.next_leg;
                dir.next_leg += 1;
                let name = format!("L{n}");
                if !dir.legs.contains_key(&name) && taken != Some(name.as_str()) {
                    break name;
                }
            },
        };
        let worker = match (worker, dir.calls.get(&c.call)) {
            (Some(w), _) => w,
            (None, Some(e)) => e.worker,
            (None, None) => (0..self.workers.len())
                .min_by_key(|&w| dir.legs_per_worker[w])
                .unwrap_or(0),
        };
        let pair = dir.ports.allocate().map_err(|e| match e {
            PortError::Exhausted { .. } => {
                ControlError::new(ErrorCode::PortsExhausted, e.to_string())
            }
            PortError::Socket(_) => ControlError::new(ErrorCode::Internal, e.to_string()),
        })?;
        let port = pair.port;
        let ip = self.config.interface.bind;
        let config = LegConfig {
            call: c.call.clone(),
            name: name.clone(),
            local_rtp: std::net::SocketAddr::new(ip, port),
            local_rtcp: std::net::SocketAddr::new(ip, port + 1),
            remote: c.remote,
            remote_rtcp: c.remote_rtcp,
            latch: if c.trust_address {
                LatchPolicy::Trust
            } else {
                LatchPolicy::Learn
            },
            rtcp_mux: c.rtcp_mux,
            codecs: c.codecs.clone(),
            media_timeout: c.media_timeout.map_or(self.config.media_timeout, |s| {
                Duration::from_secs(s.max(1) as u64)
            }),
            silent_timeout: self.config.silent_timeout,
            silent: c.silent,
            ssrc_per_source: c.ssrc_per_source,
        };
        Ok(PreparedLeg {
            name,
            worker,
            config,
            sockets: pair,
        })
    }

    /// Enters a leg its worker has added into the directory.
    #[allow(clippy::too_many_arguments)]
    fn record_leg(
        &self,
        dir: &mut Directory,
        call: String,
        name: String,
        key: KeyRef,
        worker: usize,
        port: u16,
        ptime: u32,
    ) -> LegCreated {
        dir.legs_per_worker[worker] += 1;
        dir.legs.insert(
            name.clone(),
            LegEntry {
                call: call.clone(),
                worker,
                key,
                ptime,
            },
        );
        dir.calls
            .entry(call.clone())
            .or_insert_with(|| CallEntry {
                worker,
                legs: Vec::new(),
                created: Instant::now(),
            })
            .legs
            .push(name.clone());
        LegCreated {
            call,
            leg: name,
            ip: self.config.interface.advertised,
            rtp_port: port,
            rtcp_port: port + 1,
        }
    }

    fn update_leg(&self, u: UpdateLeg) -> Result<Reply, ControlError> {
        self.apply_update(u, true).map(|()| Reply::Done {})
    }

    /// Updates a leg like [`Command::UpdateLeg`] without waiting for its worker:
    /// the caller must [`Engine::flush`] before it replies.
    pub fn update_leg_deferred(&self, u: UpdateLeg) -> Result<(), ControlError> {
        self.apply_update(u, false)
    }

    /// Applies `u` on the leg's worker; `wait` returns the worker's verdict,
    /// else the job is posted and a refusal is only logged.
    fn apply_update(&self, u: UpdateLeg, wait: bool) -> Result<(), ControlError> {
        let mut dir = lock(&self.dir);
        let (w, key) = self.leg_of(&dir, &u.leg)?;
        let UpdateLeg {
            leg,
            remote,
            remote_rtcp,
            codecs,
            rtcp_mux,
            silent,
            ptime,
        } = u;
        let update = LegUpdate {
            remote,
            remote_rtcp,
            codecs,
            rtcp_mux,
            silent,
        };
        if wait {
            self.workers[w]
                .call(move |ctx| {
                    let r = ctx.shard.update_leg(Instant::now(), key, update);
                    ctx.apply_socket_ops();
                    r
                })?
                .map_err(|e| ControlError::new(ErrorCode::InvalidState, e.to_string()))?;
        } else {
            let name = leg.clone();
            let seq = self.workers[w].post(move |ctx| {
                if let Err(e) = ctx.shard.update_leg(Instant::now(), key, update) {
                    log::warn!("worker {}: cannot update leg `{name}`: {e}", ctx.id);
                }
                ctx.apply_socket_ops();
            });
            note_posted(w, seq);
        }
        if let (Some(p), Some(e)) = (ptime, dir.legs.get_mut(&leg)) {
            e.ptime = p;
        }
        Ok(())
    }

    fn bridge(&self, a: &str, b: &str) -> Result<Reply, ControlError> {
        let mut dir = lock(&self.dir);
        if let Some(p) = dir.lots.find_leg(a).or_else(|| dir.lots.find_leg(b)) {
            return Err(ControlError::new(
                ErrorCode::InvalidState,
                format!(
                    "leg `{}` is parked in lot {} slot {}; use retrieve to bridge to it",
                    p.leg, p.lot, p.slot
                ),
            ));
        }
        self.bridge_locked_then(&mut dir, a, b, |_, _, _, _| {})
    }

    /// Bridges `a` and `b` (moving `b` to `a`'s worker first if needed), then
    /// runs `then` with their keys in the same worker job.
    fn bridge_locked_then<F>(
        &self,
        dir: &mut Directory,
        a: &str,
        b: &str,
        then: F,
    ) -> Result<Reply, ControlError>
    where
        F: FnOnce(&mut crate::session::Shard, Instant, LegKey, LegKey) + Send + 'static,
    {
        let (wa, ka) = self.leg_of(dir, a)?;
        let (wb, _) = self.leg_of(dir, b)?;
        if a == b {
            return Err(ControlError::new(
                ErrorCode::InvalidState,
                format!("cannot bridge leg `{a}` to itself; name two different legs"),
            ));
        }
        if wa != wb {
            self.move_leg(dir, b, wa)?;
        }
        let (_, kb) = self.leg_of(dir, b)?;
        self.workers[wa]
            .call(move |ctx| {
                ctx.shard.bridge(ka, kb)?;
                then(&mut ctx.shard, Instant::now(), ka, kb);
                Ok::<(), crate::session::SessionError>(())
            })?
            .map_err(|e| ControlError::new(ErrorCode::InvalidState, e.to_string()))?;
        Ok(Reply::Done {})
    }

    /// Moves a leg, with its sockets and state, to worker `to`: bridged legs must
    /// share a worker, since a worker relays only between legs it owns.
    fn move_leg(&self, dir: &mut Directory, name: &str, to: usize) -> Result<(), ControlError> {
        let (from, key) = self.leg_of(dir, name)?;
        let detached = self.workers[from]
            .call(move |ctx| ctx.detach_leg(key))?
            .ok_or_else(|| unknown_leg(name))?;
        let (leg, sockets) = detached;
        let port = sockets.port;
        let adopted =
            self.workers[to].call(move |ctx| ctx.adopt_leg(Instant::now(), leg, sockets))?;
        let entry = dir.legs.remove(name).ok_or_else(|| unknown_leg(name))?;
        dir.legs_per_worker[from] -= 1;
        match adopted {
            Ok(key) => {
                dir.legs_per_worker[to] += 1;
                dir.legs.insert(
                    name.to_owned(),
                    LegEntry {
                        key: KeyRef::Ready(key),
                        worker: to,
                        ..entry
                    },
                );
                Ok(())
            }
            Err(e) => {
                // The leg is gone; keep the directory truthful about it.
                dir.ports.release(port);
                if let Some(c) = dir.calls.get_mut(&entry.call) {
                    c.legs.retain(|l| l != name);
                }
                Err(ControlError::new(
                    ErrorCode::Internal,
                    format!("leg `{name}` was lost moving between workers: {e}"),
                ))
            }
        }
    }

    /// Deletes a call and all its legs, returning what a query just before
    /// would have: one worker job per worker both reads and removes the legs.
    pub fn delete_call_reporting(&self, call: &str) -> Result<CallInfo, ControlError> {
        let mut dir = lock(&self.dir);
        let entry = dir.calls.remove(call).ok_or_else(|| unknown_call(call))?;
        let mut per_worker: Vec<Vec<(usize, LegKey)>> = vec![Vec::new(); self.workers.len()];
        for (i, name) in entry.legs.iter().enumerate() {
            let Some(leg) = dir.legs.remove(name) else {
                continue;
            };
            if dir
                .lots
                .remove_leg(Instant::now(), name, GiveUpReason::Deleted)
                .is_some()
            {
                self.publish_park_events(&mut dir, None);
            }
            dir.legs_per_worker[leg.worker] -= 1;
            match self.resolve(leg.worker, &leg.key)? {
                Some(key) => per_worker[leg.worker].push((i, key)),
                None => release_lost(&mut dir, &leg.key),
            }
        }
        let mut legs: Vec<Option<LegInfo>> = vec![None; entry.legs.len()];
        let keep = dir.ports.keeps_pairs();
        for (w, keys) in per_worker.into_iter().enumerate() {
            if keys.is_empty() {
                continue;
            }
            let removed = self.workers[w].call(move |ctx| {
                // Read every leg before removing any: a leg's info names its peer.
                let infos: Vec<_> = keys
                    .iter()
                    .map(|&(i, key)| (i, leg_info(ctx, key)))
                    .collect();
                let pairs: Vec<Released> = keys
                    .iter()
                    .filter_map(|&(_, key)| ctx.detach_leg(key).map(|(leg, s)| park(&leg, s, keep)))
                    .collect();
                (infos, pairs)
            })?;
            let (infos, pairs) = removed;
            for pair in pairs {
                release_parked(&mut dir, pair);
            }
            for (i, info) in infos {
                legs[i] = info;
            }
        }
        drop(dir);
        self.publish(Event::CallDeleted {
            call: call.to_owned(),
            reason: "command",
        });
        Ok(CallInfo {
            call: call.to_owned(),
            age_secs: entry.created.elapsed().as_secs_f64(),
            legs: legs.into_iter().flatten().collect(),
        })
    }

    /// Removes a leg from its worker and the directory (not from its call entry).
    fn remove_leg(&self, dir: &mut Directory, name: &str) -> Result<(), ControlError> {
        let entry = dir.legs.remove(name).ok_or_else(|| unknown_leg(name))?;
        if dir
            .lots
            .remove_leg(Instant::now(), name, GiveUpReason::Deleted)
            .is_some()
        {
            self.publish_park_events(dir, None);
        }
        let Some(key) = self.resolve(entry.worker, &entry.key)? else {
            dir.legs_per_worker[entry.worker] -= 1;
            release_lost(dir, &entry.key);
            return Ok(());
        };
        let keep = dir.ports.keeps_pairs();
        let removed = self.workers[entry.worker]
            .call(move |ctx| ctx.detach_leg(key).map(|(leg, s)| park(&leg, s, keep)))?;
        dir.legs_per_worker[entry.worker] -= 1;
        if let Some(pair) = removed {
            release_parked(dir, pair);
        }
        Ok(())
    }

    fn call_info(
        &self,
        dir: &Directory,
        id: &str,
        entry: &CallEntry,
    ) -> Result<CallInfo, ControlError> {
        // A call's legs usually share its worker, but a bridge may have moved one.
        let mut legs = Vec::with_capacity(entry.legs.len());
        for name in &entry.legs {
            let Some(e) = dir.legs.get(name) else {
                continue;
            };
            let Some(key) = self.resolve(e.worker, &e.key)? else {
                continue;
            };
            if let Some(info) = self.workers[e.worker].call(move |ctx| leg_info(ctx, key))? {
                legs.push(info);
            }
        }
        Ok(CallInfo {
            call: id.to_owned(),
            age_secs: entry.created.elapsed().as_secs_f64(),
            legs,
        })
    }

    fn stats(&self) -> Result<Stats, ControlError> {
        let dir = lock(&self.dir);
        let mut totals = LegCounters::default();
        let mut send_errors = 0;
        for w in &self.workers {
            let (t, e) = w.call(|ctx| {
                let mut t = LegCounters::default();
                for (_, leg) in ctx.shard.legs() {
                    t.add(&leg.counters);
                }
                (t, ctx.backend_stats.send_errors)
            })?;
            totals.add(&t);
            send_errors += e;
        }
        Ok(Stats {
            uptime_secs: self.started.elapsed().as_secs_f64(),
            backend: self.backend,
            workers: self.workers.len(),
            calls: dir.calls.len(),
            legs: dir.legs.len(),
            free_port_pairs: dir.ports.free_pairs(),
            warm_port_pairs: dir.ports.warm_pairs(),
            stale_dropped: dir.ports.stale_dropped(),
            totals,
            send_errors,
        })
    }
}

/// Codec, payload type and packet time of media for one leg.
#[derive(Debug, Clone, Copy)]
struct MediaFormat {
    codec: Codec,
    pt: u8,
    ptime: u32,
}

/// Picks the codec a leg's endpoint should hear media in: the one it has been
/// receiving, else the first signalled codec rtpark can encode, else PCMU.
fn choose_codec(leg: &crate::session::Leg) -> (Codec, u8) {
    let signalled = |pt: u8| {
        leg.config
            .codecs
            .iter()
            .find(|c| c.pt == pt)
            .and_then(|c| Codec::from_name(&c.name, c.rate))
    };
    if let Some(last) = leg.egress.last {
        if let Some(codec) = signalled(last.pt).or_else(|| Codec::from_static_pt(last.pt)) {
            return (codec, last.pt);
        }
    }
    leg.config
        .codecs
        .iter()
        .find_map(|c| Codec::from_name(&c.name, c.rate).map(|k| (k, c.pt)))
        .unwrap_or((Codec::Pcmu, 0))
}

/// Refuses media commands on a parked leg: in its slot it hears the lot's music
/// until it is retrieved, released or deleted.
fn not_parked(dir: &Directory, leg: &str) -> Result<(), ControlError> {
    match dir.lots.find_leg(leg) {
        Some(p) => Err(ControlError::new(
            ErrorCode::InvalidState,
            format!(
                "leg `{leg}` is parked in lot {} slot {}; retrieve it (or delete it) first",
                p.lot, p.slot
            ),
        )),
        None => Ok(()),
    }
}

fn park_error(e: ParkError) -> ControlError {
    let code = match e {
        ParkError::UnknownLot { .. } => ErrorCode::UnknownLot,
        ParkError::SlotTaken { .. } => ErrorCode::SlotTaken,
        ParkError::SlotOutOfRange { .. } => ErrorCode::InvalidField,
        ParkError::LotFull { .. } => ErrorCode::LotFull,
        ParkError::AlreadyParked { .. } => ErrorCode::InvalidState,
        ParkError::SlotEmpty { .. } | ParkError::LotEmpty { .. } => ErrorCode::SlotEmpty,
    };
    ControlError::new(code, e.to_string())
}

/// What a media failure means to the client: media it named that cannot be
/// found or played is `unknown_media` (the message says why); a packet time
/// it gave is an invalid field; only an encoder failing is rtpark's own fault.
fn media_error(e: MediaError) -> ControlError {
    match e {
        MediaError::NotFound { .. } => ControlError::new(
            ErrorCode::UnknownMedia,
            format!("{e}; list_media shows what is available"),
        ),
        MediaError::Io { .. }
        | MediaError::Unsupported { .. }
        | MediaError::Corrupt { .. }
        | MediaError::Empty { .. }
        | MediaError::BadRate { .. }
        | MediaError::TooLong { .. } => ControlError::new(ErrorCode::UnknownMedia, e.to_string()),
        MediaError::BadPtime(_) => ControlError::new(ErrorCode::InvalidField, e.to_string()),
        other => ControlError::new(ErrorCode::Internal, other.to_string()),
    }
}

/// A removed leg's pair, parked by its worker (`Ok` with the datagrams dropped
/// doing so), or only its port if parking failed and the sockets were closed.
type Released = Result<(PortPair, u64), u16>;

/// Parks a removed leg's sockets on its worker for the allocator to keep, or
/// closes them if it keeps none (`keep` false).
fn park(leg: &crate::session::Leg, pair: PortPair, keep: bool) -> Released {
    if !keep {
        return Err(pair.port);
    }
    match pair.park(leg.config.local_rtp.ip()) {
        Ok(stale) => Ok((pair, stale)),
        Err(e) => {
            log::warn!("port {}: closing instead of keeping: {e}", pair.port);
            Err(pair.port)
        }
    }
}

/// Gives a removed leg's pair back to the allocator.
fn release_parked(dir: &mut Directory, released: Released) {
    match released {
        Ok((pair, stale)) => dir.ports.release_pair(pair, stale),
        Err(port) => dir.ports.release(port),
    }
}

/// Returns the port of a leg its worker failed to add (the worker closed its sockets).
fn release_lost(dir: &mut Directory, key: &KeyRef) {
    if let KeyRef::Pending { port, .. } = key {
        dir.ports.release(*port);
    }
}

fn leg_info(ctx: &WorkerCtx, key: LegKey) -> Option<LegInfo> {
    let leg = ctx.shard.leg(key)?;
    let peer = leg
        .peer
        .and_then(|p| ctx.shard.leg(p))
        .map(|p| p.config.name.clone());
    Some(LegInfo {
        leg: leg.config.name.clone(),
        rtp_port: leg.config.local_rtp.port(),
        rtcp_port: leg.config.local_rtcp.port(),
        remote: leg.config.remote,
        latched: leg.latched_rtp,
        ssrc: leg.ssrc,
        state: match (&leg.source, leg.held, peer.is_some()) {
            (_, true, _) => "held",
            (Source::Media(_), false, _) => "playing",
            (Source::Nothing, false, _) => "silent",
            (Source::Peer, false, true) => "live",
            (Source::Peer, false, false) => "idle",
        },
        peer,
        media_timed_out: leg.timed_out,
        counters: leg.counters,
    })
}

fn lot_of(dir: &Directory, lot: &str) -> Result<crate::session::park::LotConfig, ControlError> {
    dir.lots.lot(lot).cloned().ok_or_else(|| {
        ControlError::new(
            ErrorCode::UnknownLot,
            format!("no parking lot `{lot}`; list_lots shows the lots"),
        )
    })
}

/// Locks a mutex, recovering from poisoning: a panicked control thread must not
/// take the whole control plane down with it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
