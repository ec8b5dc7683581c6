//! Parking lots, sans-IO, on a hand-advanced clock: slot policies, explicit
//! slots, first and final timeouts (each exactly once), the retrieve-vs-timeout
//! rule, give-up, BLF slot-state events, several lots, and a clock that steps back.

use rtpark::session::park::{
    GiveUpReason, LotConfig, ParkError, ParkEvent, ParkingLots, SlotPolicy,
};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(45);
const FINAL: Duration = Duration::from_secs(60);

/// Parking lots plus a fake clock.
struct Lots {
    lots: ParkingLots,
    now: Instant,
}

impl Lots {
    fn new(configs: Vec<LotConfig>) -> Self {
        Lots::seeded(configs, 7)
    }

    fn seeded(configs: Vec<LotConfig>, seed: u64) -> Self {
        Lots {
            lots: ParkingLots::with_lots(configs, seed).expect("valid test lots"),
            now: Instant::now(),
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Advances and runs the timers, as the engine's driver would.
    fn run_for(&mut self, d: Duration) {
        self.advance(d);
        self.lots.handle_timeout(self.now);
    }

    fn park(&mut self, lot: &str, slot: Option<u32>, leg: &str) -> Result<u32, ParkError> {
        let call = format!("call-{leg}");
        self.lots
            .park(self.now, lot, slot, &call, leg, Some("200".into()))
    }

    fn retrieve(&mut self, lot: &str, slot: Option<u32>) -> Result<String, ParkError> {
        self.lots.retrieve(self.now, lot, slot).map(|p| p.leg)
    }

    fn events(&mut self) -> Vec<ParkEvent> {
        std::iter::from_fn(|| self.lots.poll_event()).collect()
    }

    fn kinds(&mut self) -> Vec<&'static str> {
        self.events().iter().map(kind).collect()
    }
}

fn kind(e: &ParkEvent) -> &'static str {
    match e {
        ParkEvent::Parked { .. } => "parked",
        ParkEvent::Retrieved { .. } => "retrieved",
        ParkEvent::Timeout { .. } => "timeout",
        ParkEvent::Released { .. } => "released",
        ParkEvent::GiveUp { .. } => "give_up",
        ParkEvent::SlotState { busy: true, .. } => "busy",
        ParkEvent::SlotState { busy: false, .. } => "free",
    }
}

fn lot(name: &str, slots: std::ops::RangeInclusive<u32>, policy: SlotPolicy) -> LotConfig {
    LotConfig {
        policy,
        timeout: TIMEOUT,
        final_timeout: FINAL,
        ..LotConfig::new(name, slots)
    }
}

fn main_lot() -> Lots {
    Lots::new(vec![lot("main", 701..=720, SlotPolicy::LowestFree)])
}

#[test]
fn twenty_parks_into_a_twenty_slot_lot_never_share_a_slot() {
    for policy in [
        SlotPolicy::LowestFree,
        SlotPolicy::NextAfterLast,
        SlotPolicy::Random,
    ] {
        let mut l = Lots::new(vec![lot("main", 701..=720, policy)]);
        let slots: HashSet<u32> = (0..20)
            .map(|i| l.park("main", None, &format!("leg{i}")).unwrap())
            .collect();
        assert_eq!(slots.len(), 20, "{policy:?}: all distinct");
        assert!(slots.iter().all(|s| (701..=720).contains(s)));
        assert_eq!(
            l.park("main", None, "leg20"),
            Err(ParkError::LotFull { lot: "main".into() }),
            "{policy:?}"
        );
        assert_eq!(l.lots.lots()[0].busy, 20);
        assert_eq!(l.lots.lots()[0].free, 0);
    }
}

#[test]
fn lowest_free_fills_holes() {
    let mut l = main_lot();
    for leg in ["a", "b", "c", "d"] {
        l.park("main", None, leg).unwrap();
    }
    l.retrieve("main", Some(702)).unwrap();
    l.retrieve("main", Some(701)).unwrap();
    assert_eq!(l.park("main", None, "e"), Ok(701));
    assert_eq!(l.park("main", None, "f"), Ok(702));
    assert_eq!(l.park("main", None, "g"), Ok(705));
}

