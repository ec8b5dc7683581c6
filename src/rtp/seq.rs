//! Sequence-number and timestamp arithmetic: rollover counters that extend the
//! 16-bit sequence number and the 32-bit timestamp to `u64`, signed distances
//! that survive a wrap, and conversions between wall-clock time and media ticks.
//!
//! Everything here is wrapping arithmetic on plain integers; nothing can panic.

use std::time::Duration;

/// Extends a 16-bit RTP sequence number to 64 bits, given the previous extended value.
///
/// The result is the value with low 16 bits equal to `seq` that lies nearest to
/// `prev_extended`, so packets reordered backwards across a wrap keep their old
/// rollover count. With no previous value the rollover count is zero. A distance of
/// exactly half the space (0x8000) counts as older, like [`is_newer`]. A value that
/// would fall below zero (an old packet before the first one, in rollover 0) or past
/// `u64::MAX` keeps the previous rollover count instead.
#[inline]
pub fn extend_u16(prev_extended: Option<u64>, seq: u16) -> u64 {
    let Some(prev) = prev_extended else {
        return u64::from(seq);
    };
    let delta = seq_distance(prev as u16, seq);
    prev.checked_add_signed(i64::from(delta))
        .unwrap_or((prev & !0xffff) | u64::from(seq))
}

/// Extends a 32-bit RTP timestamp to 64 bits, given the previous extended value.
///
/// Same rule as [`extend_u16`]: the nearest value to `prev` whose low 32 bits are
/// `ts`; a distance of exactly 2^31 counts as older; below zero or past `u64::MAX`
/// keeps the previous rollover count.
#[inline]
pub fn extend_u32(prev: Option<u64>, ts: u32) -> u64 {
    let Some(prev) = prev else {
        return u64::from(ts);
    };
    let delta = ts_diff(prev as u32, ts);
    prev.checked_add_signed(i64::from(delta))
        .unwrap_or((prev & !0xffff_ffff) | u64::from(ts))
}

/// Signed number of steps from sequence number `from` forward to `to`, across a wrap
/// (negative when `to` is older); in `-32768..=32767`.
#[inline]
pub fn seq_distance(from: u16, to: u16) -> i16 {
    to.wrapping_sub(from) as i16
}

/// Whether sequence number `seq` is newer than `than` (RFC 1982 serial-number order).
#[inline]
pub fn is_newer(seq: u16, than: u16) -> bool {
    seq_distance(than, seq) > 0
}

/// The offset that, added (wrapping) to sequence number `from`, yields `to`.
#[inline]
pub fn seq_offset(from: u16, to: u16) -> u16 {
    to.wrapping_sub(from)
}

/// Signed number of ticks from timestamp `from` forward to `to`, across a wrap
/// (negative when `to` is earlier).
#[inline]
pub fn ts_diff(from: u32, to: u32) -> i32 {
    to.wrapping_sub(from) as i32
}

/// Whether timestamp `ts` is later than `than` (serial-number order, as [`is_newer`]).
#[inline]
pub fn ts_is_newer(ts: u32, than: u32) -> bool {
    ts_diff(than, ts) > 0
}

/// The offset that, added (wrapping) to timestamp `from`, yields `to`.
#[inline]
pub fn ts_offset(from: u32, to: u32) -> u32 {
    to.wrapping_sub(from)
}

