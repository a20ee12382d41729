//! The hand-off engine under churn, and the defects a review of the
//! previous engine found (each test here failed on it).
//!
//! Thousands of connections rest and wake on two workers while the reaper
//! scans every 50 ms and clients come and go; every reply and every GOAWAY
//! is counted. Nothing may be lost, and no connection that kept its
//! heartbeat may be sent GOAWAY 2.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::gate::{gate, SLOW};
use common::{config, start, start_with, Client};
use wharf::frame::{GoAway, DATA, GOAWAY, HEADER_LEN, PING, PONG};
use wharf::{Config, Framing, GoAwayCode};

const HEARTBEAT: Duration = Duration::from_secs(2);

/// One connection of the churn test: its socket and when it last heard a
/// reply (its deadline moves with every reply).
struct Conn {
    stream: TcpStream,
    last_reply: Instant,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Conn {
            stream,
            last_reply: Instant::now(),
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    answered: u64,
    goaway_2_spurious: u64,
    goaways: Vec<(u16, String)>,
    opened: u64,
}

fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header)?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let mut payload = vec![0; len - 1];
    stream.read_exact(&mut payload)?;
    Ok((header[4], payload))
}

/// How a churn client paces its rounds.
#[derive(Debug, Clone, Copy)]
struct Pace {
    /// The server's heartbeat timeout.
    heartbeat: Duration,
    /// Pause before each round.
    between: Duration,
    /// No round starts after this.
    until: Instant,
}

/// One client thread: `n` connections, each sending one request a round
/// (a PING or a DATA), all sent before any reply is read, and a tenth of
/// them replaced by new connections every round.
fn churn(addr: SocketAddr, n: usize, rounds: usize, seed: u64, pace: Pace) -> Tally {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tally = Tally::default();
    let mut conns: Vec<Conn> = (0..n).map(|_| Conn::open(addr)).collect();
    tally.opened = n as u64;
    for round in 0..rounds {
        if Instant::now() >= pace.until {
            break;
        }
        thread::sleep(pace.between);
        let mut expected = Vec::with_capacity(n);
        for (i, conn) in conns.iter_mut().enumerate() {
            let kind = if rng.bool() { DATA } else { PING };
            let payload = format!("{seed}/{round}/{i}").into_bytes();
            let mut frame = Vec::new();
            Framing::Length.encode(kind, &payload, &mut frame);
            conn.stream.write_all(&frame).expect("send");
            tally.sent += 1;
            expected.push((if kind == DATA { DATA } else { PONG }, payload));
        }
        for (conn, (kind, payload)) in conns.iter_mut().zip(expected) {
            match read_frame(&mut conn.stream) {
                Ok((k, p)) if k == kind && p == payload => {
                    tally.answered += 1;
                    conn.last_reply = Instant::now();
                }
                Ok((GOAWAY, p)) => {
                    let goaway = GoAway::parse(Framing::Length, &p).expect("a GOAWAY payload");
                    // The server's deadline counts from its last response,
                    // which came before this client's last reply: a GOAWAY 2
                    // that arrives sooner than the heartbeat after that
                    // reply was decided sooner too.
                    if goaway.code == GoAwayCode::HeartbeatTimeout as u16
                        && conn.last_reply.elapsed() < pace.heartbeat - Duration::from_millis(20)
                    {
                        tally.goaway_2_spurious += 1;
                    }
                    tally.goaways.push((goaway.code, goaway.reason));
                    *conn = Conn::open(addr);
                    tally.opened += 1;
                }
                Ok((k, p)) => panic!(
                    "round {round}: got kind {k} {:?}, expected {kind} {:?}",
                    String::from_utf8_lossy(&p),
                    String::from_utf8_lossy(&payload)
                ),
                Err(e) => panic!("round {round}: no reply: {e}"),
            }
        }
        // Churn: a tenth of the connections go and new ones come.
        for _ in 0..n / 10 {
            let i = rng.usize(..n);
            conns[i] = Conn::open(addr);
            tally.opened += 1;
        }
    }
    tally
}

