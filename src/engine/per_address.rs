//! Per-address limits: `--max-connections-per-address` and
//! `--connect-rate-per-address` with `--connect-burst`, both off by default.
//!
//! A client address ([`ClientKey`]) is an IPv4 address, an IPv6 /64 (one
//! subscriber usually holds a whole /64, so counting single IPv6 addresses
//! would limit nothing), or, on a Unix socket, the peer's uid.
//!
//! [`PerAddress::admit`] takes the decision for a new connection as soon as
//! its client address is known (the acceptor at accept, a worker after a
//! PROXY header). Under one lock it checks the connection cap, then the
//! rate, then counts the connection, so the order is fixed:
//!
//! - over the cap: [`Limit::Connections`] with a retry hint of 0, and no
//!   token is taken from the address's bucket;
//! - over the rate: [`Limit::Rate`] with the time until the next token, and
//!   the connection is not counted against the cap;
//! - otherwise one token is taken and the connection is counted until its
//!   [`AddressSlot`] is dropped.
//!
//! ## The rate
//!
//! The bucket is the generic cell rate algorithm (GCRA), the token bucket
//! kept as a single number per address: the theoretical arrival time `tat`
//! of the next connection if the address used its rate exactly. With
//! `interval` = 1 / rate and `tolerance` = (burst − 1) × interval, a
//! connection at `now` is let in when `now >= tat − tolerance`, and then
//! `tat` becomes `max(tat, now) + interval`; a connection turned away
//! changes nothing, so it takes no token. When `tat <= now` the bucket is
//! full again and the entry says nothing an absent one would not: such
//! entries are forgotten by [`PerAddress::prune`], which the reaper calls
//! about every 250 ms.
//!
//! ## Bounded state
//!
//! The map of open connections per address drops an address when its count
//! reaches zero, so it never holds more entries than there are open
//! connections (at most `--max-connections`). The rate table holds at most
//! `max(--max-connections, 1024)` addresses (the floor keeps the limit
//! useful on a small server at a cost of a few tens of KiB). Both maps use
//! the standard library's randomly keyed SipHash, so clients choosing their
//! addresses cannot make the lookups degrade. A slot of either map is 25 B
//! (a 16 B key, its count or time, a control byte); with the maps' spare
//! room and their growth under churn, the rate table stays under about
//! 100 B per address of its bound (800 KiB at the default
//! `--max-connections` of 10 000, measured with a million addresses by
//! `benches/per_address.rs`). [`PerAddress::prune`] gives the room back
//! once a flood is over.
//!
//! **When the rate table is full** (more distinct addresses connected within
//! one bucket's refill time than it holds, even after pruning), a new
//! address is let in without a bucket: the table fails open. Failing closed
//! would let anyone who controls many addresses turn every newcomer away,
//! which turns a fairness limit into a denial of service; failing open keeps
//! the addresses already in the table limited, while `--max-connections`
//! and `--queue` still bound the server as a whole. Each such admission is
//! counted ([`PerAddress::unrecorded`]) so the engine can export it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::limit_settings::PerAddressSettings;

/// Whom a limit counts: an IPv4 address, an IPv6 /64 (IPv4-mapped IPv6
/// counts as the IPv4 address), or a Unix uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ClientKey {
    /// An IPv4 address, whole.
    V4(u32),
    /// The upper 64 bits of an IPv6 address: its /64 network.
    V6Net(u64),
    /// The uid of a Unix socket's peer.
    Uid(u32),
}

impl ClientKey {
    /// The key of a TCP client (or of the address a PROXY header gave).
    pub(crate) fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(u32::from(v4)),
                None => ClientKey::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }

    /// The key of a Unix socket's peer, by its uid.
    pub(crate) fn from_uid(uid: u32) -> Self {
        ClientKey::Uid(uid)
    }
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        ClientKey::from_ip(ip)
    }
}

/// Which per-address limit a connection is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// `--max-connections-per-address`: metrics reason `per_address_connections`.
    Connections,
    /// `--connect-rate-per-address`: metrics reason `per_address_rate`.
    Rate,
}

impl Limit {
    /// The reason label in `wharf_connections_rejected_total`.
    pub(crate) fn metrics_reason(self) -> &'static str {
        match self {
            Limit::Connections => "per_address_connections",
            Limit::Rate => "per_address_rate",
        }
    }
}

/// A connection turned away: which limit, and when its address would be
/// let in again (zero for the connection cap, which frees on a close, not
/// on a clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limited {
    pub(crate) limit: Limit,
    pub(crate) retry_after: Duration,
}