/// Media ticks in `elapsed` at `clock_rate` Hz, rounded down; saturates at `u64::MAX`.
#[inline]
pub fn duration_to_ticks(elapsed: Duration, clock_rate: u32) -> u64 {
    let ticks = elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// Wall-clock length of `ticks` media ticks at `clock_rate` Hz; zero if the rate is zero.
#[inline]
pub fn ticks_to_duration(ticks: u64, clock_rate: u32) -> Duration {
    if clock_rate == 0 {
        return Duration::ZERO;
    }
    let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(clock_rate);
    // ticks <= u64::MAX and clock_rate >= 1, so the seconds fit in u64.
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

/// Advances timestamp `ts` by the wall-clock time `elapsed` at `clock_rate` Hz, wrapping.
#[inline]
pub fn ts_advance(ts: u32, elapsed: Duration, clock_rate: u32) -> u32 {
    // Truncation is the point: timestamps are modulo 2^32.
    ts.wrapping_add(duration_to_ticks(elapsed, clock_rate) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_u16_starts_at_rollover_zero() {
        assert_eq!(extend_u16(None, 0), 0);
        assert_eq!(extend_u16(None, 0xffff), 0xffff);
    }

    #[test]
    fn extend_u16_forward_across_wrap() {
        let a = extend_u16(None, 0xfffe);
        let b = extend_u16(Some(a), 0xffff);
        let c = extend_u16(Some(b), 0x0000);
        let d = extend_u16(Some(c), 0x0001);
        assert_eq!((a, b, c, d), (0xfffe, 0xffff, 0x1_0000, 0x1_0001));
    }

    #[test]
    fn extend_u16_backwards_reordering_across_wrap() {
        // 0x0000 arrived (rollover 1), then the late 0xffff and 0xfffe of rollover 0.
        let after_wrap = 0x1_0000;
        assert_eq!(extend_u16(Some(after_wrap), 0xffff), 0xffff);
        assert_eq!(extend_u16(Some(after_wrap), 0xfffe), 0xfffe);
        // And in a later rollover: 3:0x0002 then 2:0xfff0.
        assert_eq!(extend_u16(Some(0x3_0002), 0xfff0), 0x2_fff0);
        // A late packet does not move the counter: the next new one continues from it.
        assert_eq!(extend_u16(Some(0x3_0002), 0x0003), 0x3_0003);
    }

    #[test]
    fn extend_u16_half_space_is_older() {
        assert_eq!(extend_u16(Some(0x1_0000), 0x8000), 0x8000);
        assert_eq!(extend_u16(Some(0x1_0000), 0x7fff), 0x1_7fff);
        assert_eq!(extend_u16(Some(0x1_8000), 0x0000), 0x1_0000);
        assert_eq!(extend_u16(Some(0x1_8001), 0x0000), 0x2_0000);
    }

    #[test]
    fn extend_u16_cannot_go_below_zero_or_past_max() {
        // An older packet before the very first one stays in rollover 0.
        assert_eq!(extend_u16(Some(5), 0xfffe), 0xfffe);
        assert_eq!(extend_u16(Some(u64::MAX), 0x0001), 0xffff_ffff_ffff_0001);
        assert_eq!(extend_u16(Some(u64::MAX), 0xfffe), u64::MAX - 1);
    }

    #[test]
    fn extend_u32_forward_and_backwards_across_wrap() {
        let a = extend_u32(None, 0xffff_ffff);
        assert_eq!(a, 0xffff_ffff);
        let b = extend_u32(Some(a), 0);
        assert_eq!(b, 0x1_0000_0000);
        assert_eq!(extend_u32(Some(b), 0xffff_ff60), 0xffff_ff60);
        assert_eq!(extend_u32(Some(b), 160), 0x1_0000_00a0);
        assert_eq!(extend_u32(Some(0x1_0000_0000), 0x8000_0000), 0x8000_0000);
        assert_eq!(extend_u32(Some(0x1_0000_0000), 0x7fff_ffff), 0x1_7fff_ffff);
        assert_eq!(extend_u32(Some(3), 0xffff_fff0), 0xffff_fff0);
    }

    #[test]
    fn seq_distance_and_is_newer_at_the_edges() {
        assert_eq!(seq_distance(0xffff, 0), 1);
        assert_eq!(seq_distance(0, 0xffff), -1);
        assert_eq!(seq_distance(0x1234, 0x1234), 0);
        assert_eq!(seq_distance(0, 0x7fff), 0x7fff);
        assert_eq!(seq_distance(0, 0x8000), i16::MIN);
        assert!(is_newer(0, 0xffff));
        assert!(!is_newer(0xffff, 0));
        assert!(!is_newer(7, 7));
        assert!(!is_newer(0x8000, 0));
        assert!(!is_newer(0, 0x8000));
        assert_eq!(seq_offset(0xfff0, 0x0010), 0x20);
        assert_eq!(0xfff0u16.wrapping_add(seq_offset(0xfff0, 0x0010)), 0x0010);
    }

    #[test]
    fn ts_diff_and_is_newer_at_the_edges() {
        assert_eq!(ts_diff(0xffff_ffff, 0), 1);
        assert_eq!(ts_diff(0, 0xffff_ffff), -1);
        assert_eq!(ts_diff(0xffff_ff60, 0x0000_00a0), 320);
        assert_eq!(ts_diff(0, 0x8000_0000), i32::MIN);
        assert!(ts_is_newer(0, 0xffff_ffff));
        assert!(!ts_is_newer(0xffff_ffff, 0));
        assert_eq!(ts_offset(0xffff_ffff, 1), 2);
    }

    #[test]
    fn ticks_and_durations() {
        assert_eq!(duration_to_ticks(Duration::from_millis(20), 8000), 160);
        assert_eq!(duration_to_ticks(Duration::from_millis(20), 48000), 960);
        assert_eq!(duration_to_ticks(Duration::from_micros(124), 8000), 0);
        assert_eq!(duration_to_ticks(Duration::MAX, u32::MAX), u64::MAX);
        assert_eq!(ticks_to_duration(160, 8000), Duration::from_millis(20));
        assert_eq!(ticks_to_duration(160, 0), Duration::ZERO);
        assert_eq!(
            ticks_to_duration(u64::MAX, 1),
            Duration::from_secs(u64::MAX)
        );
        assert_eq!(
            ts_advance(0xffff_ff60, Duration::from_millis(40), 8000),
            0xa0
        );
    }
}
