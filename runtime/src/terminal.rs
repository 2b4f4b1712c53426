//! A container's terminal (`paas run` from a terminal, as `heroku run` and `cf ssh` give
//! one).
//!
//! The pty is made by the container's pid 1, from the container's own devpts instance,
//! after it entered the app's user namespace, as runc does with its console socket: the
//! process never holds a terminal of the host's, so `TIOCSTI` and friends reach only its
//! own session (CVE-2017-5226 was a sandbox's process pushing keystrokes into the
//! terminal of the person who started it). Pid 1 sends the master to the daemon over
//! its stdin, a Unix socket, with SCM_RIGHTS; the daemon relays bytes between the
//! master and the person's stream.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

pub use crate::spec::TtySize;

/// The daemon's end of a container's terminal: the pty master.
#[derive(Debug)]
pub struct Terminal {
    master: AsyncFd<OwnedFd>,
}

impl Terminal {
    fn new(master: OwnedFd) -> std::io::Result<Self> {
        let flags = nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        // SAFETY: an OwnedFd stays open and names the same pty for as long as the AsyncFd
        // that owns it, and its as_raw_fd always returns that descriptor.
        let master = unsafe { AsyncFd::register(master) }.map_err(std::io::Error::from)?;
        Ok(Terminal { master })
    }

    /// Reads what the process wrote; 0 once every holder of the slave has closed it
    /// (the process and its children ended).
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut ready = self.master.readable().await?;
            match ready.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(Into::into)) {
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes `data` as typed input.
    pub async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut ready = self.master.writable().await?;
            match ready.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(Into::into)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Gives the terminal a new size (the process gets SIGWINCH).
    pub fn resize(&self, size: TtySize) -> std::io::Result<()> {
        set_size(self.master.get_ref().as_raw_fd(), size)
    }
}

fn set_size(fd: RawFd, size: TtySize) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Waits for pid 1 to send the master over `socket`.
pub(crate) async fn receive(socket: &tokio::net::UnixStream) -> std::io::Result<Terminal> {
    loop {
        socket.readable().await?;
        match socket.try_io(Interest::READABLE, || receive_fd(socket.as_raw_fd())) {
            Ok(fd) => return Terminal::new(fd),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

fn receive_fd(socket: RawFd) -> std::io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = nix::sys::socket::recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    if msg.bytes == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the container ended before it made its terminal",
        ));
    }
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            let mut fds = fds.into_iter();
            if let Some(first) = fds.next() {
                for extra in fds {
                    // SAFETY: received descriptors are ours to close.
                    drop(unsafe { OwnedFd::from_raw_fd(extra) });
                }
                // SAFETY: the kernel just installed it in this process for us alone.
                return Ok(unsafe { OwnedFd::from_raw_fd(first) });
            }
        }
    }
    Err(std::io::Error::other("the container sent no terminal"))
}

/// In pid 1: makes a pty of `size` from the container's devpts, and answers (master,
/// slave). The slave is handed to `owner` (uid, gid) so the process may reopen it.
pub(crate) fn open(size: TtySize, owner: (u32, u32)) -> Result<(OwnedFd, OwnedFd), String> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| format!("opening /dev/ptmx: {e}"))?;
    nix::pty::grantpt(&master).map_err(|e| format!("granting the pty: {e}"))?;
    nix::pty::unlockpt(&master).map_err(|e| format!("unlocking the pty: {e}"))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| format!("naming the pty: {e}"))?;
    // O_NOCTTY: opening it must not make it pid 1's controlling terminal.
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&name)
        .map_err(|e| format!("opening {name}: {e}"))?
        .into();
    let _ = nix::unistd::fchown(
        &slave,
        Some(nix::unistd::Uid::from_raw(owner.0)),
        Some(nix::unistd::Gid::from_raw(owner.1)),
    );
    set_size(master.as_fd().as_raw_fd(), size).map_err(|e| format!("sizing the pty: {e}"))?;
    // SAFETY: `into_raw_fd` hands over sole ownership of the master's descriptor.
    let master = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(master)) };
    Ok((master, slave))
}

/// In pid 1: sends `master` to the daemon over the socket at `socket`.
pub(crate) fn send(socket: RawFd, master: &OwnedFd) -> Result<(), String> {
    let fds = [master.as_raw_fd()];
    nix::sys::socket::sendmsg::<()>(
        socket,
        &[IoSlice::new(b"t")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
    .map_err(|e| format!("handing the terminal to the daemon: {e}"))
}