/// The smallest rate table, whatever `--max-connections` is.
const MIN_RATE_ENTRIES: usize = 1024;

/// A full-table prune costs a few nanoseconds per entry; allowing one per
/// this many nanoseconds per entry keeps those scans to a small share of
/// the acceptor's time however long the table stays full.
const FULL_PRUNE_NANOS_PER_ENTRY: u64 = 50;

/// The rate limit's constants, in nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Time for one token to come back.
    interval: u64,
    /// (burst − 1) × interval: how far ahead of `now` an address's `tat`
    /// may run and still be let in.
    tolerance: u64,
}

/// What the limits keep, under one lock.
#[derive(Debug, Default)]
struct Table {
    /// Open connections per address (the cap on): never holds a zero.
    open: HashMap<ClientKey, u32>,
    /// Each address's theoretical arrival time, in nanoseconds since
    /// [`Shared::epoch`] (the rate on): at most `rate_capacity` entries.
    tat: HashMap<ClientKey, u64>,
    /// When the rate table was last pruned (nanoseconds since the epoch).
    last_prune: u64,
}

impl Table {
    /// Forgets the buckets that are full again at `now`.
    fn prune(&mut self, now: u64) {
        self.tat.retain(|_, tat| *tat > now);
        self.last_prune = now;
    }
}

#[derive(Debug)]
struct Shared {
    table: Mutex<Table>,
}

/// The per-address limits of one server, shared by the acceptor and the
/// workers.
#[derive(Debug)]
pub(crate) struct PerAddress {
    shared: Arc<Shared>,
    max_open: Option<u32>,
    bucket: Option<Bucket>,
    rate_capacity: usize,
    full_prune_gap: u64,
    epoch: Instant,
    unrecorded: AtomicU64,
}

/// One open connection counted against its address until dropped; a no-op
/// when the connection cap is off.
#[derive(Debug)]
#[must_use = "dropping the slot stops counting the connection at once"]
pub(crate) struct AddressSlot {
    held: Option<(Arc<Shared>, ClientKey)>,
}

impl AddressSlot {
    /// A slot that counts nothing.
    pub(crate) fn uncounted() -> Self {
        AddressSlot { held: None }
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Some((shared, key)) = self.held.take() {
            let mut table = shared.table.lock();
            if let Some(open) = table.open.get_mut(&key) {
                *open = open.saturating_sub(1);
                if *open == 0 {
                    table.open.remove(&key);
                }
            }
        }
    }
}

impl PerAddress {
    /// The limits as `settings` set them, for a server of at most
    /// `max_connections` clients (which bounds the rate table). Expects
    /// validated settings; a cap or burst of zero is read as 1.
    pub(crate) fn new(settings: &PerAddressSettings, max_connections: usize) -> Self {
        let bucket = settings.connect_rate.map(|rate| {
            let interval = u64::try_from(rate.interval().as_nanos()).unwrap_or(u64::MAX);
            let burst = settings.burst().unwrap_or(1).max(1);
            Bucket {
                interval,
                tolerance: interval.saturating_mul(u64::from(burst - 1)),
            }
        });
        let rate_capacity = max_connections.max(MIN_RATE_ENTRIES);
        PerAddress {
            shared: Arc::new(Shared {
                table: Mutex::new(Table::default()),
            }),
            max_open: settings.max_connections.map(|n| n.max(1)),
            bucket,
            rate_capacity,
            full_prune_gap: (rate_capacity as u64)
                .saturating_mul(FULL_PRUNE_NANOS_PER_ENTRY)
                .max(1_000_000),
            epoch: Instant::now(),
            unrecorded: AtomicU64::new(0),
        }
    }

    /// Both limits off: [`admit`](Self::admit) lets everyone in without a
    /// lock or a clock read.
    pub(crate) fn is_off(&self) -> bool {
        self.max_open.is_none() && self.bucket.is_none()
    }

    /// Lets a new connection in, or says which limit it is over and when
    /// that address would be let in again.
    pub(crate) fn admit(&self, key: ClientKey) -> Result<AddressSlot, Limited> {
        if self.is_off() {
            return Ok(AddressSlot::uncounted());
        }
        let now = if self.bucket.is_some() {
            self.nanos(Instant::now())
        } else {
            0
        };
        self.admit_at(key, now)
    }