#[test]
fn next_after_last_wraps_around_and_skips_busy() {
    let mut l = Lots::new(vec![lot("main", 1..=4, SlotPolicy::NextAfterLast)]);
    assert_eq!(l.park("main", None, "a"), Ok(1));
    assert_eq!(l.park("main", None, "b"), Ok(2));
    l.retrieve("main", Some(1)).unwrap();
    assert_eq!(l.park("main", None, "c"), Ok(3), "does not fill the hole");
    assert_eq!(l.park("main", Some(4), "x"), Ok(4), "explicit slot");
    // Last chosen by policy is 3; 4 is busy, wrap to 1.
    assert_eq!(l.park("main", None, "d"), Ok(1), "wraps, skipping busy 4");
    l.retrieve("main", Some(3)).unwrap();
    // After 1: 2 busy, 3 free.
    assert_eq!(l.park("main", None, "e"), Ok(3));
    assert_eq!(
        l.park("main", None, "f"),
        Err(ParkError::LotFull { lot: "main".into() })
    );
}

#[test]
fn random_is_within_range_distinct_and_deterministic_for_a_seed() {
    let run = |seed: u64| {
        let mut l = Lots::seeded(vec![lot("main", 100..=199, SlotPolicy::Random)], seed);
        (0..50)
            .map(|i| l.park("main", None, &format!("leg{i}")).unwrap())
            .collect::<Vec<u32>>()
    };
    let a = run(42);
    assert!(a.iter().all(|s| (100..=199).contains(s)));
    assert_eq!(a.iter().collect::<HashSet<_>>().len(), 50);
    assert_eq!(a, run(42), "same seed, same slots");
    assert_ne!(a, run(43), "another seed, other slots");
    let sorted: Vec<u32> = (100..150).collect();
    assert_ne!(a, sorted, "not simply the lowest free");
}

#[test]
fn explicit_slot_taken_or_out_of_range_is_refused() {
    let mut l = main_lot();
    assert_eq!(l.park("main", Some(710), "a"), Ok(710));
    assert_eq!(
        l.park("main", Some(710), "b"),
        Err(ParkError::SlotTaken {
            slot: 710,
            by: "a".into()
        })
    );
    assert_eq!(
        l.park("main", Some(700), "b"),
        Err(ParkError::SlotOutOfRange {
            slot: 700,
            range: 701..=720
        })
    );
    assert_eq!(
        l.park("main", Some(721), "b"),
        Err(ParkError::SlotOutOfRange {
            slot: 721,
            range: 701..=720
        })
    );
    assert_eq!(
        l.park("nope", None, "b"),
        Err(ParkError::UnknownLot { lot: "nope".into() })
    );
    assert_eq!(l.lots.find_leg("b"), None, "failed parks leave no trace");
    assert_eq!(l.park("main", None, "b"), Ok(701));
}

#[test]
fn park_raises_parked_then_busy_with_operator_fields() {
    let mut l = main_lot();
    l.park("main", Some(705), "a").unwrap();
    assert_eq!(
        l.events(),
        vec![
            ParkEvent::Parked {
                lot: "main".into(),
                slot: 705,
                call: "call-a".into(),
                leg: "a".into(),
                parker: Some("200".into()),
                timeout_secs: 45,
            },
            ParkEvent::SlotState {
                lot: "main".into(),
                slot: 705,
                busy: true
            },
        ]
    );
}

#[test]
fn park_the_same_leg_twice_is_already_parked() {
    let mut l = Lots::new(vec![
        lot("main", 701..=720, SlotPolicy::LowestFree),
        lot("sales", 801..=810, SlotPolicy::LowestFree),
    ]);
    l.park("main", None, "a").unwrap();
    let again = ParkError::AlreadyParked {
        leg: "a".into(),
        lot: "main".into(),
        slot: 701,
    };
    assert_eq!(l.park("main", None, "a"), Err(again.clone()));
    assert_eq!(
        l.park("sales", None, "a"),
        Err(again),
        "even in another lot"
    );
    assert_eq!(l.lots.lots()[0].busy, 1);
}

