//! Safe retries (docs/protocol.md, "Retrying safely") in `wharf::Client`: failed
//! reconnects count as attempts and end in the connect error, and the
//! backoff between attempts stays within its bounds (each sleep in [b/2, b],
//! b doubling from the base up to the cap) and is really slept.
//!
//! The tests talk to a scripted fake server (`common::fake`) on
//! 127.0.0.1:0. Every read has a timeout, so a broken client fails a test
//! instead of hanging it. Time bounds are generous: CI is a busy 2-core
//! machine.

mod common;

use std::time::{Duration, Instant};

use common::fake::{causes, lock, record_reconnects, retrying, script, Fake};
use wharf::{Client, ClientError, ClientOptions, GoAwayCode};

// ---------------------------------------------------------------------------
// Failed reconnects and the backoff.

/// GOAWAY 1, then the server is gone: each refused reconnect counts as an
/// attempt, and when they run out the connect error is returned.
#[test]
fn refused_reconnects_count_and_end_in_a_connect_error() {
    let fake = Fake::start(vec![script(|mut c| {
        c.read(1);
        c.stop_listening();
        c.goaway(GoAwayCode::Shutdown);
    })]);
    let options = ClientOptions {
        retry_backoff: Duration::from_millis(20),
        retry_backoff_max: Duration::from_millis(40),
        ..retrying(3)
    };
    let mut client = Client::connect(fake.addr, options).unwrap();
    let reports = record_reconnects(&mut client);
    let start = Instant::now();
    let err = client.request(b"lost").unwrap_err();
    let elapsed = start.elapsed();
    match &err {
        ClientError::Connect { addr, .. } => assert_eq!(addr, &fake.addr.to_string()),
        other => panic!("expected the last failure, a connect error; got {other:?}"),
    }
    assert_eq!(
        causes(&reports),
        vec![
            ("GOAWAY 1".to_owned(), 1, 1),
            ("connect".to_owned(), 2, 1),
            ("connect".to_owned(), 3, 1),
        ]
    );
    let delays: Vec<Duration> = lock(&reports).iter().map(|r| r.3).collect();
    for (delay, bound) in delays.iter().zip([20, 40, 40]) {
        let bound = Duration::from_millis(bound);
        assert!(
            *delay >= bound / 2 && *delay <= bound,
            "{delay:?} outside [{:?}, {bound:?}]",
            bound / 2
        );
    }
    let slept: Duration = delays.iter().sum();
    assert!(elapsed >= slept, "{elapsed:?} < the sleeps {slept:?}");
    assert_eq!((client.reconnects(), client.resent()), (0, 0));
    fake.finish();
}

/// Each sleep is drawn from [b/2, b], b doubling from the configured base
/// up to the cap, and the client really waits that long before connecting.
#[test]
fn backoff_sleeps_are_within_half_to_whole_bound_doubling_to_the_cap() {
    const ATTEMPTS: u32 = 6;
    let turn_away = || script(|mut c| c.goaway(GoAwayCode::Busy));
    let fake = Fake::start((0..=ATTEMPTS).map(|_| turn_away()).collect());
    let options = ClientOptions {
        retry_backoff: Duration::from_millis(30),
        retry_backoff_max: Duration::from_millis(120),
        ..retrying(ATTEMPTS)
    };
    let mut client = Client::connect(fake.addr, options).unwrap();
    let reports = record_reconnects(&mut client);
    let err = client.recv().unwrap_err();
    assert_eq!(err.goaway_code(), Some(3), "{err}");
    let reports = lock(&reports).clone();
    assert_eq!(reports.len(), ATTEMPTS as usize);
    let accepted = fake.accepted_at();
    assert_eq!(accepted.len(), ATTEMPTS as usize + 1);
    for (i, (_, attempt, _, delay, at)) in reports.iter().enumerate() {
        let bound = Duration::from_millis([30, 60, 120, 120, 120, 120][i]);
        assert_eq!(*attempt, i as u32 + 1);
        assert!(
            *delay >= bound / 2 && *delay <= bound,
            "attempt {attempt}: {delay:?} outside [{:?}, {bound:?}]",
            bound / 2
        );
        // The reconnect is accepted no sooner than the sleep (generously
        // later on a loaded machine).
        let waited = accepted[i + 1].duration_since(*at);
        assert!(
            waited >= *delay,
            "attempt {attempt}: connected after {waited:?} < {delay:?}"
        );
        assert!(
            waited < *delay + Duration::from_secs(3),
            "attempt {attempt}: {waited:?}"
        );
    }
    fake.finish();
}

/// The defaults: 100 ms, then 200 ms (each in [b/2, b]).
#[test]
fn default_backoff_starts_at_100ms() {
    let turn_away = || script(|mut c| c.goaway(GoAwayCode::Busy));
    let fake = Fake::start((0..3).map(|_| turn_away()).collect());
    let mut client = Client::connect(fake.addr, retrying(2)).unwrap();
    let reports = record_reconnects(&mut client);
    let start = Instant::now();
    assert_eq!(client.recv().unwrap_err().goaway_code(), Some(3));
    let elapsed = start.elapsed();
    let delays: Vec<Duration> = lock(&reports).iter().map(|r| r.3).collect();
    assert_eq!(delays.len(), 2);
    let ms = Duration::from_millis;
    assert!(delays[0] >= ms(50) && delays[0] <= ms(100), "{delays:?}");
    assert!(delays[1] >= ms(100) && delays[1] <= ms(200), "{delays:?}");
    assert!(elapsed >= ms(150), "{elapsed:?}");
    fake.finish();
}
