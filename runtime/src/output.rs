//! Reading a container's stdout or stderr line by line, as it is written.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Calls `each` with every line of `pipe` (without its line ending) until the pipe
/// closes. Invalid UTF-8 is replaced; a line longer than `max_line` bytes is cut there.
pub async fn for_each_line(
    pipe: impl AsyncRead + Unpin,
    max_line: usize,
    mut each: impl FnMut(String),
) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        buf.truncate(max_line);
        each(String::from_utf8_lossy(&buf).into_owned());
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn lines_are_split_cut_and_made_valid() {
        let input: &[u8] = b"one\r\ntwo\n\xfflong line\nlast";
        let mut lines = Vec::new();
        super::for_each_line(input, 5, |l| lines.push(l)).await;
        assert_eq!(lines, vec!["one", "two", "\u{fffd}long", "last"]);
    }
}
