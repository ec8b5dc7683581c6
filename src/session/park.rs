//! Parking lots, sans-IO: numbered slots, slot policies, park timeouts and the
//! events a PBX and its BLF lamps need.
//!
//! [`ParkingLots`] is pure control-plane state. The engine calls [`ParkingLots::park`],
//! [`ParkingLots::retrieve`] and [`ParkingLots::remove_leg`] under its directory lock,
//! calls [`ParkingLots::handle_timeout`] when [`ParkingLots::poll_timeout`] says so, and
//! drains [`ParkingLots::poll_event`] after every call. Media, bridging and moving legs
//! between workers stay with the engine.
//!
//! Timing rules:
//! * A parking has two deadlines: the *first timeout* (`since + timeout`) raises
//!   [`ParkEvent::Timeout`] once, so the SIP core can "come back to origin" or forward
//!   the call; the *final timeout* (`first timeout + final_timeout`) releases the slot
//!   and raises [`ParkEvent::Released`] once.
//! * A deadline takes effect at its instant (`now >= deadline`). Every method that takes
//!   `now` applies the deadlines due at `now` first, so outcomes depend only on the times
//!   passed in, never on how often the driver polls.
//! * A parked leg stays retrievable after its first timeout, until its final timeout
//!   releases it: the timeout is advice to the SIP core, which typically retrieves the
//!   call itself to ring the parker again. After the release the slot is empty.
//! * `now` may go backwards: durations saturate at zero and nothing panics.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};
use thiserror::Error;

/// The most slots one lot may have (slots are kept in an ordered map and scanned).
pub const MAX_SLOTS_PER_LOT: u32 = 10_000;

/// How a lot picks a slot when the parker names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlotPolicy {
    /// The lowest free slot (fills holes first).
    #[default]
    LowestFree,
    /// The first free slot after the last one this policy chose, wrapping around.
    NextAfterLast,
    /// A uniformly random free slot (deterministic xorshift, seeded in [`ParkingLots::new`]).
    Random,
}

/// Who hears a courtesy tone when a parked call is retrieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CourtesyTone {
    /// Nobody.
    #[default]
    None,
    /// The parked leg.
    Parked,
    /// The retrieving leg.
    Retriever,
    /// Both legs.
    Both,
}

impl CourtesyTone {
    /// Whether the parked leg hears the tone.
    pub fn to_parked(self) -> bool {
        matches!(self, CourtesyTone::Parked | CourtesyTone::Both)
    }
    /// Whether the retrieving leg hears the tone.
    pub fn to_retriever(self) -> bool {
        matches!(self, CourtesyTone::Retriever | CourtesyTone::Both)
    }
}

/// One parking lot's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LotConfig {
    /// The lot's name, as commands and events spell it.
    pub name: String,
    /// The slot numbers, e.g. `701..=720`.
    pub slots: RangeInclusive<u32>,
    /// How a slot is chosen when the parker names none.
    pub policy: SlotPolicy,
    /// Time from parking to the first timeout (the "come back to origin" event).
    pub timeout: Duration,
    /// Time from the first timeout to the release of the slot; zero releases at the first timeout.
    pub final_timeout: Duration,
    /// The MOH class parked legs hear.
    pub moh_class: String,
    /// Whether the parker hears the slot number announced.
    pub announce_slot: bool,
    /// Who hears a courtesy tone on retrieval.
    pub courtesy_tone: CourtesyTone,
}

impl LotConfig {
    /// A lot with the given name and slots and the defaults of [`LotConfig::default`].
    pub fn new(name: impl Into<String>, slots: RangeInclusive<u32>) -> Self {
        LotConfig {
            name: name.into(),
            slots,
            ..LotConfig::default()
        }
    }

    /// Checks the configuration; the error says what is wrong and what to do.
    pub fn validate(&self) -> Result<(), LotConfigError> {
        if self.name.is_empty() {
            return Err(LotConfigError::EmptyName);
        }
        let (start, end) = (*self.slots.start(), *self.slots.end());
        if start > end {
            return Err(LotConfigError::EmptyRange {
                lot: self.name.clone(),
                start,
                end,
            });
        }
        let count = u64::from(end) - u64::from(start) + 1;
        if count > u64::from(MAX_SLOTS_PER_LOT) {
            return Err(LotConfigError::TooManySlots {
                lot: self.name.clone(),
                count,
            });
        }
        if self.timeout.is_zero() {
            return Err(LotConfigError::ZeroTimeout {
                lot: self.name.clone(),
            });
        }
        Ok(())
    }