#[test]
fn first_timeout_fires_exactly_once_however_often_or_late_timers_run() {
    let mut l = main_lot();
    l.park("main", None, "a").unwrap();
    l.events();
    assert_eq!(l.lots.poll_timeout(), Some(l.now + TIMEOUT));
    for _ in 0..44 {
        l.run_for(Duration::from_secs(1));
    }
    assert_eq!(l.kinds(), Vec::<&str>::new());
    l.run_for(Duration::from_secs(3)); // late: 47 s
    let ev = l.events();
    assert!(
        matches!(&ev[..], [ParkEvent::Timeout { lot, slot: 701, leg, parker: Some(p), waited, .. }]
            if lot == "main" && leg == "a" && p == "200" && *waited == Duration::from_secs(47)),
        "{ev:?}"
    );
    for _ in 0..10 {
        l.lots.handle_timeout(l.now);
        l.run_for(Duration::from_secs(1));
    }
    assert_eq!(l.kinds(), Vec::<&str>::new(), "once per parking");
    let p = l.lots.find_leg("a").unwrap();
    assert!(p.timed_out, "still parked, marked timed out");
}

#[test]
fn final_timeout_releases_the_slot_once_and_frees_it() {
    let mut l = main_lot();
    let t0 = l.now;
    l.park("main", None, "a").unwrap();
    l.events();
    l.run_for(TIMEOUT);
    assert_eq!(l.kinds(), vec!["timeout"]);
    assert_eq!(l.lots.poll_timeout(), Some(t0 + TIMEOUT + FINAL));
    l.run_for(FINAL - Duration::from_millis(1));
    assert_eq!(l.kinds(), Vec::<&str>::new());
    l.run_for(Duration::from_millis(1));
    assert_eq!(
        l.events(),
        vec![
            ParkEvent::Released {
                lot: "main".into(),
                slot: 701,
                call: "call-a".into(),
                leg: "a".into(),
                parker: Some("200".into()),
                waited: TIMEOUT + FINAL,
            },
            ParkEvent::SlotState {
                lot: "main".into(),
                slot: 701,
                busy: false
            },
        ]
    );
    assert_eq!(l.lots.find_leg("a"), None);
    assert_eq!(l.lots.poll_timeout(), None);
    l.run_for(Duration::from_secs(600));
    assert_eq!(l.kinds(), Vec::<&str>::new(), "released once");
    assert_eq!(l.lots.lots()[0].busy, 0);
    assert_eq!(l.park("main", None, "b"), Ok(701), "slot free again");
}

#[test]
fn one_very_late_sweep_raises_timeout_then_release_in_order() {
    let mut l = main_lot();
    l.park("main", None, "a").unwrap();
    l.events();
    l.run_for(Duration::from_secs(3600));
    assert_eq!(l.kinds(), vec!["timeout", "released", "free"]);
    l.run_for(Duration::from_secs(3600));
    assert_eq!(l.kinds(), Vec::<&str>::new());
}

#[test]
fn zero_final_timeout_releases_at_the_first_timeout() {
    let mut l = Lots::new(vec![LotConfig {
        final_timeout: Duration::ZERO,
        ..lot("main", 1..=2, SlotPolicy::LowestFree)
    }]);
    l.park("main", None, "a").unwrap();
    l.events();
    l.run_for(TIMEOUT);
    assert_eq!(l.kinds(), vec!["timeout", "released", "free"]);
}

#[test]
fn retrieve_at_exactly_the_first_timeout_succeeds_after_the_timeout_event() {
    // Rule: a deadline takes effect at its instant, and every call applies the
    // deadlines due first. So at exactly `since + timeout` the timeout fires, and
    // the leg is still retrievable until the final timeout.
    let mut l = main_lot();
    l.park("main", None, "a").unwrap();
    l.events();
    l.advance(TIMEOUT); // the driver has not run the timers yet
    assert_eq!(l.retrieve("main", Some(701)), Ok("a".into()));
    assert_eq!(l.kinds(), vec!["timeout", "retrieved", "free"]);
    l.run_for(FINAL * 2);
    assert_eq!(l.kinds(), Vec::<&str>::new(), "nothing after retrieval");
}

#[test]
fn retrieve_just_before_the_first_timeout_raises_no_timeout() {
    let mut l = main_lot();
    l.park("main", None, "a").unwrap();
    l.events();
    l.advance(TIMEOUT - Duration::from_nanos(1));
    assert_eq!(l.retrieve("main", Some(701)), Ok("a".into()));
    assert_eq!(l.kinds(), vec!["retrieved", "free"]);
    l.run_for(FINAL * 2);
    assert_eq!(l.kinds(), Vec::<&str>::new());
}

