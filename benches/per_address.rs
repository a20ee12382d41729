//! Per-address limits under a flood of distinct addresses: what `admit`
//! costs the acceptor, and how much memory the limits keep, when a million
//! different clients connect once each. Run with
//! `cargo bench --bench per_address`; `cargo test --benches` runs a short
//! version of the same to check that it still works.
//!
//! Each scenario feeds distinct addresses through `admit` in process, as
//! fast as one thread can, with the rate limit on (20/s, burst 20) and the
//! cap on (4 per address), dropping each connection's slot at once. Every
//! 250 ms of the run the table is pruned, as the reaper does. It prints the
//! time per connection (admit and slot drop), the table's peak entries and
//! its allocated bytes, and the growth of the process's resident memory.
//!
//! The limits are crate-private: the module's source is compiled into this
//! benchmark as it is, so the library exports nothing for it.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

#[allow(dead_code)] // the benchmark uses part of the module
#[path = "../src/engine/per_address.rs"]
mod per_address;

/// Where the module finds its settings: the library's public types.
mod limit_settings {
    pub use wharf::config::PerAddressSettings;
}

use per_address::{ClientKey, PerAddress};
use wharf::config::PerAddressSettings;

/// The reaper's prune interval.
const PRUNE_EVERY: Duration = Duration::from_millis(250);

/// What one scenario measured.
struct Outcome {
    nanos_per_admit: f64,
    peak_entries: usize,
    peak_bytes: usize,
    rss_growth: usize,
    limited: u64,
    unrecorded: u64,
    capacity: usize,
}

/// The process's resident memory in bytes, from `/proc/self/statm` (0
/// where it cannot be read).
fn resident_bytes() -> usize {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<usize>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * usize::try_from(page).unwrap_or(4096)
}

/// The `i`th distinct client address: IPv4 addresses, or one address in
/// each of as many IPv6 /64s.
fn address(i: u32, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(
            (0x2001_0db8_u128 << 96) | (u128::from(i) << 64) | 1,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i))
    }
}

fn flood(addresses: u32, max_connections: usize, v6: bool) -> Outcome {
    let settings = PerAddressSettings {
        max_connections: Some(4),
        connect_rate: Some("20/s".parse().expect("a valid rate")),
        connect_burst: None,
    };
    let rss_before = resident_bytes();
    let limits = PerAddress::new(&settings, max_connections);
    let (mut peak_entries, mut peak_bytes, mut peak_rss) = (0, 0, rss_before);
    let mut limited = 0;
    let start = Instant::now();
    let mut next_prune = start + PRUNE_EVERY;
    for i in 0..addresses {
        match limits.admit(ClientKey::from_ip(address(i, v6))) {
            Ok(slot) => drop(black_box(slot)),
            Err(_) => limited += 1,
        }
        if i % 256 == 255 {
            peak_entries = peak_entries.max(limits.entries());
            peak_bytes = peak_bytes.max(limits.approx_bytes());
            if i % 65_536 == 65_535 {
                peak_rss = peak_rss.max(resident_bytes());
            }
            let now = Instant::now();
            if now >= next_prune {
                limits.prune();
                next_prune = now + PRUNE_EVERY;
            }
        }
    }
    let elapsed = start.elapsed();
    peak_rss = peak_rss.max(resident_bytes());
    Outcome {
        nanos_per_admit: elapsed.as_nanos() as f64 / f64::from(addresses),
        peak_entries: peak_entries.max(limits.entries()),
        peak_bytes: peak_bytes.max(limits.approx_bytes()),
        rss_growth: peak_rss.saturating_sub(rss_before),
        limited,
        unrecorded: limits.unrecorded(),
        capacity: limits.rate_capacity(),
    }
}

/// One address connecting over and over: the cost for an address already
/// in the table, almost every attempt turned away by the rate.
fn one_address(attempts: u32) -> f64 {
    let settings = PerAddressSettings {
        max_connections: Some(4),
        connect_rate: Some("20/s".parse().expect("a valid rate")),
        connect_burst: None,
    };
    let limits = PerAddress::new(&settings, 10_000);
    let key = ClientKey::from_ip(address(7, false));
    let start = Instant::now();
    for _ in 0..attempts {
        drop(black_box(limits.admit(black_box(key))));
    }
    start.elapsed().as_nanos() as f64 / f64::from(attempts)
}

/// Both limits off: what every connection pays when nobody turned them on.
fn off(attempts: u32) -> f64 {
    let limits = PerAddress::new(&PerAddressSettings::default(), 10_000);
    let start = Instant::now();
    for i in 0..attempts {
        drop(black_box(
            limits.admit(ClientKey::from_ip(address(i, false))),
        ));
    }
    start.elapsed().as_nanos() as f64 / f64::from(attempts)
}

fn kib(bytes: usize) -> String {
    format!("{:.0} KiB", bytes as f64 / 1024.0)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not, and
    // gets a short run in a build without optimisations.
    let full = std::env::args().any(|a| a == "--bench");
    let addresses: u32 = if full { 1_000_000 } else { 20_000 };
    if !full {
        println!("per_address: short run (the full one: `cargo bench --bench per_address`)");
    }
    println!(
        "per_address: {addresses} distinct addresses, once each; rate 20/s (burst 20), \
         cap 4 per address, slots dropped at once; a table slot is {} B",
        size_of::<(ClientKey, u64)>() + 1
    );
    for (max_connections, v6) in [(10_000, false), (10_000, true), (1 << 20, false)] {
        let outcome = flood(addresses, max_connections, v6);
        println!(
            "  {} max-connections {max_connections}: {:.0} ns per admit; table peak {} entries \
             (bound {}), ~{} allocated, RSS +{}; {} turned away, {} let in unrecorded (table full)",
            if v6 { "IPv6 /64s," } else { "IPv4,     " },
            outcome.nanos_per_admit,
            outcome.peak_entries,
            outcome.capacity,
            kib(outcome.peak_bytes),
            kib(outcome.rss_growth),
            outcome.limited,
            outcome.unrecorded,
        );
        assert!(
            outcome.peak_entries <= outcome.capacity,
            "the rate table outgrew its bound"
        );
    }
    println!(
        "  one address over and over: {:.0} ns per attempt",
        one_address(addresses)
    );
    println!("  limits off: {:.1} ns per admit", off(addresses));
}
