//! A UDP socket read in batches, with a large kernel buffer and the kernel's drop count.
//!
//! Datagram senders never wait for us, so what the kernel cannot queue is lost. Three things
//! keep that small and visible: a large `SO_RCVBUF` (forced past `rmem_max` when we may),
//! `recvmmsg` to take many datagrams per system call, and `SO_RXQ_OVFL`, which makes the kernel
//! report how many datagrams it dropped on this socket — the X-Ray daemon loses them silently.
//! This file only reads bytes; what they mean is the caller's business.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// The largest UDP payload (IPv4: 65,535 - 8 - 20), so no datagram is ever truncated.
pub const MAX_DATAGRAM: usize = 65_536;

/// How many datagrams one `recvmmsg` call may return. Each slot owns a full-size buffer, so
/// this times [`MAX_DATAGRAM`] is the receive memory (1 MiB), paid once.
pub const BATCH: usize = 16;

/// Binds `address` with `receive_buffer_bytes` of kernel buffer and drop reporting on.
/// No `SO_REUSEADDR`: a second agent (or an X-Ray daemon) on the same port must fail to start,
/// not silently take half of the datagrams.
pub fn bind(address: SocketAddr, receive_buffer_bytes: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    set_receive_buffer(&socket, receive_buffer_bytes);
    enable_drop_count(&socket);
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    UdpSocket::from_std(socket.into())
}

/// The kernel's receive buffer of `socket` in its own accounting (Linux reports and charges
/// double the asked size; each queued datagram is charged its payload plus bookkeeping).
pub fn receive_buffer_bytes(socket: &impl std::os::fd::AsFd) -> usize {
    socket2::SockRef::from(socket)
        .recv_buffer_size()
        .unwrap_or(0)
}

/// Asks for the buffer, forcing it past the system maximum when running with CAP_NET_ADMIN;
/// logs what the kernel granted, since a silent small buffer is where bursts get lost.
fn set_receive_buffer(socket: &Socket, bytes: usize) {
    let forced = set_int_option(socket, libc::SO_RCVBUFFORCE, bytes).is_ok();
    if !forced {
        if let Err(error) = socket.set_recv_buffer_size(bytes) {
            tracing::warn!(%error, bytes, "Could not set the UDP receive buffer.");
        }
    }
    let granted = socket.recv_buffer_size().unwrap_or(0);
    // Linux reports double the asked size (its bookkeeping share); half of it is what we asked.
    if granted / 2 < bytes {
        tracing::info!(
            asked = bytes,
            granted = granted / 2,
            "UDP receive buffer capped by net.core.rmem_max; raise it for large bursts."
        );
    }
}

fn enable_drop_count(socket: &Socket) {
    if let Err(error) = set_int_option(socket, libc::SO_RXQ_OVFL, 1) {
        tracing::debug!(%error, "Kernel drop counting (SO_RXQ_OVFL) is unavailable.");
    }
}

fn set_int_option(socket: &Socket, option: libc::c_int, value: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket fd, and a pointer/length pair describing a live c_int.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits until `socket` has a datagram queued, watching it only for the wait. A socket the
/// runtime watches all the time wakes a runtime thread on every arrival, even while its reader
/// deliberately lets datagrams gather; registering only while idle keeps those wake-ups to one
/// per idle period (at the price of two `epoll_ctl` calls).
pub async fn readable(socket: &std::net::UdpSocket) -> io::Result<()> {
    let fd = socket.as_fd();
    // SAFETY: `fd` is borrowed from `socket`, which outlives `watched` (dropped, and so
    // deregistered, before this function returns), and always names the same open socket.
    let watched = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
    watched.readable().await?.retain_ready();
    Ok(())
}

/// Reusable buffers for batched receives.
pub struct Receiver {
    buffers: Vec<Box<[u8]>>,
    controls: Vec<[u64; 8]>,
    lengths: [usize; BATCH],
    /// The kernel's cumulative drop count, as last reported.
    pub kernel_drops: u64,
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new()
    }
}

impl Receiver {
    /// Allocates the receive buffers (lazily backed by the OS until first written).
    pub fn new() -> Self {
        Receiver {
            buffers: (0..BATCH)
                .map(|_| vec![0u8; MAX_DATAGRAM].into_boxed_slice())
                .collect(),
            controls: vec![[0u64; 8]; BATCH],
            lengths: [0; BATCH],
            kernel_drops: 0,
        }
    }

    /// Waits for datagrams and reads up to [`BATCH`] of them; returns how many.
    pub async fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        loop {
            socket.readable().await?;
            match socket.try_io(Interest::READABLE, || self.recv_now(socket.as_raw_fd())) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads up to [`BATCH`] datagrams from `socket` without waiting; 0 when none are queued.
    /// For a socket the runtime does not watch (see [`readable`]): read when the caller
    /// decides, not on every arrival.
    pub fn try_recv(&mut self, socket: &std::net::UdpSocket) -> io::Result<usize> {
        loop {
            match self.recv_now(socket.as_raw_fd()) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The `i`-th datagram of the last [`Receiver::recv`] or [`Receiver::try_recv`].
    pub fn datagram(&self, i: usize) -> &[u8] {
        &self.buffers[i][..self.lengths[i]]
    }

    fn recv_now(&mut self, fd: libc::c_int) -> io::Result<usize> {
        // On the stack, rebuilt per call: the kernel rewrites lengths in place, and the
        // pointers stay local to this call.
        let mut iovecs: [libc::iovec; BATCH] = std::array::from_fn(|_| libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        });
        for (iovec, buffer) in iovecs.iter_mut().zip(self.buffers.iter_mut()) {
            iovec.iov_base = buffer.as_mut_ptr().cast();
            iovec.iov_len = buffer.len();
        }
        // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for ((header, iovec), control) in headers
            .iter_mut()
            .zip(iovecs.iter_mut())
            .zip(self.controls.iter_mut())
        {
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = control.as_mut_ptr().cast();
            header.msg_hdr.msg_controllen = std::mem::size_of::<[u64; 8]>() as _;
        }
        // SAFETY: every header points at live buffers owned by self or this frame, sized as
        // declared.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, header) in headers.iter().take(n).enumerate() {
            self.lengths[i] = header.msg_len as usize;
            if let Some(drops) = read_drop_count(&header.msg_hdr) {
                self.kernel_drops = self.kernel_drops.max(u64::from(drops));
            }
        }
        Ok(n)
    }
}

/// The `SO_RXQ_OVFL` control message of a received datagram, if the kernel attached one.
fn read_drop_count(msg: &libc::msghdr) -> Option<u32> {
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled within
    // msg_controllen; the data of an SO_RXQ_OVFL message is one u32.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SO_RXQ_OVFL {
                let data = libc::CMSG_DATA(cmsg).cast::<u32>();
                return Some(std::ptr::read_unaligned(data));
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}
