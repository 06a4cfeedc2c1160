//! Webhook deliveries, decided without I/O: when a failed delivery is tried
//! again, which deliveries may go now (in order per subject), where an
//! endpoint's durable position stands, and which addresses a request must
//! never reach.
//!
//! An endpoint is a durable consumer of the outbox. Its position is the
//! lowest sequence not yet resolved (delivered or skipped) plus the
//! deliveries still open: waiting for their first attempt, waiting to be
//! tried again, or parked after the last retry. A subject's (a lead's or an
//! account's) later delivery waits while an earlier one of the same subject
//! is open; other subjects go on, up to [`MAX_OPEN`] open deliveries, after
//! which the endpoint stops reading new events until some resolve.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::time::{Span, Timestamp};

/// Deliveries of an endpoint open at most: beyond, it reads no new event.
pub const MAX_OPEN: usize = 1_000;
/// How long a delivery is tried before it is parked.
pub const RETRY_FOR: Span = Span::from_hours(24);
/// An endpoint whose deliveries have all failed for this long is disabled.
pub const DISABLE_AFTER: Span = Span::from_hours(24);

/// Whether an endpoint whose every attempt failed since `since` is
/// disabled at `now`.
pub fn disable_due(since: Timestamp, now: Timestamp) -> bool {
    since.saturating_add(DISABLE_AFTER) <= now
}

/// The pauses after the first, second, … failed attempt, before jitter; the
/// last repeats until [`RETRY_FOR`] has passed since the first attempt.
const PAUSES_SECS: [i64; 9] = [5, 30, 120, 600, 1_800, 3_600, 7_200, 14_400, 21_600];

/// When attempt `failed + 1` of a delivery first tried at `first` and last
/// failed at `last` goes, with `jitter` (0 to 1) spreading it by up to a
/// fifth of the pause either way; `None` when that is past [`RETRY_FOR`]:
/// the delivery is parked.
pub fn retry_at(first: Timestamp, last: Timestamp, failed: u32, jitter: f64) -> Option<Timestamp> {
    let index = usize::try_from(failed.max(1) - 1).unwrap_or(usize::MAX);
    let pause = PAUSES_SECS[index.min(PAUSES_SECS.len() - 1)] * 1_000_000;
    let spread = (jitter.clamp(0.0, 1.0) * 2.0 - 1.0) * 0.2;
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let pause = pause + (pause as f64 * spread) as i64;
    let at = last.saturating_add(Span::from_micros(pause));
    (at <= first.saturating_add(RETRY_FOR)).then_some(at)
}

/// Where an open delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    /// To be tried at this instant (the first attempt: its creation).
    Due(Timestamp),
    /// Tried until [`RETRY_FOR`] ran out: waits for `RetryDelivery` or
    /// `SkipDelivery`, and holds its subject's later deliveries.
    Parked,
}

/// An endpoint's open deliveries by sequence, each with its subject.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deliveries {
    open: BTreeMap<i64, (String, Open)>,
}

impl Deliveries {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, seq: i64, subject: impl Into<String>, state: Open) {
        self.open.insert(seq, (subject.into(), state));
    }

    /// Resolved (delivered or skipped): it no longer holds its subject.
    pub fn resolve(&mut self, seq: i64) {
        self.open.remove(&seq);
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Whether no new event may be read: [`MAX_OPEN`] deliveries are open.
    pub fn full(&self) -> bool {
        self.open.len() >= MAX_OPEN
    }

    /// The deliveries that may be attempted at `now`, in sequence order:
    /// the first open one of each subject, if it is due.
    pub fn ready(&self, now: Timestamp) -> Vec<i64> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (seq, (subject, state)) in &self.open {
            if !seen.insert(subject.as_str()) {
                continue;
            }
            if matches!(state, Open::Due(at) if *at <= now) {
                out.push(*seq);
            }
        }
        out
    }

    /// When the next delivery becomes ready, if one can without a call:
    /// the earliest due instant among the first open delivery of each subject.
    pub fn next_due(&self) -> Option<Timestamp> {
        let mut seen = std::collections::HashSet::new();
        self.open
            .values()
            .filter(|(subject, _)| seen.insert(subject.as_str()))
            .filter_map(|(_, state)| match state {
                Open::Due(at) => Some(*at),
                Open::Parked => None,
            })
            .min()
    }

    /// The endpoint's durable cursor: every sequence up to it is resolved,
    /// given that every event up to `read` has been read (and those not
    /// matching its filter resolved at once).
    pub fn cursor(&self, read: i64) -> i64 {
        self.open
            .keys()
            .next()
            .map_or(read, |first| (first - 1).min(read))
    }
}

