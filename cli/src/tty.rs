//! The person's terminal as `paas run` uses it for a task with a terminal of its own:
//! its size, and raw mode (keys as typed, no local echo, no signals from Ctrl-C), as
//! ssh puts it in for a remote session.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use nix::sys::termios::{self, SetArg, Termios};

/// The terminal's size (rows, columns) when both stdin and stdout are a terminal.
pub fn size() -> Option<(u16, u16)> {
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        return None;
    }
    // A terminal that does not say its size gets the classic one.
    Some(console::Term::stdout().size_checked().unwrap_or((24, 80)))
}

/// Raw mode on stdin while it lives; the terminal's settings come back when dropped.
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    /// Raw mode, if stdin is a terminal that allows it (otherwise nothing changes).
    pub fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let entered = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).is_ok();
        RawMode {
            saved: entered.then_some(saved),
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}
