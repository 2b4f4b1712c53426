//! Reading a container's stdout or stderr line by line, as it is written.
//!
//! What a container prints is hostile: a line may never end. A reader holds at most one
//! line's bound of it (plus the pipe buffer) however long the line is; the rest of an
//! over-long line is read and thrown away, so a fast printer cannot grow paasd's memory.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::time::Instant;

/// Lines of a pipe, each cut to a bound.
pub struct Lines<R> {
    reader: BufReader<R>,
    max_line: usize,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    pub fn new(pipe: R, max_line: usize) -> Self {
        Lines {
            reader: BufReader::new(pipe),
            max_line,
        }
    }

    /// The next line (without its line ending; invalid UTF-8 replaced; cut after
    /// `max_line` bytes), or `None` once the pipe closes.
    pub async fn next_line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        let mut cut = false;
        loop {
            let chunk = match self.reader.fill_buf().await {
                Ok(c) => c,
                Err(_) => return None,
            };
            if chunk.is_empty() {
                // The pipe closed: a last line without a line ending still counts.
                if line.is_empty() && !cut {
                    return None;
                }
                break;
            }
            let (taken, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let room = self.max_line.saturating_sub(line.len());
            let keep = &chunk[..taken];
            if keep.len() > room {
                cut = true;
            }
            line.extend_from_slice(&keep[..keep.len().min(room)]);
            self.reader.consume(taken);
            if done {
                break;
            }
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        Some(String::from_utf8_lossy(&line).into_owned())
    }
}

/// Calls `each` with every line of `pipe` (see [`Lines::next_line`]) until the pipe
/// closes.
pub async fn for_each_line(
    pipe: impl AsyncRead + Unpin,
    max_line: usize,
    mut each: impl FnMut(String),
) {
    let mut lines = Lines::new(pipe, max_line);
    while let Some(line) = lines.next_line().await {
        each(line);
    }
}

/// A fixed one-second window of at most `per_second` lines: what one container may log,
/// so that one noisy instance or build cannot flood the platform's log store.
pub struct RateLimit {
    per_second: u32,
    window: Instant,
    used: u32,
    dropped: u64,
}

impl RateLimit {
    pub fn new(per_second: u32) -> Self {
        RateLimit {
            per_second,
            window: Instant::now(),
            used: 0,
            dropped: 0,
        }
    }

    /// When a new window starts: how many lines the last one dropped, if any.
    pub fn dropped_before(&mut self, now: Instant) -> Option<u64> {
        if now.duration_since(self.window) < Duration::from_secs(1) {
            return None;
        }
        self.window = now;
        self.used = 0;
        Some(std::mem::take(&mut self.dropped)).filter(|n| *n > 0)
    }

    /// Lines dropped in the current window, not reported yet (for when the output ends).
    pub fn dropped_since_report(&mut self) -> Option<u64> {
        Some(std::mem::take(&mut self.dropped)).filter(|n| *n > 0)
    }

    /// Whether one more line fits in the current window; counted as dropped if not.
    pub fn admit(&mut self, _now: Instant) -> bool {
        if self.used < self.per_second {
            self.used += 1;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use std::pin::Pin;
    use std::task::{Context, Poll};

    #[tokio::test]
    async fn lines_are_split_cut_and_made_valid() {
        let input: &[u8] = b"one\r\ntwo\n\xfflong line\nlast";
        let mut lines = Vec::new();
        super::for_each_line(input, 5, |l| lines.push(l)).await;
        assert_eq!(lines, vec!["one", "two", "\u{fffd}long", "last"]);
    }

    /// `n` bytes of `x` with no line ending, then "\nok\n", handed out 64 KiB at a time.
    struct Endless {
        left: usize,
        tail: &'static [u8],
    }

    impl tokio::io::AsyncRead for Endless {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.left > 0 {
                let n = self.left.min(buf.remaining()).min(64 << 10);
                buf.put_slice(&vec![b'x'; n]);
                self.left -= n;
            } else {
                let n = self.tail.len().min(buf.remaining());
                let tail = self.tail;
                buf.put_slice(&tail[..n]);
                self.tail = &tail[n..];
            }
            Poll::Ready(Ok(()))
        }
    }

    // Before: a line that never ended was gathered whole (read_until) before it was cut,
    // so an app printing without newlines grew paasd's memory without bound.
    #[tokio::test]
    async fn a_line_that_never_ends_is_cut_while_it_is_read() {
        let mut lines = super::Lines::new(
            Endless {
                left: 256 << 20,
                tail: b"\nok\n",
            },
            16,
        );
        let first = lines.next_line().await.unwrap();
        assert_eq!(first, "x".repeat(16));
        assert!(
            lines.reader.buffer().len() <= 8 << 10,
            "no more than the reader's own buffer is held"
        );
        assert_eq!(lines.next_line().await.unwrap(), "ok");
        assert_eq!(lines.next_line().await, None);
    }

    #[test]
    fn log_rate_limit_drops_past_the_budget_and_reports_once_a_second() {
        let start = tokio::time::Instant::now();
        let mut l = super::RateLimit::new(3);
        let admitted = (0..5).filter(|_| l.admit(start)).count();
        assert_eq!(admitted, 3);
        assert_eq!(l.dropped_before(start + Duration::from_millis(500)), None);
        assert_eq!(
            l.dropped_before(start + Duration::from_millis(1500)),
            Some(2)
        );
        assert!(l.admit(start + Duration::from_millis(1500)));
        assert_eq!(l.dropped_before(start + Duration::from_millis(2600)), None);
    }
}