    fn slot_count(&self) -> u32 {
        // Validated: start <= end and the count fits MAX_SLOTS_PER_LOT; saturate anyway.
        self.slots
            .end()
            .saturating_sub(*self.slots.start())
            .saturating_add(1)
    }
}

impl Default for LotConfig {
    /// Lot `default`, slots 701–720, lowest free, 45 s timeout, release 60 s later,
    /// MOH class `default`, slot announced, no courtesy tone.
    fn default() -> Self {
        LotConfig {
            name: "default".into(),
            slots: 701..=720,
            policy: SlotPolicy::LowestFree,
            timeout: Duration::from_secs(45),
            final_timeout: Duration::from_secs(60),
            moh_class: "default".into(),
            announce_slot: true,
            courtesy_tone: CourtesyTone::None,
        }
    }
}

/// Why a lot configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LotConfigError {
    /// The lot has no name.
    #[error("a parking lot needs a name")]
    EmptyName,
    /// The slot range holds no slot.
    #[error("parking lot \"{lot}\": slot range {start}-{end} is empty; give the lowest slot first, e.g. 701-720")]
    EmptyRange {
        /// The lot.
        lot: String,
        /// First slot given.
        start: u32,
        /// Last slot given.
        end: u32,
    },
    /// The slot range is larger than [`MAX_SLOTS_PER_LOT`].
    #[error("parking lot \"{lot}\": {count} slots is too many (at most 10000); narrow the range or split the lot")]
    TooManySlots {
        /// The lot.
        lot: String,
        /// Slots in the range.
        count: u64,
    },
    /// The park timeout is zero.
    #[error("parking lot \"{lot}\": the park timeout must be longer than zero (e.g. 45 s)")]
    ZeroTimeout {
        /// The lot.
        lot: String,
    },
    /// Two lots have the same name.
    #[error("parking lot \"{lot}\" is configured twice; give each lot its own name")]
    DuplicateLot {
        /// The lot.
        lot: String,
    },
}

/// Why a park or retrieve failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParkError {
    /// No lot has this name.
    #[error("no parking lot \"{lot}\"; use a configured lot (see the lot list)")]
    UnknownLot {
        /// The name asked for.
        lot: String,
    },
    /// The slot asked for holds another leg.
    #[error("slot {slot} is taken by leg \"{by}\"; pick another slot or let the lot choose")]
    SlotTaken {
        /// The slot.
        slot: u32,
        /// The leg parked there.
        by: String,
    },
    /// The slot asked for is not in the lot.
    #[error("slot {slot} is outside the lot's slots {}-{}", range.start(), range.end())]
    SlotOutOfRange {
        /// The slot.
        slot: u32,
        /// The lot's slots.
        range: RangeInclusive<u32>,
    },
    /// Every slot of the lot is busy.
    #[error("parking lot \"{lot}\" is full; retrieve a call or use another lot")]
    LotFull {
        /// The lot.
        lot: String,
    },
    /// The leg is parked already.
    #[error("leg \"{leg}\" is already parked in lot \"{lot}\" slot {slot}; retrieve it first")]
    AlreadyParked {
        /// The leg.
        leg: String,
        /// Its lot.
        lot: String,
        /// Its slot.
        slot: u32,
    },
    /// No leg is parked in the slot (never was, retrieved, or released by its final timeout).
    #[error(
        "slot {slot} is empty (nothing parked, already retrieved, or released after its timeout)"
    )]
    SlotEmpty {
        /// The slot.
        slot: u32,
    },
    /// No leg is parked in the lot.
    #[error("parking lot \"{lot}\" is empty")]
    LotEmpty {
        /// The lot.
        lot: String,
    },
}

