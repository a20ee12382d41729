//! The few socket calls the engine makes beyond `read` and `write`: reads
//! that never block whatever the socket's mode, a look at what the socket
//! holds without taking it, and the receive low-water mark.
//!
//! A connection's socket stays in blocking mode (its replies are written
//! with a blocking `write` bounded by the send timeout, see `writer`), so
//! every read asks not to block with `MSG_DONTWAIT` instead.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

use socket2::SockRef;

/// A client's socket, TCP or Unix: the engine reads and writes both the
/// same way (`&Stream` implements `Read` and `Write`, so no lock is needed).
pub(crate) use socket2::Socket as Stream;

/// One `recv` that does not block.
pub(crate) fn recv_now(stream: &Stream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `recv` only writes initialised bytes, so viewing the
    // initialised buffer as possibly-uninitialised memory is sound.
    let buf = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
    SockRef::from(stream).recv_with_flags(buf, libc::MSG_DONTWAIT)
}

/// One `recv` that looks without taking and does not block.
pub(crate) fn peek_now(stream: &Stream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: as in `recv_now`.
    let buf = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
    SockRef::from(stream).recv_with_flags(buf, libc::MSG_DONTWAIT | libc::MSG_PEEK)
}

/// Asks the kernel to stamp each received packet with its arrival time, for
/// [`recv_stamped`].
pub(crate) fn stamp_arrivals(stream: &Stream) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with an int of the size given, on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// [`recv_now`], and how long ago (in nanoseconds) the last of the bytes
/// read arrived, if the socket stamps arrivals ([`stamp_arrivals`]): how
/// long they waited for this read. `None` for bytes that came unstamped
/// (Linux starts stamping a moment after the first socket asks).
pub(crate) fn recv_stamped(stream: &Stream, buf: &mut [u8]) -> io::Result<(usize, Option<u64>)> {
    // Room for one timespec control message.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: the header points at `buf` and `control`, both live and as
    // large as it says.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut arrived = None;
    // SAFETY: walking the control messages the kernel wrote, with the libc
    // macros, within `msg_controllen`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                arrived = Some(ts);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let waited = arrived.map(|ts| {
        let arrived_ns = (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        now.saturating_sub(arrived_ns)
    });
    Ok((n as usize, waited))
}

/// Bytes waiting to be read.
pub(crate) fn queued(stream: &Stream) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which is valid.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Sets the receive low-water mark: readiness for input (and so the
/// connection's next event) waits until this many bytes have arrived, or
/// the client closes. Linux caps it at half the largest receive buffer and
/// grows the socket's buffer to fit it. Returns whether all of `bytes` was
/// granted.
pub(crate) fn set_lowat(stream: &Stream, bytes: usize) -> io::Result<bool> {
    let want = libc::c_int::try_from(bytes.max(1)).unwrap_or(libc::c_int::MAX);
    let fd = stream.as_raw_fd();
    let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: plain get/setsockopt on a socket we own, with an int of the
    // size given.
    unsafe {
        if libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&want as *const libc::c_int).cast(),
            size,
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut got: libc::c_int = 0;
        let mut len = size;
        if libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&mut got as *mut libc::c_int).cast(),
            &mut len,
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(got >= want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;
    use std::net::TcpStream;
    use std::time::Duration;

    #[test]
    fn the_low_water_mark_holds_readiness_back_until_enough_has_arrived() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let server = Stream::from(listener.accept().unwrap().0);
        assert!(set_lowat(&server, 10).unwrap());
        let readable = |s: &Stream| {
            let mut fds = [rustix::event::PollFd::new(s, rustix::event::PollFlags::IN)];
            let zero = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            rustix::event::poll(&mut fds, Some(&zero)).unwrap() > 0
        };
        client.write_all(b"12345").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(queued(&server).unwrap(), 5);
        assert!(!readable(&server), "5 of 10 bytes: not ready yet");
        client.write_all(b"67890").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(readable(&server), "all 10 bytes: ready");
        let mut buf = [0u8; 16];
        assert_eq!(peek_now(&server, &mut buf).unwrap(), 10);
        assert_eq!(recv_now(&server, &mut buf).unwrap(), 10);
        assert!(set_lowat(&server, 1).unwrap());
    }

    #[test]
    fn a_stamped_read_says_how_long_its_bytes_waited() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let server = Stream::from(listener.accept().unwrap().0);
        stamp_arrivals(&server).unwrap();
        // Linux turns arrival stamps on for the whole machine a moment after
        // the first socket asks (deferred work): the first packets may come
        // unstamped. Try a few times.
        let mut buf = [0u8; 16];
        for _ in 0..50 {
            client.write_all(b"stamped").unwrap();
            std::thread::sleep(Duration::from_millis(100));
            let (n, waited) = recv_stamped(&server, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"stamped");
            if let Some(waited) = waited {
                assert!(
                    (90_000_000..5_000_000_000).contains(&waited),
                    "waited {waited} ns"
                );
                return;
            }
        }
        panic!("no arrival stamp in 50 reads");
    }
}