#[test]
fn thousands_of_connections_rest_and_wake_on_two_workers_and_nothing_is_lost() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 500;
    const SILENT: usize = 20;
    let server = start(Config {
        workers: 2,
        queue: 4096,
        max_connections: 8192,
        heartbeat_timeout: HEARTBEAT,
        reap_interval: Duration::from_millis(50),
        ..config()
    });
    let addr = server.local_addr();
    // Silent connections the reaper must close, with GOAWAY 2, meanwhile.
    let mut silent: Vec<Client> = (0..SILENT).map(|_| Client::connect(addr)).collect();
    let until = Instant::now() + Duration::from_secs(20);
    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            let pace = Pace {
                heartbeat: HEARTBEAT,
                between: Duration::ZERO,
                until,
            };
            thread::spawn(move || churn(addr, PER_THREAD, 30, t as u64, pace))
        })
        .collect();
    let tallies: Vec<Tally> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();
    for client in &mut silent {
        client.expect_goaway(GoAwayCode::HeartbeatTimeout);
    }
    server.handle().shutdown();
    let report = server.join();

    let sent: u64 = tallies.iter().map(|t| t.sent).sum();
    let answered: u64 = tallies.iter().map(|t| t.answered).sum();
    let spurious: u64 = tallies.iter().map(|t| t.goaway_2_spurious).sum();
    let opened: u64 = tallies.iter().map(|t| t.opened).sum();
    let goaways: Vec<_> = tallies.iter().flat_map(|t| t.goaways.clone()).collect();
    println!(
        "FIGURES churn: connections opened {opened} (+{SILENT} silent), requests {sent}, \
         answered {answered}, GOAWAYs to active clients {} (spurious GOAWAY 2: {spurious}); \
         server: {report}",
        goaways.len()
    );
    assert_eq!(spurious, 0, "GOAWAY 2 to clients that kept their heartbeat");
    assert_eq!(
        answered + goaways.len() as u64,
        sent,
        "every request gets its reply, or a GOAWAY says why not: {goaways:?}"
    );
    assert!(goaways.is_empty(), "GOAWAYs to active clients: {goaways:?}");
    assert_eq!(report.reaped, SILENT as u64, "{report}");
    assert!(report.wakeups > sent / 2, "{report}");
    assert!(!report.forced, "{report}");
}

/// Connections that send just inside their heartbeat, while the reaper
/// scans every 50 ms: a deadline that a request moves is never acted on by
/// a reaper that read it before (the previous engine's reaper took a
/// connection from its worker and gave it back, racing the worker).
#[test]
fn connections_that_send_just_inside_their_heartbeat_are_never_reaped() {
    let heartbeat = Duration::from_millis(400);
    let server = start(Config {
        workers: 2,
        queue: 1024,
        heartbeat_timeout: heartbeat,
        reap_interval: Duration::from_millis(50),
        ..config()
    });
    let addr = server.local_addr();
    let until = Instant::now() + Duration::from_secs(6);
    let clients: Vec<_> = (0..2)
        .map(|t| {
            let pace = Pace {
                heartbeat,
                between: heartbeat * 3 / 4 + Duration::from_millis(t * 7),
                until,
            };
            thread::spawn(move || churn(addr, 200, 12, 100 + t, pace))
        })
        .collect();
    let tallies: Vec<Tally> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();
    server.handle().shutdown();
    let report = server.join();
    let sent: u64 = tallies.iter().map(|t| t.sent).sum();
    let answered: u64 = tallies.iter().map(|t| t.answered).sum();
    let spurious: u64 = tallies.iter().map(|t| t.goaway_2_spurious).sum();
    let goaways: Vec<_> = tallies.iter().flat_map(|t| t.goaways.clone()).collect();
    println!(
        "FIGURES edge of the heartbeat: requests {sent}, answered {answered}, GOAWAYs {} \
         (a late client's; spurious GOAWAY 2: {spurious}); server: {report}",
        goaways.len()
    );
    assert_eq!(spurious, 0, "GOAWAY 2 to clients that kept their heartbeat");
    assert_eq!(answered + goaways.len() as u64, sent, "{goaways:?}");
    assert!(!report.forced, "{report}");
}