/// Why a parked leg left its slot without being retrieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// The leg was deleted (the caller hung up).
    Deleted,
    /// The leg's media timed out.
    MediaTimeout,
}

impl GiveUpReason {
    /// The wire spelling: `deleted` or `media_timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            GiveUpReason::Deleted => "deleted",
            GiveUpReason::MediaTimeout => "media_timeout",
        }
    }
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parked leg's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// The lot.
    pub lot: String,
    /// The slot.
    pub slot: u32,
    /// The leg's call.
    pub call: String,
    /// The leg's (engine-wide) name.
    pub leg: String,
    /// When it was parked.
    pub since: Instant,
    /// Who parked it (leg, extension or user, as the SIP core said), if known.
    pub parker: Option<String>,
    /// Whether its first timeout has fired.
    pub timed_out: bool,
}

/// Something the SIP core (and BLF lamps) should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParkEvent {
    /// A leg was parked (Asterisk `ParkedCall`, FreeSWITCH valet `hold`).
    Parked {
        /// The lot.
        lot: String,
        /// The slot.
        slot: u32,
        /// The leg's call.
        call: String,
        /// The leg.
        leg: String,
        /// Who parked it.
        parker: Option<String>,
        /// Seconds until the first timeout.
        timeout_secs: u64,
    },
    /// A parked leg was retrieved (Asterisk `UnParkedCall`, valet `bridge`).
    Retrieved {
        /// The lot.
        lot: String,
        /// The slot.
        slot: u32,
        /// The leg's call.
        call: String,
        /// The leg.
        leg: String,
        /// Who parked it.
        parker: Option<String>,
        /// How long it was parked.
        waited: Duration,
    },
    /// A parked leg reached its first timeout; it stays parked and retrievable
    /// (Asterisk `ParkedCallTimeOut`).
    Timeout {
        /// The lot.
        lot: String,
        /// The slot.
        slot: u32,
        /// The leg's call.
        call: String,
        /// The leg.
        leg: String,
        /// Who parked it (to call back).
        parker: Option<String>,
        /// How long it has been parked.
        waited: Duration,
    },
    /// A parked leg reached its final timeout and its slot was released; the leg is
    /// no longer parked and the engine decides its fate (usually hang up).
    Released {
        /// The lot.
        lot: String,
        /// The slot.
        slot: u32,
        /// The leg's call.
        call: String,
        /// The leg.
        leg: String,
        /// Who parked it.
        parker: Option<String>,
        /// How long it was parked.
        waited: Duration,
    },
    /// A parked leg went away before retrieval (Asterisk `ParkedCallGiveUp`, valet `exit`).
    GiveUp {
        /// The lot.
        lot: String,
        /// The slot.
        slot: u32,
        /// The leg's call.
        call: String,
        /// The leg.
        leg: String,
        /// Who parked it.
        parker: Option<String>,
        /// Why it left.
        reason: GiveUpReason,
        /// How long it was parked.
        waited: Duration,
    },
    /// A slot turned busy or free (for BLF lamps); follows every other event that changes it.
    SlotState {
        /// The lot.
        lot: String,
        /// The slot.
        slot: u32,
        /// Whether a leg is parked there now.
        busy: bool,
    },
}

/// One parked leg, for listings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParkedInfo {
    /// The lot.
    pub lot: String,
    /// The slot.
    pub slot: u32,
    /// The leg's call.
    pub call: String,
    /// The leg.
    pub leg: String,
    /// Whole seconds since it was parked.
    pub since_secs: u64,
    /// Seconds (rounded up) until the first timeout; 0 once it has fired (see `timed_out`).
    pub time_left_secs: u64,
    /// Seconds (rounded up) until the final timeout releases the slot.
    pub release_in_secs: u64,
    /// Who parked it.
    pub parker: Option<String>,
    /// Whether the first timeout has fired.
    pub timed_out: bool,
}

/// One lot, for listings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LotInfo {
    /// The lot's name.
    pub name: String,
    /// Its slots.
    pub slots: RangeInclusive<u32>,
    /// Slots holding a leg.
    pub busy: u32,
    /// Slots free.
    pub free: u32,
    /// Park timeout in seconds (rounded up).
    pub timeout_secs: u64,
    /// Seconds from the first timeout to the release (rounded up).
    pub final_timeout_secs: u64,
    /// The MOH class parked legs hear.
    pub moh_class: String,
}