    /// [`admit`](Self::admit) at `now` nanoseconds since the epoch.
    fn admit_at(&self, key: ClientKey, now: u64) -> Result<AddressSlot, Limited> {
        let mut table = self.shared.table.lock();
        if let Some(max) = self.max_open {
            if table.open.get(&key).is_some_and(|&open| open >= max) {
                return Err(Limited {
                    limit: Limit::Connections,
                    retry_after: Duration::ZERO,
                });
            }
        }
        if let Some(bucket) = self.bucket {
            match table.tat.get_mut(&key) {
                Some(tat) => {
                    let earliest = tat.saturating_sub(bucket.tolerance);
                    if now < earliest {
                        return Err(Limited {
                            limit: Limit::Rate,
                            retry_after: Duration::from_nanos(earliest - now),
                        });
                    }
                    *tat = (*tat).max(now).saturating_add(bucket.interval);
                }
                // A new address has a full bucket (burst >= 1): it is let
                // in, and recorded if there is room.
                None => {
                    if table.tat.len() >= self.rate_capacity
                        && now.saturating_sub(table.last_prune) >= self.full_prune_gap
                    {
                        table.prune(now);
                    }
                    if table.tat.len() < self.rate_capacity {
                        table.tat.insert(key, now.saturating_add(bucket.interval));
                    } else {
                        self.unrecorded.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        if self.max_open.is_none() {
            return Ok(AddressSlot::uncounted());
        }
        *table.open.entry(key).or_insert(0) += 1;
        Ok(AddressSlot {
            held: Some((Arc::clone(&self.shared), key)),
        })
    }

    /// Forgets the addresses whose bucket is full again (their entry says
    /// nothing an absent one would not), and gives back memory the table
    /// no longer needs after a flood. Called about every 250 ms by the
    /// reaper thread; O(table), under the lock.
    pub(crate) fn prune(&self) {
        if self.bucket.is_some() {
            self.prune_at(self.nanos(Instant::now()));
        }
    }

    /// [`prune`](Self::prune) at `now` nanoseconds since the epoch.
    fn prune_at(&self, now: u64) {
        let mut table = self.shared.table.lock();
        table.prune(now);
        let len = table.tat.len();
        if table.tat.capacity() > 4 * len.max(MIN_RATE_ENTRIES / 4) {
            table.tat.shrink_to(2 * len);
        }
    }

    /// The addresses the limits hold state for now (both maps together).
    pub(crate) fn entries(&self) -> usize {
        let table = self.shared.table.lock();
        table.open.len() + table.tat.len()
    }

    /// An estimate of the memory the two maps hold, in bytes: their
    /// allocated room (not their entries), each slot a key, a value and a
    /// control byte, at the map's 7/8 load.
    pub(crate) fn approx_bytes(&self) -> usize {
        let table = self.shared.table.lock();
        let open = table.open.capacity() * (size_of::<(ClientKey, u32)>() + 1);
        let tat = table.tat.capacity() * (size_of::<(ClientKey, u64)>() + 1);
        (open + tat) / 7 * 8
    }

    /// The most addresses the rate table holds.
    pub(crate) fn rate_capacity(&self) -> usize {
        self.rate_capacity
    }

    /// New addresses let in without a bucket because the rate table was
    /// full (the fail-open policy): a counter for the metrics.
    pub(crate) fn unrecorded(&self) -> u64 {
        self.unrecorded.load(Ordering::Relaxed)
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn ip(text: &str) -> ClientKey {
        ClientKey::from_ip(text.parse().unwrap())
    }

    fn settings(cap: Option<u32>, rate: Option<&str>, burst: Option<u32>) -> PerAddressSettings {
        PerAddressSettings {
            max_connections: cap,
            connect_rate: rate.map(|r| r.parse().unwrap()),
            connect_burst: burst,
        }
    }

    fn limit(result: Result<AddressSlot, Limited>) -> Limited {
        match result {
            Ok(_) => panic!("let in, expected a limit"),
            Err(limited) => limited,
        }
    }

    #[test]
    fn off_by_default_lets_everyone_in_and_keeps_nothing() {
        let limits = PerAddress::new(&PerAddressSettings::default(), 100);
        assert!(limits.is_off());
        let slots: Vec<_> = (0..1000)
            .map(|_| limits.admit(ip("192.0.2.1")).unwrap())
            .collect();
        assert_eq!(slots.len(), 1000);
        assert_eq!(limits.entries(), 0);
    }

    #[test]
    fn the_cap_counts_each_address_on_its_own() {
        let limits = PerAddress::new(&settings(Some(2), None, None), 100);
        assert!(!limits.is_off());
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let _a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        let over = limit(limits.admit(a));
        assert_eq!(over.limit, Limit::Connections);
        assert_eq!(over.retry_after, Duration::ZERO);
        assert_eq!(over.limit.metrics_reason(), "per_address_connections");
        // `a` being full does not touch `b`.
        let _b1 = limits.admit(b).unwrap();
        let _b2 = limits.admit(b).unwrap();
        assert_eq!(limit(limits.admit(b)).limit, Limit::Connections);
        assert_eq!(limits.entries(), 2);
    }

    #[test]
    fn dropping_a_slot_frees_room_and_the_last_one_forgets_the_address() {
        let limits = PerAddress::new(&settings(Some(1), None, None), 100);
        let key = ip("198.51.100.7");
        let slot = limits.admit(key).unwrap();
        assert!(limits.admit(key).is_err());
        drop(slot);
        assert_eq!(limits.entries(), 0);
        let slot = limits.admit(key).unwrap();
        assert_eq!(limits.entries(), 1);
        drop(slot);
        assert_eq!(limits.entries(), 0);
    }

    #[test]
    fn a_burst_is_let_in_then_the_rate_holds_with_a_hint_of_one_interval() {
        // 20/s: a token every 50 ms; burst 3.
        let limits = PerAddress::new(&settings(None, Some("20/s"), Some(3)), 100);
        let key = ip("192.0.2.9");
        let t0 = 1_000 * MS;
        for _ in 0..3 {
            drop(limits.admit_at(key, t0).unwrap());
        }
        let over = limit(limits.admit_at(key, t0));
        assert_eq!(over.limit, Limit::Rate);
        assert_eq!(over.limit.metrics_reason(), "per_address_rate");
        assert_eq!(over.retry_after, Duration::from_millis(50));
        // Half-way, the hint is what is left of the interval.
        let over = limit(limits.admit_at(key, t0 + 20 * MS));
        assert_eq!(over.retry_after, Duration::from_millis(30));
        // After the hint, one more, and only one.
        drop(limits.admit_at(key, t0 + 50 * MS).unwrap());
        assert_eq!(
            limit(limits.admit_at(key, t0 + 50 * MS)).retry_after,
            Duration::from_millis(50)
        );
    }

    #[test]
    fn a_connection_turned_away_takes_no_token() {
        let limits = PerAddress::new(&settings(None, Some("20/s"), Some(1)), 100);
        let key = ip("192.0.2.10");
        drop(limits.admit_at(key, 0).unwrap());
        // Knocking every millisecond does not push the next token back.
        for t in 1..50 {
            let over = limit(limits.admit_at(key, t * MS));
            assert_eq!(over.retry_after, Duration::from_millis(50 - t));
        }
        drop(limits.admit_at(key, 50 * MS).unwrap());
    }

    #[test]
    fn over_the_cap_takes_no_token_and_over_the_rate_is_not_counted() {
        let limits = PerAddress::new(&settings(Some(1), Some("20/s"), Some(2)), 100);
        let key = ip("192.0.2.11");
        let slot = limits.admit_at(key, 0).unwrap();
        // Over the cap: no token taken, so the second token is still there.
        assert_eq!(limit(limits.admit_at(key, 0)).limit, Limit::Connections);
        assert_eq!(limit(limits.admit_at(key, 0)).limit, Limit::Connections);
        drop(slot);
        let slot = limits.admit_at(key, 0).unwrap();
        drop(slot);
        // Over the rate: not counted, so the cap has room once a token is back.
        assert_eq!(limit(limits.admit_at(key, 0)).limit, Limit::Rate);
        let _slot = limits.admit_at(key, 50 * MS).unwrap();
    }

    #[test]
    fn waiting_the_hint_on_the_real_clock_lets_the_address_in() {
        let limits = PerAddress::new(&settings(None, Some("20/s"), None), 100);
        let key = ip("2001:db8::1");
        // Burst: one second's worth of 20/s.
        for _ in 0..20 {
            drop(limits.admit(key).unwrap());
        }
        let over = limit(limits.admit(key));
        assert_eq!(over.limit, Limit::Rate);
        assert!(over.retry_after > Duration::ZERO);
        assert!(over.retry_after <= Duration::from_millis(50));
        std::thread::sleep(over.retry_after);
        drop(limits.admit(key).unwrap());
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            ip("2001:db8:1:2::1"),
            ip("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_ne!(ip("192.0.2.1"), ip("192.0.2.2"));
        assert_eq!(
            ClientKey::from(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1))),
            ClientKey::V4(0x0a00_0001)
        );
        assert_eq!(
            ClientKey::from_ip(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
            ClientKey::V6Net(0)
        );

        let limits = PerAddress::new(&settings(Some(1), None, None), 100);
        let _slot = limits.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(limits.admit(ip("2001:db8:1:2::beef")).is_err());
        let _other = limits.admit(ip("2001:db8:1:3::1")).unwrap();
        let _v4 = limits.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert!(limits.admit(ip("192.0.2.1")).is_err());
    }

    #[test]
    fn unix_peers_count_by_uid_apart_from_addresses() {
        assert_ne!(ClientKey::from_uid(1), ip("0.0.0.1"));
        let limits = PerAddress::new(&settings(Some(1), None, None), 100);
        let _root = limits.admit(ClientKey::from_uid(0)).unwrap();
        assert!(limits.admit(ClientKey::from_uid(0)).is_err());
        let _user = limits.admit(ClientKey::from_uid(1000)).unwrap();
    }

    #[test]
    fn prune_forgets_the_buckets_that_are_full_again() {
        let limits = PerAddress::new(&settings(None, Some("20/s"), Some(2)), 100);
        drop(limits.admit_at(ip("192.0.2.1"), 0).unwrap());
        drop(limits.admit_at(ip("192.0.2.2"), 0).unwrap());
        drop(limits.admit_at(ip("192.0.2.2"), 0).unwrap());
        assert_eq!(limits.entries(), 2);
        // At 50 ms the first is full again (one token back), the second
        // has one of its two back.
        limits.prune_at(50 * MS);
        assert_eq!(limits.entries(), 1);
        limits.prune_at(100 * MS);
        assert_eq!(limits.entries(), 0);
        // Forgetting changed nothing: the address still has its burst.
        drop(limits.admit_at(ip("192.0.2.2"), 100 * MS).unwrap());
        drop(limits.admit_at(ip("192.0.2.2"), 100 * MS).unwrap());
        assert!(limits.admit_at(ip("192.0.2.2"), 100 * MS).is_err());
    }

    #[test]
    fn the_table_stays_bounded_and_fails_open_when_full() {
        // max_connections 10 is below the floor: the table holds 1024.
        let limits = PerAddress::new(&settings(Some(1), Some("1/h"), Some(1)), 10);
        assert_eq!(limits.rate_capacity(), MIN_RATE_ENTRIES);
        let keys = 5 * MIN_RATE_ENTRIES as u32;
        for i in 0..keys {
            let slot = limits.admit_at(ClientKey::V4(i), u64::from(i)).unwrap();
            drop(slot);
            assert!(limits.entries() <= MIN_RATE_ENTRIES);
        }
        assert_eq!(limits.entries(), MIN_RATE_ENTRIES);
        assert_eq!(
            limits.unrecorded(),
            u64::from(keys) - MIN_RATE_ENTRIES as u64
        );
        // The addresses in the table are still limited; the others got in
        // unrecorded.
        assert_eq!(
            limit(limits.admit_at(ClientKey::V4(0), u64::from(keys))).limit,
            Limit::Rate
        );
        drop(
            limits
                .admit_at(ClientKey::V4(keys - 1), u64::from(keys))
                .unwrap(),
        );
        // Once their buckets are full again, a full table is pruned to make
        // room for a new address.
        let hour = 3600 * 1_000 * MS;
        drop(limits.admit_at(ClientKey::V4(keys), 2 * hour).unwrap());
        assert_eq!(limits.entries(), 1);
        assert!(limits.approx_bytes() > 0);
    }

    #[test]
    fn the_open_map_never_outgrows_the_open_connections() {
        let limits = PerAddress::new(&settings(Some(3), None, None), 10);
        let slots: Vec<_> = (0..100)
            .map(|i| limits.admit(ClientKey::V4(i)).unwrap())
            .collect();
        assert_eq!(limits.entries(), 100);
        drop(slots);
        assert_eq!(limits.entries(), 0);
    }

    #[test]
    fn settings_default_burst_and_validation() {
        assert_eq!(PerAddressSettings::default().validate(), Ok(()));
        assert_eq!(settings(None, Some("20/s"), None).burst(), Some(20));
        assert_eq!(settings(None, Some("20/s"), Some(5)).burst(), Some(5));
        assert_eq!(settings(None, None, None).burst(), None);
        assert!(settings(Some(0), None, None).validate().is_err());
        assert!(settings(None, Some("1/s"), Some(0)).validate().is_err());
        assert!(settings(None, None, Some(3)).validate().is_err());
        assert_eq!(settings(Some(4), Some("1/s"), Some(3)).validate(), Ok(()));
    }
}