/// With `--max-buffered` spent by a client stalled mid-frame, a client with
/// no unfinished frame is still served as promptly as ever: whole frames
/// larger than one read buffer (the previous engine looked at 16 KiB and
/// never saw them whole), and a frame whose second half comes later,
/// answered once it has arrived. A frame larger than the kernel takes in
/// without a read waits for room, and is answered once the staller's frame
/// completes and frees it.
#[test]
fn a_spent_budget_never_delays_whole_frames() {
    let max_frame = 1024 * 1024;
    let server = start(Config {
        workers: 1,
        max_frame,
        max_buffered: max_frame as usize + HEADER_LEN,
        heartbeat_timeout: Duration::from_secs(30),
        ..config()
    });
    let addr = server.local_addr();
    // The staller sends a whole max-frame frame but its last byte: the
    // budget is spent.
    let mut staller = Client::connect(addr);
    let mut big = Vec::new();
    Framing::Length.encode_data(&vec![b's'; max_frame as usize - 1], &mut big);
    staller.send_raw(&big[..big.len() - 1]);
    thread::sleep(Duration::from_millis(300));

    let mut good = Client::connect(addr);
    good.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for size in [100, 20_000, 40_000] {
        let payload = vec![b'g'; size];
        let started = Instant::now();
        let reply = good.request(&payload);
        assert_eq!(reply.kind, DATA, "a {size}-byte frame");
        assert_eq!(reply.payload.len(), size);
        println!(
            "FIGURES spent budget: a whole {size}-byte frame answered in {} us",
            started.elapsed().as_micros()
        );
    }
    // Half of a frame now, the other half after a pause: answered once the
    // second half has arrived.
    let mut split = Vec::new();
    Framing::Length.encode_data(&vec![b'h'; 40_000], &mut split);
    good.send_raw(&split[..20_000]);
    thread::sleep(Duration::from_millis(300));
    good.send_raw(&split[20_000..]);
    let started = Instant::now();
    let reply = good.recv().expect("the split frame's echo");
    println!(
        "FIGURES spent budget: a frame completed after a pause answered {} us after its last half",
        started.elapsed().as_micros()
    );
    assert_eq!((reply.kind, reply.payload.len()), (DATA, 40_000));

    // A frame as large as the staller's: it waits for room.
    let writer = {
        let mut stream = good.stream.try_clone().unwrap();
        let mut frame = Vec::new();
        Framing::Length.encode_data(&vec![b'l'; max_frame as usize - 1], &mut frame);
        thread::spawn(move || stream.write_all(&frame).expect("the large frame"))
    };
    thread::sleep(Duration::from_millis(300));
    // The staller completes its frame and is answered; room frees.
    staller.send_raw(&big[big.len() - 1..]);
    staller
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let reply = staller.recv().expect("the staller's echo");
    assert_eq!(reply.payload.len(), max_frame as usize - 1);
    let reply = good
        .recv()
        .expect("the large frame's echo, once room freed");
    assert_eq!(reply.payload.len(), max_frame as usize - 1);
    writer.join().expect("writer");
    server.handle().shutdown();
    let report = server.join();
    assert_eq!(report.reaped, 0, "{report}");
}

/// A forced stop sends no GOAWAY to a connection whose request is inside
/// the service: GOAWAY 1 promises that the request never started, and it
/// did (contract v3 §1). A connection with nothing in progress still gets
/// GOAWAY 1.
#[test]
fn a_forced_stop_sends_no_goaway_to_a_connection_whose_request_is_in_the_service() {
    let (service, gate) = gate();
    let server = start_with(
        Config {
            workers: 2,
            grace: Duration::from_millis(200),
            ..config()
        },
        service,
    );
    let addr = server.local_addr();
    let mut quiet = Client::connect(addr);
    quiet.echo(b"then quiet");
    let mut busy = Client::connect(addr);
    busy.send(DATA, SLOW);
    gate.wait_started(SLOW);
    server.handle().shutdown();
    // The quiet one is drained at once with GOAWAY 1.
    quiet.expect_goaway(GoAwayCode::Shutdown);
    // The grace period runs out with the request still in the service.
    let report = server.join();
    assert!(report.forced, "{report}");
    busy.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    match busy.try_recv() {
        Ok(None) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Ok(Some(frame)) => panic!("the busy connection got {frame:?}; expected a plain close"),
        Err(e) => panic!("the busy connection: {e}"),
    }
    drop(gate);
}