/// A parking in progress.
#[derive(Debug)]
struct Entry {
    parked: Parked,
    /// Park order, engine-wide: "longest waiting" means lowest serial, whatever the clock did.
    serial: u64,
    /// The first timeout; `None` if it lies beyond what `Instant` can represent.
    first_deadline: Option<Instant>,
    /// The release; `None` if it lies beyond what `Instant` can represent.
    final_deadline: Option<Instant>,
}

impl Entry {
    fn next_deadline(&self) -> Option<Instant> {
        if self.parked.timed_out {
            self.final_deadline
        } else {
            self.first_deadline
        }
    }
}

#[derive(Debug)]
struct Lot {
    config: LotConfig,
    /// Busy slots only.
    busy: BTreeMap<u32, Entry>,
    /// The slot [`SlotPolicy::NextAfterLast`] chose last.
    last: Option<u32>,
}

/// Which deadline fell due, in the order they are applied at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Timeout,
    Release,
}

/// Every parking lot of the engine, their parked legs and pending events.
#[derive(Debug)]
pub struct ParkingLots {
    lots: BTreeMap<String, Lot>,
    /// Leg name → (lot, slot) of every parked leg.
    legs: HashMap<String, (String, u32)>,
    events: VecDeque<ParkEvent>,
    next_serial: u64,
    rng: u64,
}

impl ParkingLots {
    /// No lots yet; `seed` drives [`SlotPolicy::Random`] (a fixed seed gives a fixed sequence).
    pub fn new(seed: u64) -> Self {
        ParkingLots {
            lots: BTreeMap::new(),
            legs: HashMap::new(),
            events: VecDeque::new(),
            next_serial: 0,
            // xorshift never leaves zero, so zero maps to a fixed odd constant.
            rng: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
        }
    }

    /// Lots from `configs`, each validated; names must be unique.
    pub fn with_lots(
        configs: impl IntoIterator<Item = LotConfig>,
        seed: u64,
    ) -> Result<Self, LotConfigError> {
        let mut lots = ParkingLots::new(seed);
        for config in configs {
            lots.add_lot(config)?;
        }
        Ok(lots)
    }

    /// Adds a validated lot; its name must be new.
    pub fn add_lot(&mut self, config: LotConfig) -> Result<(), LotConfigError> {
        config.validate()?;
        if self.lots.contains_key(&config.name) {
            return Err(LotConfigError::DuplicateLot { lot: config.name });
        }
        self.lots.insert(
            config.name.clone(),
            Lot {
                config,
                busy: BTreeMap::new(),
                last: None,
            },
        );
        Ok(())
    }

    /// A lot's configuration (for its MOH class, announcement and courtesy tone).
    pub fn lot(&self, name: &str) -> Option<&LotConfig> {
        self.lots.get(name).map(|l| &l.config)
    }

