//! Colour for a person at a terminal: never when output goes to a file or a pipe, and
//! never when `NO_COLOR` is set (https://no-color.org).

use std::io::IsTerminal;

#[derive(Debug, Clone, Copy)]
pub enum Colour {
    Red,
    Green,
    Cyan,
}

/// Whether to colour what goes to a stream that is (or is not) a terminal.
pub fn enabled(is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// `text` in `colour` and bold when stderr is a terminal and colour is wanted.
pub fn stderr(text: &str, colour: Colour) -> String {
    paint(
        text,
        colour,
        enabled(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ),
    )
}

/// `text` in `colour` when stdout is a terminal and colour is wanted.
pub fn stdout(text: &str, colour: Colour) -> String {
    paint(
        text,
        colour,
        enabled(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ),
    )
}

fn paint(text: &str, colour: Colour, on: bool) -> String {
    if !on {
        return text.to_string();
    }
    let code = match colour {
        Colour::Red => "1;31",
        Colour::Green => "1;32",
        Colour::Cyan => "36",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(enabled(true, None));
        assert!(!enabled(false, None));
        assert!(!enabled(true, Some("1".into())));
        // An empty NO_COLOR does not count, as no-color.org says.
        assert!(enabled(true, Some("".into())));
        assert_eq!(paint("x", Colour::Red, false), "x");
        assert_eq!(paint("x", Colour::Green, true), "\x1b[1;32mx\x1b[0m");
    }
}