/// With `--queue 0`, a newcomer is admitted only while a worker is idle: a
/// worker on its way to a resting connection's request is not idle any
/// more, and a newcomer arriving then gets GOAWAY 3 at once instead of
/// waiting behind that request. (The previous engine counted a worker it
/// had just interrupted for another connection as idle.)
#[test]
fn with_queue_zero_a_newcomer_never_waits_behind_a_worker_taken_by_another_request() {
    let (service, gate) = gate();
    let server = start_with(
        Config {
            workers: 1,
            queue: 0,
            ..config()
        },
        service,
    );
    let addr = server.local_addr();
    let mut resting = Client::connect(addr);
    resting.echo(b"then it rests");
    let mut last = Client::connect(addr);
    let mut turned_away = 0;
    let mut waited = 0;
    let rounds = 20;
    for round in 0..rounds {
        // The last client answered is another one.
        last.echo(format!("round {round}").as_bytes());
        thread::sleep(Duration::from_millis(20));
        // The request, and once the server has it (acknowledged: nothing
        // left in this side's send queue), the newcomer.
        resting.send(DATA, SLOW);
        wait_acknowledged(&resting.stream);
        let mut newcomer = Client::connect(addr);
        newcomer.send(PING, format!("round {round}").as_bytes());
        gate.wait_started(SLOW);
        // The worker is in the slow request now: the newcomer has been
        // answered already (turned away, or served before the request
        // started), never left waiting for the release.
        newcomer
            .stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let early = newcomer.try_recv();
        gate.release();
        assert_eq!(resting.recv().expect("the slow echo").payload, SLOW);
        let reply = match early {
            Ok(reply) => reply.expect("GOAWAY or PONG"),
            Err(_) => {
                waited += 1;
                newcomer.recv().expect("the PONG after the slow request")
            }
        };
        match reply.goaway(Framing::Length).map(|g| g.code) {
            Some(code) => {
                assert_eq!(code, GoAwayCode::Busy as u16);
                turned_away += 1;
            }
            None => assert_eq!(reply.kind, PONG),
        }
    }
    server.handle().shutdown();
    let report = server.join();
    println!(
        "FIGURES queue 0: of {rounds} newcomers {turned_away} turned away, {waited} waited \
         behind the slow request; {report}"
    );
    assert_eq!(report.rejected_queue_full, turned_away, "{report}");
    assert_eq!(
        waited, 0,
        "newcomers waited behind a worker taken by a request"
    );
}

/// Waits (at most a second) until everything sent on `stream` has been
/// acknowledged by the peer's kernel.
fn wait_acknowledged(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let mut unacked: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one int through a valid pointer.
        let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut unacked) };
        assert_eq!(rc, 0, "SIOCOUTQ");
        if unacked == 0 || Instant::now() >= deadline {
            return;
        }
        std::hint::spin_loop();
    }
}

/// A pipelining client is sent back to the line only when somebody waits:
/// with a worker idle, nobody does, so it is never sent back.
#[test]
fn a_pipelining_client_is_never_sent_back_while_a_worker_is_idle() {
    let server = start(Config {
        workers: 2,
        ..config()
    });
    let addr = server.local_addr();
    let mut quiet = Client::connect(addr);
    quiet.echo(b"and then quiet");
    let mut piper = Client::connect(addr);
    let mut batch = Vec::new();
    for i in 0..2000 {
        Framing::Length.encode_data(format!("p{i}").as_bytes(), &mut batch);
    }
    let mut reader = Client::from_stream(piper.stream.try_clone().unwrap(), Framing::Length);
    let reader = thread::spawn(move || {
        for i in 0..2000 {
            let reply = reader.recv().expect("pipelined echo");
            assert_eq!(reply.payload, format!("p{i}").into_bytes());
        }
    });
    for chunk in batch.chunks(4096) {
        piper.send_raw(chunk);
    }
    reader.join().expect("reader");
    quiet.echo(b"still here");
    server.handle().shutdown();
    let report = server.join();
    println!("FIGURES lone pipeliner: {report}");
    assert_eq!(report.requeues, 0, "{report}");
}