    /// Parks `leg` of `call` in `lot`, in `slot` or one the lot's policy picks; returns the slot.
    ///
    /// The slot is claimed before this returns, so two parks never share one. Raises
    /// [`ParkEvent::Parked`] then [`ParkEvent::SlotState`] (busy).
    pub fn park(
        &mut self,
        now: Instant,
        lot: &str,
        slot: Option<u32>,
        call: &str,
        leg: &str,
        parker: Option<String>,
    ) -> Result<u32, ParkError> {
        self.handle_timeout(now);
        if !self.lots.contains_key(lot) {
            return Err(ParkError::UnknownLot { lot: lot.into() });
        }
        if let Some((at_lot, at_slot)) = self.legs.get(leg) {
            return Err(ParkError::AlreadyParked {
                leg: leg.into(),
                lot: at_lot.clone(),
                slot: *at_slot,
            });
        }
        let rng = &mut self.rng;
        let Some(l) = self.lots.get_mut(lot) else {
            return Err(ParkError::UnknownLot { lot: lot.into() });
        };
        let slot = match slot {
            Some(s) => {
                if !l.config.slots.contains(&s) {
                    return Err(ParkError::SlotOutOfRange {
                        slot: s,
                        range: l.config.slots.clone(),
                    });
                }
                if let Some(e) = l.busy.get(&s) {
                    return Err(ParkError::SlotTaken {
                        slot: s,
                        by: e.parked.leg.clone(),
                    });
                }
                s
            }
            None => {
                let Some(s) = choose_slot(l, rng) else {
                    return Err(ParkError::LotFull { lot: lot.into() });
                };
                if l.config.policy == SlotPolicy::NextAfterLast {
                    l.last = Some(s);
                }
                s
            }
        };
        let first_deadline = now.checked_add(l.config.timeout);
        let final_deadline = first_deadline.and_then(|d| d.checked_add(l.config.final_timeout));
        let serial = self.next_serial;
        self.next_serial = self.next_serial.wrapping_add(1);
        l.busy.insert(
            slot,
            Entry {
                parked: Parked {
                    lot: lot.into(),
                    slot,
                    call: call.into(),
                    leg: leg.into(),
                    since: now,
                    parker: parker.clone(),
                    timed_out: false,
                },
                serial,
                first_deadline,
                final_deadline,
            },
        );
        let timeout_secs = ceil_secs(l.config.timeout);
        self.legs.insert(leg.into(), (lot.into(), slot));
        self.events.push_back(ParkEvent::Parked {
            lot: lot.into(),
            slot,
            call: call.into(),
            leg: leg.into(),
            parker,
            timeout_secs,
        });
        self.events.push_back(ParkEvent::SlotState {
            lot: lot.into(),
            slot,
            busy: true,
        });
        Ok(slot)
    }

    /// Takes the leg parked in `slot` of `lot` (or, with `None`, the one parked
    /// earliest) out of the lot and returns its record.
    ///
    /// Succeeds before and after the first timeout, until the final timeout has
    /// released the slot. Raises [`ParkEvent::Retrieved`] then [`ParkEvent::SlotState`] (free).
    pub fn retrieve(
        &mut self,
        now: Instant,
        lot: &str,
        slot: Option<u32>,
    ) -> Result<Parked, ParkError> {
        self.handle_timeout(now);
        let Some(l) = self.lots.get(lot) else {
            return Err(ParkError::UnknownLot { lot: lot.into() });
        };
        let slot = match slot {
            Some(s) if l.busy.contains_key(&s) => s,
            Some(s) => return Err(ParkError::SlotEmpty { slot: s }),
            None => match l.busy.iter().min_by_key(|(_, e)| e.serial) {
                Some((s, _)) => *s,
                None => return Err(ParkError::LotEmpty { lot: lot.into() }),
            },
        };
        let Some(entry) = self.take(lot, slot) else {
            return Err(ParkError::SlotEmpty { slot });
        };
        let p = entry.parked;
        self.events.push_back(ParkEvent::Retrieved {
            lot: p.lot.clone(),
            slot,
            call: p.call.clone(),
            leg: p.leg.clone(),
            parker: p.parker.clone(),
            waited: now.saturating_duration_since(p.since),
        });
        self.push_free(&p.lot, slot);
        Ok(p)
    }

    /// Takes a parked leg that went away (deleted, media timeout) out of its lot.
    ///
    /// Returns `None` if the leg is not parked. Raises [`ParkEvent::GiveUp`] then
    /// [`ParkEvent::SlotState`] (free).
    pub fn remove_leg(&mut self, now: Instant, leg: &str, reason: GiveUpReason) -> Option<Parked> {
        self.handle_timeout(now);
        let (lot, slot) = self.legs.get(leg).cloned()?;
        let p = self.take(&lot, slot)?.parked;
        self.events.push_back(ParkEvent::GiveUp {
            lot: p.lot.clone(),
            slot,
            call: p.call.clone(),
            leg: p.leg.clone(),
            parker: p.parker.clone(),
            reason,
            waited: now.saturating_duration_since(p.since),
        });
        self.push_free(&p.lot, slot);
        Some(p)
    }