#[test]
fn retrieve_after_the_timeout_event_works_and_raises_no_further_timeout() {
    let mut l = main_lot();
    l.park("main", None, "a").unwrap();
    l.events();
    l.run_for(TIMEOUT + Duration::from_secs(10));
    assert_eq!(l.kinds(), vec!["timeout"]);
    let p = l.lots.retrieve(l.now, "main", None).unwrap();
    assert!(p.timed_out);
    assert_eq!(p.parker.as_deref(), Some("200"));
    let ev = l.events();
    assert!(
        matches!(&ev[..], [ParkEvent::Retrieved { waited, .. }, ParkEvent::SlotState { busy: false, .. }]
            if *waited == TIMEOUT + Duration::from_secs(10)),
        "{ev:?}"
    );
    assert_eq!(l.lots.poll_timeout(), None);
    l.run_for(FINAL * 2);
    assert_eq!(l.kinds(), Vec::<&str>::new());
}

#[test]
fn retrieve_at_or_after_the_final_timeout_finds_the_slot_empty() {
    let mut l = main_lot();
    l.park("main", None, "a").unwrap();
    l.events();
    l.advance(TIMEOUT + FINAL); // exactly the release instant, timers not run yet
    assert_eq!(
        l.retrieve("main", Some(701)),
        Err(ParkError::SlotEmpty { slot: 701 })
    );
    assert_eq!(l.kinds(), vec!["timeout", "released", "free"]);
    assert_eq!(
        l.retrieve("main", None),
        Err(ParkError::LotEmpty { lot: "main".into() })
    );
}

#[test]
fn retrieve_twice_only_one_retriever_wins() {
    let mut l = main_lot();
    l.park("main", None, "a").unwrap();
    l.events();
    assert_eq!(l.retrieve("main", Some(701)), Ok("a".into()));
    assert_eq!(
        l.retrieve("main", Some(701)),
        Err(ParkError::SlotEmpty { slot: 701 })
    );
    assert_eq!(l.kinds(), vec!["retrieved", "free"]);
    assert_eq!(
        l.retrieve("nope", None),
        Err(ParkError::UnknownLot { lot: "nope".into() })
    );
}

#[test]
fn longest_waiting_retrieval_picks_the_earliest_parked() {
    let mut l = main_lot();
    l.park("main", Some(715), "first").unwrap();
    l.advance(Duration::from_secs(1));
    l.park("main", Some(702), "second").unwrap();
    l.advance(Duration::from_secs(1));
    l.park("main", Some(701), "third").unwrap();
    assert_eq!(l.retrieve("main", None), Ok("first".into()));
    assert_eq!(l.retrieve("main", None), Ok("second".into()));
    assert_eq!(l.retrieve("main", None), Ok("third".into()));
    assert_eq!(
        l.retrieve("main", None),
        Err(ParkError::LotEmpty { lot: "main".into() })
    );
}

#[test]
fn give_up_via_remove_leg_frees_the_slot() {
    let mut l = main_lot();
    l.park("main", Some(707), "a").unwrap();
    l.events();
    l.advance(Duration::from_secs(5));
    let p = l
        .lots
        .remove_leg(l.now, "a", GiveUpReason::Deleted)
        .unwrap();
    assert_eq!(
        (p.lot.as_str(), p.slot, p.call.as_str()),
        ("main", 707, "call-a")
    );
    assert_eq!(
        l.events(),
        vec![
            ParkEvent::GiveUp {
                lot: "main".into(),
                slot: 707,
                call: "call-a".into(),
                leg: "a".into(),
                parker: Some("200".into()),
                reason: GiveUpReason::Deleted,
                waited: Duration::from_secs(5),
            },
            ParkEvent::SlotState {
                lot: "main".into(),
                slot: 707,
                busy: false
            },
        ]
    );
    assert_eq!(GiveUpReason::MediaTimeout.as_str(), "media_timeout");
    assert_eq!(l.lots.remove_leg(l.now, "a", GiveUpReason::Deleted), None);
    assert_eq!(l.lots.find_leg("a"), None);
    assert_eq!(l.lots.poll_timeout(), None);
    l.run_for(TIMEOUT + FINAL);
    assert_eq!(l.kinds(), Vec::<&str>::new());
    assert_eq!(l.park("main", Some(707), "b"), Ok(707));
}

