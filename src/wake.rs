//! Waking a worker that waits in `read` on its quiet connection, without
//! closing that connection and without costing a system call per request.
//!
//! A worker with no other connection waiting for it *stays* on its quiet
//! connection: it blocks in a plain `read`, exactly as a thread-per-connection
//! server would, so a request costs one `read` and one `write`. When another
//! connection then needs a worker, whoever put it in line interrupts one
//! staying worker (see `queue`): it sends that thread a real-time signal, whose
//! handler sets the staying socket non-blocking. The interrupted `read` is
//! restarted by the kernel (the handler is installed with `SA_RESTART`),
//! finds the socket non-blocking and returns `WouldBlock` at once; so does a
//! `read` that the signal beat by a few instructions, which is what makes
//! the wake-up race-free. The worker then puts its quiet connection to rest
//! and takes the one in line.
//!
//! The signal is sent only to a worker whose state the sender has just
//! swapped from *staying* to *interrupted*, and the worker, once it sees
//! that swap, waits until the handler has run before going on ([`absorb`]);
//! so a worker is never signalled outside its own `read` and a service's
//! system calls never see `EINTR` from us. Signals that cannot be restarted
//! anyway (`poll`, `epoll_wait`, sockets with a receive timeout) are not
//! used by a worker while staying.
//!
//! The signal is `SIGRTMAX - 2`, the same choice the JDK makes to interrupt
//! threads blocked in I/O; an embedder that needs that signal for something
//! else can set [`crate::Config::stay_on_quiet`] to `false`, and no signal
//! is ever sent.

use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use log::{error, warn};

thread_local! {
    /// The socket this thread is staying on, or -1: what the handler sets
    /// non-blocking.
    static STAYING_FD: AtomicI32 = const { AtomicI32::new(-1) };
    /// Set by the handler; cleared by [`absorb`].
    static SIGNALLED: AtomicBool = const { AtomicBool::new(false) };
    /// Whether the handler made the socket non-blocking.
    static MADE_NONBLOCKING: AtomicBool = const { AtomicBool::new(false) };
}

/// The signal number used to interrupt a staying worker.
pub(crate) fn signal() -> libc::c_int {
    libc::SIGRTMAX() - 2
}

/// Installs the handler, once per process.
pub(crate) fn install() -> io::Result<()> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        // SAFETY: the action only touches this thread's atomics and calls
        // fcntl(2), which is async-signal-safe; signal-hook saves errno.
        unsafe { signal_hook::low_level::register(signal(), on_signal) }
            .map(drop)
            .map_err(|e| e.to_string())
    });
    result.clone().map_err(io::Error::other)
}

fn on_signal() {
    let fd = STAYING_FD.with(|fd| fd.load(Ordering::SeqCst));
    if fd >= 0 {
        // SAFETY: plain fcntl(2) calls on a descriptor the interrupted
        // thread owns and keeps open while it stays.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0 {
                MADE_NONBLOCKING.with(|m| m.store(true, Ordering::SeqCst));
            }
        }
    }
    SIGNALLED.with(|s| s.store(true, Ordering::SeqCst));
}

/// This thread's identity, for [`interrupt`].
pub(crate) fn current_thread() -> libc::pthread_t {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() }
}

/// Interrupts `thread`, which is staying (the caller has just swapped its
/// state, so it is alive and will absorb the signal).
pub(crate) fn interrupt(thread: libc::pthread_t) {
    // SAFETY: the thread is a live worker of this process (see above).
    let rc = unsafe { libc::pthread_kill(thread, signal()) };
    if rc != 0 {
        error!(
            "cannot interrupt a staying worker: {}",
            io::Error::from_raw_os_error(rc)
        );
    }
}

/// Marks `stream` as the socket this thread stays on, before it announces
/// that it is staying: an interruption from then on reaches that socket.
pub(crate) fn begin(stream: &TcpStream) {
    STAYING_FD.with(|fd| fd.store(stream.as_raw_fd(), Ordering::SeqCst));
}

/// Reads from the socket given to [`begin`], blocking until bytes arrive,
/// the client closes, or the thread is interrupted (`WouldBlock`).
pub(crate) fn read(mut stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let result = stream.read(buf);
    STAYING_FD.with(|fd| fd.store(-1, Ordering::SeqCst));
    result
}

/// Forgets the socket given to [`begin`] without reading.
pub(crate) fn end() {
    STAYING_FD.with(|fd| fd.store(-1, Ordering::SeqCst));
}

/// Called once the worker has seen that it was interrupted: waits until the
/// signal has been handled on this thread (the sender may not have sent it
/// yet), then makes `stream` blocking again if the handler changed it.
pub(crate) fn absorb(stream: &TcpStream) {
    // The sender swapped this worker's state before sending, so the signal
    // is coming, however late (a sender descheduled by the host, or
    // stopped): wait for it, or it would land later, outside a `read`.
    let started = Instant::now();
    let mut warned = false;
    while !SIGNALLED.with(|s| s.swap(false, Ordering::SeqCst)) {
        if !warned && started.elapsed() > Duration::from_secs(1) {
            warn!("a worker has waited over a second for its wake-up signal");
            warned = true;
        }
        // A system call: a pending signal is delivered on its way back.
        std::thread::yield_now();
    }
    restore_blocking(stream);
}

/// Makes `stream` blocking again if the handler made it non-blocking. Also
/// called after every stay, as a safety net: a socket left non-blocking
/// would make its worker spin and its writes fail.
pub(crate) fn restore_blocking(stream: &TcpStream) {
    if MADE_NONBLOCKING.with(|m| m.swap(false, Ordering::SeqCst)) {
        if let Err(e) = stream.set_nonblocking(false) {
            error!("cannot make a socket blocking again: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    #[test]
    fn an_interrupted_read_returns_would_block_and_the_socket_stays_usable() {
        install().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            tx.send(current_thread()).unwrap();
            let mut buf = [0u8; 16];
            begin(&server);
            let first = read(&server, &mut buf).map_err(|e| e.kind());
            absorb(&server);
            // Blocking again: this waits for the client's bytes.
            let second = (&server).read(&mut buf).map(|n| buf[..n].to_vec());
            (first, second.unwrap())
        });
        let thread = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        interrupt(thread);
        std::thread::sleep(Duration::from_millis(50));
        client.write_all(b"after").unwrap();
        let (first, second) = reader.join().unwrap();
        assert_eq!(first, Err(ErrorKind::WouldBlock));
        assert_eq!(second, b"after");
    }

    #[test]
    fn an_interruption_before_the_read_is_not_lost() {
        install().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        begin(&server);
        // The signal arrives before the read starts: the read must not block.
        interrupt(current_thread());
        let mut buf = [0u8; 4];
        let result = read(&server, &mut buf).map_err(|e| e.kind());
        absorb(&server);
        assert_eq!(result, Err(ErrorKind::WouldBlock));
    }
}