    /// The record of a parked leg, if it is parked (as of the last call that took `now`).
    pub fn find_leg(&self, leg: &str) -> Option<&Parked> {
        let (lot, slot) = self.legs.get(leg)?;
        self.lots.get(lot)?.busy.get(slot).map(|e| &e.parked)
    }

    /// Applies every deadline due at `now`: each first timeout raises
    /// [`ParkEvent::Timeout`] once, each final timeout releases its slot
    /// ([`ParkEvent::Released`], then [`ParkEvent::SlotState`]) once. Events come in
    /// deadline order; calling late or often is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due: Vec<(Instant, Due, u64, String, u32)> = Vec::new();
        for (name, lot) in &self.lots {
            for (slot, e) in &lot.busy {
                if !e.parked.timed_out {
                    match e.first_deadline {
                        Some(d) if d <= now => {
                            due.push((d, Due::Timeout, e.serial, name.clone(), *slot))
                        }
                        _ => continue,
                    }
                }
                if let Some(d) = e.final_deadline.filter(|d| *d <= now) {
                    due.push((d, Due::Release, e.serial, name.clone(), *slot));
                }
            }
        }
        if due.is_empty() {
            return;
        }
        due.sort_unstable();
        for (_, kind, _, lot, slot) in due {
            match kind {
                Due::Timeout => {
                    let Some(e) = self.lots.get_mut(&lot).and_then(|l| l.busy.get_mut(&slot))
                    else {
                        continue;
                    };
                    e.parked.timed_out = true;
                    let p = &e.parked;
                    self.events.push_back(ParkEvent::Timeout {
                        lot: p.lot.clone(),
                        slot,
                        call: p.call.clone(),
                        leg: p.leg.clone(),
                        parker: p.parker.clone(),
                        waited: now.saturating_duration_since(p.since),
                    });
                }
                Due::Release => {
                    let Some(e) = self.take(&lot, slot) else {
                        continue;
                    };
                    let p = e.parked;
                    self.events.push_back(ParkEvent::Released {
                        lot: p.lot,
                        slot,
                        call: p.call,
                        leg: p.leg,
                        parker: p.parker,
                        waited: now.saturating_duration_since(p.since),
                    });
                    self.push_free(&lot, slot);
                }
            }
        }
    }

    /// The earliest pending deadline (first or final timeout) across all lots.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.lots
            .values()
            .flat_map(|l| l.busy.values())
            .filter_map(Entry::next_deadline)
            .min()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<ParkEvent> {
        self.events.pop_front()
    }

    /// Every parked leg, sorted by lot then slot; times relative to `now` (read-only:
    /// deadlines due at `now` are not applied, but `time_left_secs` is then 0).
    pub fn parked(&self, now: Instant) -> Vec<ParkedInfo> {
        self.lots
            .values()
            .flat_map(|l| l.busy.values())
            .map(|e| {
                let p = &e.parked;
                let left = |d: Option<Instant>| {
                    d.map_or(u64::MAX, |d| ceil_secs(d.saturating_duration_since(now)))
                };
                ParkedInfo {
                    lot: p.lot.clone(),
                    slot: p.slot,
                    call: p.call.clone(),
                    leg: p.leg.clone(),
                    since_secs: now.saturating_duration_since(p.since).as_secs(),
                    time_left_secs: if p.timed_out {
                        0
                    } else {
                        left(e.first_deadline)
                    },
                    release_in_secs: left(e.final_deadline),
                    parker: p.parker.clone(),
                    timed_out: p.timed_out,
                }
            })
            .collect()
    }

    /// Every lot, sorted by name, with its occupancy.
    pub fn lots(&self) -> Vec<LotInfo> {
        self.lots
            .values()
            .map(|l| {
                let total = l.config.slot_count();
                let busy = u32::try_from(l.busy.len()).unwrap_or(u32::MAX);
                LotInfo {
                    name: l.config.name.clone(),
                    slots: l.config.slots.clone(),
                    busy,
                    free: total.saturating_sub(busy),
                    timeout_secs: ceil_secs(l.config.timeout),
                    final_timeout_secs: ceil_secs(l.config.final_timeout),
                    moh_class: l.config.moh_class.clone(),
                }
            })
            .collect()
    }

    /// Removes a parking from its lot and from the leg index together.
    fn take(&mut self, lot: &str, slot: u32) -> Option<Entry> {
        let e = self.lots.get_mut(lot)?.busy.remove(&slot)?;
        self.legs.remove(&e.parked.leg);
        Some(e)
    }

    fn push_free(&mut self, lot: &str, slot: u32) {
        self.events.push_back(ParkEvent::SlotState {
            lot: lot.into(),
            slot,
            busy: false,
        });
    }
}

