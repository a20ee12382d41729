//! Graceful shutdown through the library on a listener handed over with
//! `Server::from_listener` (Operations, socket activation): the drain
//! leaves an inherited listener open for the next instance and shuts an own
//! one down, and a socket that does not listen is refused. Every join is
//! bounded in time, so a drain that hangs fails its test.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::shutdown::{assert_not_served, join_within, JOIN_WITHIN};
use common::{config, Client};
use wharf::{GoAwayCode, Listener, Server};

/// Operations, socket activation through the library: the drain of a
/// server on an inherited listener stops accepting and closes only its own
/// descriptor; the holder's socket keeps taking connections into its
/// backlog for the next instance.
#[test]
fn the_drain_leaves_an_inherited_listener_open() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let server = Server::from_listener(
        Listener::Inherited(holder.try_clone().unwrap().into()),
        config(),
        wharf::Echo::default(),
    )
    .expect("server starts on the inherited socket");
    assert_eq!(server.local_addr(), addr);
    let mut client = Client::connect(addr);
    client.echo(b"served");
    let handle = server.handle();
    handle.shutdown();
    client.expect_goaway(GoAwayCode::Shutdown);
    assert!(!join_within(server, JOIN_WITHIN).forced);

    let waiting = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect("the inherited socket still takes connections");
    holder.set_nonblocking(false).unwrap();
    let (_accepted, peer) = holder.accept().expect("accept from the backlog");
    assert_eq!(peer, waiting.local_addr().unwrap());
}

/// A listener handed over as the server's own is shut down by the drain,
/// like one the server bound: new connections are refused at once.
#[test]
fn the_drain_shuts_an_own_listener_down() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::from_listener(
        Listener::Own(listener.into()),
        config(),
        wharf::Echo::default(),
    )
    .unwrap();
    Client::connect(addr).echo(b"served");
    server.handle().shutdown();
    assert_not_served(addr);
    assert!(!join_within(server, JOIN_WITHIN).forced);
}

/// `Server::from_listener` refuses a socket that is not a listening TCP
/// socket.
#[test]
fn from_listener_refuses_a_socket_that_does_not_listen() {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let not_listening: std::net::TcpListener = socket.into();
    match Server::from_listener(
        Listener::Inherited(not_listening.into()),
        config(),
        wharf::Echo::default(),
    ) {
        Err(wharf::Error::InvalidListener(why)) => assert!(why.contains("not listening"), "{why}"),
        other => panic!("expected InvalidListener, got {other:?}"),
    }
}
