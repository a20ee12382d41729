//! `wharf bench --tls` through the real binary: in process with a
//! throwaway certificate, and with `--connect` against a server of this
//! test's own that has only a TLS listener. The proof that the requests
//! went over TLS is the server's own count of completed handshakes (read
//! from the in-process server, or from the metrics endpoint), beside the
//! clients' count.
//!
//! Short settings, nothing asserted on speed.

mod common;

use std::time::Duration;

use common::run_wharf;
use common::tls::Certs;
use wharf::{Bind, Config, Echo, Security, Server};

/// The longest a bench run may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(120);

fn json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("the JSON is written");
    serde_json::from_str(&text).expect("the JSON parses")
}

/// A server with one TLS listener on 127.0.0.1:0 and its metrics endpoint.
fn tls_only_server(certs: &Certs) -> Server {
    let config = Config {
        tls: Some(certs.settings()),
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..common::config()
    };
    let bind = Bind {
        addr: "127.0.0.1:0".parse().unwrap(),
        security: Security::Tls,
    };
    Server::start_all(&[bind], config, Echo::default()).expect("server starts")
}

#[test]
fn in_process_churn_makes_a_handshake_per_connection() {
    let out = Certs::new();
    let json_path = out.path("out.json");
    let run = run_wharf(
        &[
            "bench",
            "--tls",
            "--workers",
            "2",
            "--clients",
            "2",
            "--reconnect-every",
            "1",
            "--warmup",
            "100ms",
            "--duration",
            "400ms",
            "--json",
            json_path.to_str().unwrap(),
        ],
        DEADLINE,
    );
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("TLS handshakes"), "{}", run.stdout);
    let json = json(&json_path);
    assert_eq!(json["options"]["tls"], true, "{json}");
    let result = &json["results"][0];
    let requests = result["requests"].as_u64().unwrap();
    assert!(requests > 0, "{result}");
    assert_eq!(result["errors"], 0, "{result}");
    let tls = &result["tls"];
    let handshakes = tls["handshakes"].as_u64().unwrap();
    let server_handshakes = tls["server_handshakes"].as_u64().unwrap();
    // One request per connection: a handshake per request, on both sides
    // (give or take the connections open at the window's edges).
    assert!(handshakes > 0 && server_handshakes > 0, "{tls}");
    assert!(handshakes.abs_diff(requests) <= 4, "{result}");
    assert!(server_handshakes.abs_diff(handshakes) <= 4, "{tls}");
    assert!(
        tls["server_cpu_us_per_handshake"].as_f64().unwrap() > 0.0,
        "{tls}"
    );
    assert!(tls["handshake"]["p99_us"].as_u64().unwrap() > 0, "{tls}");
}

#[test]
fn connect_loads_a_tls_only_server_trusting_its_ca() {
    let certs = Certs::new();
    let server = tls_only_server(&certs);
    let addr = server.local_addr().to_string();
    let metrics = server.metrics_addr().unwrap().to_string();
    let json_path = certs.path("out.json");
    let ca = certs.path("ca.pem");
    let run = run_wharf(
        &[
            "bench",
            "--connect",
            &addr,
            "--tls",
            "--tls-ca",
            ca.to_str().unwrap(),
            "--tls-server-name",
            "localhost",
            "--metrics-url",
            &metrics,
            "--clients",
            "2",
            "--idle",
            "3",
            "--idle-ping",
            "100ms",
            "--warmup",
            "200ms",
            "--duration",
            "400ms",
            "--json",
            json_path.to_str().unwrap(),
        ],
        DEADLINE,
    );
    server.handle().shutdown();
    server.join();
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
    let json = json(&json_path);
    let result = &json["results"][0];
    // The listener speaks only TLS: a verified echo came through it.
    assert!(result["requests"].as_u64().unwrap() > 0, "{result}");
    assert_eq!(result["errors"], 0, "{result}");
    assert!(result["idle"]["pongs"].as_u64().unwrap() > 0, "{result}");
    assert_eq!(result["idle"]["missed"], 0, "{result}");
    // Long-lived connections: their handshakes were before the window.
    assert_eq!(result["tls"]["handshakes"], 0, "{result}");
    assert_eq!(result["tls"]["server_handshakes"], 0, "{result}");
}

#[test]
fn an_untrusted_certificate_fails_the_run_with_the_cause() {
    let certs = Certs::new();
    let other = Certs::new();
    let server = tls_only_server(&certs);
    let addr = server.local_addr().to_string();
    let ca = other.path("ca.pem");
    let run = run_wharf(
        &[
            "bench",
            "--connect",
            &addr,
            "--tls",
            "--tls-ca",
            ca.to_str().unwrap(),
            "--clients",
            "1",
            "--warmup",
            "0s",
            "--duration",
            "200ms",
        ],
        DEADLINE,
    );
    server.handle().shutdown();
    server.join();
    assert_eq!(run.status.code(), Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("cannot connect") && run.stderr.contains("certificate"),
        "{}",
        run.stderr
    );
}

#[test]
fn tls_flags_that_cannot_work_exit_2() {
    let certs = Certs::new();
    let ca = certs.path("ca.pem");
    let ca = ca.to_str().unwrap();
    for args in [
        // A running server's certificate needs a CA to trust.
        &["bench", "--connect", "127.0.0.1:9", "--tls"][..],
        // The CA is for --tls --connect only.
        &["bench", "--connect", "127.0.0.1:9", "--tls-ca", ca][..],
        &["bench", "--tls", "--tls-ca", ca, "--workers", "1"][..],
        &["bench", "--tls-server-name", "localhost"][..],
        &["bench", "--tls", "--tls-server-name", "not a name!"][..],
    ] {
        let run = run_wharf(args, DEADLINE);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.stderr);
    }
}