/// A free slot by the lot's policy, or `None` if the lot is full.
fn choose_slot(lot: &Lot, rng: &mut u64) -> Option<u32> {
    let (start, end) = (*lot.config.slots.start(), *lot.config.slots.end());
    let total = lot.config.slot_count();
    let busy = u32::try_from(lot.busy.len()).unwrap_or(u32::MAX);
    if busy >= total {
        return None;
    }
    let is_free = |s: &u32| !lot.busy.contains_key(s);
    match lot.config.policy {
        SlotPolicy::LowestFree => (start..=end).find(is_free),
        SlotPolicy::NextAfterLast => {
            let from = match lot.last {
                Some(last) if last >= start && last < end => last + 1,
                _ => start,
            };
            (from..=end).chain(start..from).find(is_free)
        }
        SlotPolicy::Random => {
            let free = u64::from(total - busy);
            let k = usize::try_from(xorshift(rng) % free).unwrap_or(0);
            (start..=end).filter(is_free).nth(k)
        }
    }
}

/// xorshift64* step: a fixed sequence per seed, good enough to spread parked calls.
fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Whole seconds, rounded up (a 0.5 s wait shows as 1 s; only zero shows as 0).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_reports_each_problem() {
        assert_eq!(
            LotConfig::new("", 1..=2).validate(),
            Err(LotConfigError::EmptyName)
        );
        #[allow(clippy::reversed_empty_ranges)]
        let empty = LotConfig::new("a", 720..=701);
        assert!(matches!(
            empty.validate(),
            Err(LotConfigError::EmptyRange {
                start: 720,
                end: 701,
                ..
            })
        ));
        assert!(matches!(
            LotConfig::new("a", 0..=u32::MAX).validate(),
            Err(LotConfigError::TooManySlots {
                count: 4_294_967_296,
                ..
            })
        ));
        assert!(LotConfig::new("a", 1..=10_000).validate().is_ok());
        assert!(LotConfig::new("a", 1..=10_001).validate().is_err());
        let zero = LotConfig {
            timeout: Duration::ZERO,
            ..LotConfig::new("a", 1..=2)
        };
        assert_eq!(
            zero.validate(),
            Err(LotConfigError::ZeroTimeout { lot: "a".into() })
        );
        assert!(LotConfig::default().validate().is_ok());
    }

    #[test]
    fn duplicate_lot_is_refused() {
        let r = ParkingLots::with_lots([LotConfig::default(), LotConfig::default()], 1);
        assert_eq!(
            r.err(),
            Some(LotConfigError::DuplicateLot {
                lot: "default".into()
            })
        );
    }

    #[test]
    fn huge_timeout_never_fires_and_never_panics() {
        let now = Instant::now();
        let cfg = LotConfig {
            timeout: Duration::MAX,
            final_timeout: Duration::MAX,
            ..LotConfig::default()
        };
        let mut lots = ParkingLots::with_lots([cfg], 1).unwrap();
        lots.park(now, "default", None, "c", "a", None).unwrap();
        assert_eq!(lots.poll_timeout(), None);
        let info = lots.parked(now);
        assert_eq!(info[0].time_left_secs, u64::MAX);
        lots.handle_timeout(now + Duration::from_secs(1_000_000));
        assert!(lots.find_leg("a").is_some());
    }

    #[test]
    fn ceil_secs_rounds_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(45)), 45);
    }

    #[test]
    fn xorshift_zero_seed_still_moves() {
        let mut lots = ParkingLots::new(0);
        assert_ne!(xorshift(&mut lots.rng), xorshift(&mut lots.rng));
    }
}
