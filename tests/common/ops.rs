//! Helpers of the operations tests through the real binary
//! (`systemd_*.rs`, `signals.rs`): a listening socket as a systemd socket
//! unit holds it, and waiting for a `wharf` child's log line or exit code.

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use super::{eventually, Wharf};

/// Waits for the child to exit; its exit code.
pub fn exit_code(wharf: &mut Wharf, within: Duration) -> i32 {
    match wharf.wait_exit(within) {
        Some(status) => status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {status:?}\n{}", wharf.log())),
        None => panic!("no exit within {within:?}; log:\n{}", wharf.log()),
    }
}

/// Waits until the child's log contains `text`.
pub fn wait_log(wharf: &Wharf, text: &str) {
    assert!(
        eventually(Duration::from_secs(10), || wharf.log().contains(text)),
        "log never contained {text:?}:\n{}",
        wharf.log()
    );
}

/// A listening socket on 127.0.0.1, as a systemd socket unit holds it.
pub fn listening_socket() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0")
}