#[test]
fn several_lots_are_independent() {
    let mut l = Lots::new(vec![
        lot("main", 701..=702, SlotPolicy::LowestFree),
        LotConfig {
            timeout: Duration::from_secs(10),
            moh_class: "sales-jingle".into(),
            ..lot("sales", 701..=710, SlotPolicy::LowestFree)
        },
    ]);
    assert_eq!(l.park("main", None, "a"), Ok(701));
    assert_eq!(
        l.park("sales", None, "b"),
        Ok(701),
        "same number, other lot"
    );
    assert_eq!(l.park("main", None, "c"), Ok(702));
    assert_eq!(
        l.park("main", None, "d"),
        Err(ParkError::LotFull { lot: "main".into() })
    );
    assert_eq!(
        l.park("sales", None, "d"),
        Ok(702),
        "a full lot does not fill others"
    );
    l.events();
    l.run_for(Duration::from_secs(10));
    let ev = l.events();
    assert_eq!(ev.len(), 2);
    assert!(ev
        .iter()
        .all(|e| matches!(e, ParkEvent::Timeout { lot, .. } if lot == "sales")));
    assert_eq!(l.retrieve("main", Some(701)), Ok("a".into()));
    assert_eq!(l.lots.find_leg("b").map(|p| p.slot), Some(701));
    let info = l.lots.lots();
    assert_eq!(
        info.iter()
            .map(|i| (
                i.name.as_str(),
                i.busy,
                i.free,
                i.timeout_secs,
                i.moh_class.as_str()
            ))
            .collect::<Vec<_>>(),
        vec![
            ("main", 1, 1, 45, "default"),
            ("sales", 2, 8, 10, "sales-jingle")
        ]
    );
    assert_eq!(
        l.lots.lot("sales").map(|c| c.moh_class.as_str()),
        Some("sales-jingle")
    );
}

#[test]
fn listing_is_sorted_by_lot_then_slot_with_time_left() {
    let mut l = Lots::new(vec![
        lot("b-lot", 1..=9, SlotPolicy::LowestFree),
        lot("a-lot", 1..=9, SlotPolicy::LowestFree),
    ]);
    l.park("b-lot", Some(3), "x").unwrap();
    l.park("a-lot", Some(5), "y").unwrap();
    l.park("a-lot", Some(2), "z").unwrap();
    l.advance(Duration::from_millis(10_500));
    let list = l.lots.parked(l.now);
    assert_eq!(
        list.iter()
            .map(|p| (p.lot.as_str(), p.slot, p.leg.as_str()))
            .collect::<Vec<_>>(),
        vec![("a-lot", 2, "z"), ("a-lot", 5, "y"), ("b-lot", 3, "x")]
    );
    let z = &list[0];
    assert_eq!(
        (z.since_secs, z.time_left_secs, z.release_in_secs),
        (10, 35, 95)
    );
    assert!(!z.timed_out);
    assert_eq!(z.call, "call-z");
    assert_eq!(z.parker.as_deref(), Some("200"));
    l.run_for(TIMEOUT);
    let z = &l.lots.parked(l.now)[0];
    assert!(z.timed_out);
    assert_eq!(z.time_left_secs, 0, "0 once the first timeout has fired");
    assert_eq!(z.release_in_secs, 50);
}

#[test]
fn time_going_backwards_never_panics_or_fires_early() {
    let mut l = main_lot();
    let t0 = l.now;
    l.advance(Duration::from_secs(100));
    l.park("main", None, "a").unwrap();
    l.events();
    // The clock steps back 100 s.
    l.now = t0;
    l.lots.handle_timeout(l.now);
    assert_eq!(l.kinds(), Vec::<&str>::new());
    l.park("main", None, "b").unwrap();
    let list = l.lots.parked(l.now);
    assert_eq!(list[0].since_secs, 0, "saturates: a parked 'in the future'");
    assert_eq!(list[0].time_left_secs, 145);
    // Longest waiting is the first parked, whatever the clock said.
    let p = l.lots.retrieve(l.now, "main", None).unwrap();
    assert_eq!(p.leg, "a");
    let ev = l.events();
    assert!(ev
        .iter()
        .any(|e| matches!(e, ParkEvent::Retrieved { waited, .. } if waited.is_zero())));
    assert!(l
        .lots
        .remove_leg(t0, "b", GiveUpReason::MediaTimeout)
        .is_some());
    // And forward again: nothing left to fire.
    l.run_for(Duration::from_secs(1000));
    assert_eq!(l.kinds(), vec!["give_up", "free"]);
}