/// Why a request must not go to `ip`, if it must not: loopback, private,
/// link-local, shared (carrier-grade NAT), unique-local, unspecified,
/// multicast, broadcast, documentation and benchmarking ranges, and IPv6
/// forms of IPv4 addresses that are any of these.
pub fn refused_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if o[0] == 100 && (64..128).contains(&o[1]) {
                Some("shared address space")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("unspecified")
            } else if v4.is_multicast() || o[0] >= 240 {
                Some("multicast or reserved")
            } else if v4.is_documentation() || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) {
                Some("documentation or benchmarking")
            } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
                Some("IETF protocol assignments")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return refused_address(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    (hi & 0xff) as u8,
                    (lo >> 8) as u8,
                    (lo & 0xff) as u8,
                ))
            };
            // IPv4-compatible (::a.b.c.d, deprecated) and 6to4 (2002:a.b.c.d::)
            // carry an IPv4 address that decides.
            if s[..6].iter().all(|&x| x == 0) && !v6.is_loopback() && !v6.is_unspecified() {
                return refused_address(embedded(s[6], s[7])).or(Some("IPv4-compatible"));
            }
            if s[0] == 0x2002 {
                return refused_address(embedded(s[1], s[2]));
            }
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("unique local")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation")
            } else if s[0] == 0x2001 && s[1] == 0 {
                Some("Teredo")
            } else if s[0] & 0xffc0 == 0xfec0 {
                Some("site-local")
            } else if s[0] == 0x0100 && s[1..4].iter().all(|&x| x == 0) {
                Some("discard-only")
            } else if s[0] == 0x0064 && s[1] == 0xff9b {
                // NAT64: the IPv4 address in the last 32 bits decides.
                refused_address(embedded(s[6], s[7]))
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_secs(1_000_000 + secs)
    }

    #[test]
    fn retries_back_off_within_a_day_then_park() {
        // The middle of the jitter: the pauses as listed.
        assert_eq!(retry_at(t(0), t(0), 1, 0.5), Some(t(5)));
        assert_eq!(retry_at(t(0), t(5), 2, 0.5), Some(t(35)));
        assert_eq!(retry_at(t(0), t(35), 3, 0.5), Some(t(155)));
        // Jitter spreads a pause by at most a fifth either way.
        assert_eq!(retry_at(t(0), t(0), 4, 0.0), Some(t(480)));
        assert_eq!(retry_at(t(0), t(0), 4, 1.0), Some(t(720)));
        // The longest pause repeats until the day is over, then: parked.
        let mut last = t(0);
        let mut failed = 1;
        while let Some(next) = retry_at(t(0), last, failed, 0.5) {
            assert!(next > last);
            last = next;
            failed += 1;
        }
        assert!(last <= t(86_400));
        assert!(last > t(86_400 - 21_600 - 1));
        assert_eq!(failed, 11, "attempts in a day");
    }

    #[test]
    fn a_subject_waits_for_its_open_delivery_others_go_on() {
        let mut d = Deliveries::new();
        d.insert(1, "lead:a", Open::Due(t(10)));
        d.insert(2, "lead:a", Open::Due(t(0)));
        d.insert(3, "lead:b", Open::Due(t(0)));
        d.insert(4, "lead:c", Open::Parked);
        d.insert(5, "lead:c", Open::Due(t(0)));
        // a's first is not due yet, and holds a's second; c's is parked.
        assert_eq!(d.ready(t(0)), [3]);
        assert_eq!(d.next_due(), Some(t(0)));
        assert_eq!(d.ready(t(10)), [1, 3]);
        d.resolve(1);
        d.resolve(3);
        assert_eq!(d.ready(t(10)), [2]);
        assert_eq!(d.cursor(9), 1);
        d.resolve(2);
        assert_eq!(d.ready(t(10)), Vec::<i64>::new());
        assert_eq!(d.next_due(), None);
        // Parked holds the cursor until it is retried or skipped.
        assert_eq!(d.cursor(9), 3);
        d.resolve(4);
        assert_eq!(d.ready(t(10)), [5]);
        d.resolve(5);
        assert_eq!(d.cursor(9), 9);
        assert!(d.is_empty());
    }

    #[test]
    fn an_endpoint_stops_reading_at_the_bound() {
        let mut d = Deliveries::new();
        for seq in 0..i64::try_from(MAX_OPEN).unwrap_or(0) {
            assert!(!d.full());
            d.insert(seq + 1, format!("lead:{seq}"), Open::Parked);
        }
        assert!(d.full());
        assert_eq!(d.len(), MAX_OPEN);
    }

    #[test]
    fn private_and_local_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
            "192.0.0.8",
            "::7f00:1",
            "::a00:1",
            "2002:c0a8:0101::1",
            "2002:7f00:1::",
            "2001:0:4136:e378::1",
            "fec0::1",
            "100::1",
        ] {
            let parsed: IpAddr = ip.parse().expect(ip);
            assert!(refused_address(parsed).is_some(), "{ip} was allowed");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:808:808::1",
        ] {
            let parsed: IpAddr = ip.parse().expect(ip);
            assert_eq!(refused_address(parsed), None, "{ip} was refused");
        }
    }
}