#[test]
fn poll_timeout_is_the_earliest_deadline_across_lots() {
    let mut l = Lots::new(vec![
        lot("main", 1..=9, SlotPolicy::LowestFree),
        LotConfig {
            timeout: Duration::from_secs(20),
            ..lot("short", 1..=9, SlotPolicy::LowestFree)
        },
    ]);
    let t0 = l.now;
    assert_eq!(l.lots.poll_timeout(), None);
    l.park("main", None, "a").unwrap();
    assert_eq!(l.lots.poll_timeout(), Some(t0 + TIMEOUT));
    l.advance(Duration::from_secs(5));
    l.park("short", None, "b").unwrap();
    assert_eq!(l.lots.poll_timeout(), Some(t0 + Duration::from_secs(25)));
    // b times out; its next deadline is its release at 25 + 60 s, a's timeout (45 s) is earlier.
    l.run_for(Duration::from_secs(20));
    assert_eq!(l.lots.poll_timeout(), Some(t0 + TIMEOUT));
    l.run_for(Duration::from_secs(20));
    assert_eq!(l.lots.poll_timeout(), Some(t0 + Duration::from_secs(85)));
    assert_eq!(
        l.kinds(),
        vec!["parked", "busy", "parked", "busy", "timeout", "timeout"]
    );
    // Driving only by poll_timeout reaches every event exactly once.
    let mut fired = Vec::new();
    while let Some(at) = l.lots.poll_timeout() {
        assert!(
            at >= l.now,
            "never a deadline in the past after handle_timeout"
        );
        l.now = at;
        l.lots.handle_timeout(at);
        fired.extend(l.kinds());
    }
    assert_eq!(fired, vec!["released", "free", "released", "free"]);
}

#[test]
fn hostile_inputs_do_not_panic() {
    let mut l = Lots::new(vec![lot(
        "edge",
        u32::MAX - 1..=u32::MAX,
        SlotPolicy::NextAfterLast,
    )]);
    assert_eq!(l.park("edge", None, "a"), Ok(u32::MAX - 1));
    assert_eq!(l.park("edge", None, "b"), Ok(u32::MAX));
    l.retrieve("edge", Some(u32::MAX - 1)).unwrap();
    assert_eq!(
        l.park("edge", None, "c"),
        Ok(u32::MAX - 1),
        "wraps at u32::MAX"
    );
    assert_eq!(
        l.park("edge", Some(0), ""),
        Err(ParkError::SlotOutOfRange {
            slot: 0,
            range: u32::MAX - 1..=u32::MAX
        })
    );
    assert_eq!(
        l.retrieve("edge", Some(12)),
        Err(ParkError::SlotEmpty { slot: 12 })
    );
    assert_eq!(l.lots.remove_leg(l.now, "", GiveUpReason::Deleted), None);
    assert!(ParkingLots::with_lots([lot("bad", 5..=5, SlotPolicy::Random)], 0).is_ok());
    let mut one = Lots::seeded(vec![lot("one", 5..=5, SlotPolicy::Random)], 0);
    assert_eq!(one.park("one", None, "a"), Ok(5));
    assert_eq!(
        one.park("one", None, "b"),
        Err(ParkError::LotFull { lot: "one".into() })
    );
}

#[test]
fn errors_say_what_to_do() {
    let e = ParkError::SlotTaken {
        slot: 701,
        by: "a".into(),
    };
    assert_eq!(
        e.to_string(),
        "slot 701 is taken by leg \"a\"; pick another slot or let the lot choose"
    );
    let e = ParkError::SlotOutOfRange {
        slot: 7,
        range: 701..=720,
    };
    assert_eq!(e.to_string(), "slot 7 is outside the lot's slots 701-720");
    let bad = LotConfig::new("big", 1..=20_000).validate().unwrap_err();
    assert!(bad.to_string().contains("20000 slots is too many"), "{bad}");
}
