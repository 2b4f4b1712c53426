//! Text that came from a tenant (app and staging output, `exec` output, event
//! descriptions, environment values, API errors that quote them), made inert before it
//! reaches a person's terminal.
//!
//! A hostile app can print escape sequences that a terminal acts on instead of showing:
//! OSC 52 writes the clipboard, OSC 8 hides a link's target, CSI moves the cursor to
//! rewrite lines printed earlier (the platform's own among them), `\r` overprints, a DCS
//! or a title change talks to the terminal itself. kubectl had this bug
//! (CVE-2021-25743), as have many log viewers. [`neutralise`] shows every such control
//! as text instead.
//!
//! The one decision: only a terminal gets neutralised text ([`Screen`]). Output piped to
//! a file or another program, and `--json`, stays byte-exact, as scripts need it (and
//! JSON escapes control characters itself).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::IsTerminal;

/// `line` with every character a terminal would act on shown as visible text: ESC and
/// the other C0 controls but TAB in caret notation (`^[`, `^M` for `\r`, `^J` for `\n`,
/// `^@` for NUL), DEL as `^?`, the C1 controls U+0080..U+009F (which some terminals take
/// as ESC sequences) and the bidirectional overrides and isolates U+202A..U+202E,
/// U+2066..U+2069 (which reorder what is shown, CVE-2021-42574) as `<U+009B>`. Printable
/// text, all other Unicode included, is kept as it is. Allocates only when something
/// must change.
pub fn neutralise(line: &str) -> Cow<'_, str> {
    escape(line, false)
}

/// [`neutralise`] for text of several lines: each line is neutralised and the line
/// breaks (`\n`) are kept.
pub fn neutralise_lines(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

fn escape(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let acts = |c: char| is_active(c) && !(keep_newlines && c == '\n');
    let Some(first) = text.find(acts) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if !acts(c) {
            out.push(c);
        } else if let Some(b) = u8::try_from(c).ok().filter(|b| *b < 0x20) {
            out.push('^');
            out.push(char::from(b + 0x40));
        } else if c == '\x7f' {
            out.push_str("^?");
        } else {
            let _ = write!(out, "<U+{:04X}>", u32::from(c));
        }
    }
    Cow::Owned(out)
}

/// Whether a terminal acts on `c` rather than showing it (TAB aside, which only moves
/// to the next tab stop).
fn is_active(c: char) -> bool {
    matches!(
        c,
        '\0'..='\x08' | '\n'..='\x1f' | '\x7f'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// Where text is printed: a terminal gets tenant text neutralised, anything else gets
/// it byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Screen {
    is_terminal: bool,
}

impl Screen {
    pub fn new(is_terminal: bool) -> Self {
        Screen { is_terminal }
    }

    /// Stdout, as it is now.
    pub fn stdout() -> Self {
        Self::new(std::io::stdout().is_terminal())
    }

    /// Stderr, as it is now.
    pub fn stderr() -> Self {
        Self::new(std::io::stderr().is_terminal())
    }

    pub fn is_terminal(self) -> bool {
        self.is_terminal
    }

    /// `line` to print as one line: [`neutralise`]d on a terminal (a `\n` in it shows as
    /// `^J`), as it is otherwise.
    pub fn line(self, line: &str) -> Cow<'_, str> {
        if self.is_terminal {
            neutralise(line)
        } else {
            Cow::Borrowed(line)
        }
    }

    /// `text` to print, line breaks kept: each line [`neutralise`]d on a terminal, as it
    /// is otherwise.
    pub fn text(self, text: &str) -> Cow<'_, str> {
        if self.is_terminal {
            neutralise_lines(text)
        } else {
            Cow::Borrowed(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_show_in_caret_notation() {
        // OSC 52: a clipboard write; then a screen clear and a cursor move up.
        assert_eq!(
            neutralise("a\x1b]52;c;aGk=\x07b\x1b[2J\x1b[1A"),
            "a^[]52;c;aGk=^Gb^[[2J^[[1A"
        );
        assert_eq!(neutralise("\0\x01\x08\x0b\x0c\x1f\x7f"), "^@^A^H^K^L^_^?");
        assert_eq!(neutralise("over\rwrite\n"), "over^Mwrite^J");
    }

    #[test]
    fn c1_controls_and_bidi_overrides_show_as_code_points() {
        // U+009B is CSI on its own to a terminal that reads C1 controls.
        assert_eq!(
            neutralise("\u{9b}31m\u{80}\u{9f}"),
            "<U+009B>31m<U+0080><U+009F>"
        );
        assert_eq!(
            neutralise("abc\u{202e}fed\u{2066}"),
            "abc<U+202E>fed<U+2066>"
        );
    }

    #[test]
    fn printable_text_is_kept_and_not_copied() {
        for s in [
            "",
            "listening on port 8080",
            "tab\tseparated",
            "ünïcödé – 日本語 🚀 \u{a0}\u{a0}",
            "^[ already caret-like <U+009B>",
        ] {
            assert!(matches!(neutralise(s), Cow::Borrowed(b) if b == s), "{s:?}");
        }
    }

    #[test]
    fn line_breaks_are_kept_only_when_asked() {
        assert_eq!(neutralise_lines("one\x1b[A\ntwo\r\n"), "one^[[A\ntwo^M\n");
        assert!(matches!(neutralise_lines("a\nb\n"), Cow::Borrowed(_)));
        assert_eq!(neutralise("a\nb"), "a^Jb");
    }

    #[test]
    fn only_a_terminal_gets_neutralised_text() {
        let s = "x\x1b]8;;http://evil/\x1b\\y\nz";
        assert!(matches!(Screen::new(false).line(s), Cow::Borrowed(b) if b == s));
        assert!(matches!(Screen::new(false).text(s), Cow::Borrowed(b) if b == s));
        assert_eq!(Screen::new(true).line(s), "x^[]8;;http://evil/^[\\y^Jz");
        assert_eq!(Screen::new(true).text(s), "x^[]8;;http://evil/^[\\y\nz");
    }

    /// Characters weighted towards the ones that matter: controls of every kind, their
    /// neighbours, the bidi range, and any character at all.
    fn interesting_char() -> impl Strategy<Value = char> {
        prop_oneof![
            proptest::char::range('\0', '\x20'),
            proptest::char::range('\x7e', '\u{a1}'),
            proptest::char::range('\u{2028}', '\u{206a}'),
            Just('^'),
            Just('<'),
            any::<char>(),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(interesting_char(), 0..64).prop_map(String::from_iter)
    }

    /// Reads the notations back, for text that had no `^` or `<` of its own.
    fn restore(shown: &str) -> String {
        let mut out = String::new();
        let mut rest = shown;
        while let Some(c) = rest.chars().next() {
            if let Some(r) = rest.strip_prefix('^') {
                let n = r.as_bytes()[0];
                out.push(if n == b'?' {
                    '\x7f'
                } else {
                    char::from(n - 0x40)
                });
                rest = &r[1..];
            } else if let Some(r) = rest.strip_prefix("<U+") {
                let (hex, r) = r.split_once('>').unwrap();
                out.push(char::from_u32(u32::from_str_radix(hex, 16).unwrap()).unwrap());
                rest = r;
            } else {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        out
    }

    /// What must never reach a terminal, said independently of [`is_active`]: the
    /// Unicode "Cc" controls (C0, DEL, C1) but TAB, and the bidi overrides and isolates.
    fn forbidden(c: char) -> bool {
        (c.is_control() && c != '\t')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn nothing_a_terminal_acts_on_survives(s in text()) {
            let shown = neutralise(&s);
            for b in shown.bytes() {
                prop_assert!(
                    b == b'\t' || (b >= 0x20 && b != 0x7f),
                    "byte {:#04x} in {:?}",
                    b,
                    shown
                );
            }
            prop_assert!(!shown.chars().any(forbidden), "{:?}", shown);
            let shown = neutralise_lines(&s);
            prop_assert!(
                !shown.chars().any(|c| c != '\n' && forbidden(c)),
                "{:?}",
                shown
            );
        }

        #[test]
        fn text_without_controls_is_borrowed_unchanged(s in text()) {
            let clean = !s.chars().any(forbidden);
            prop_assert_eq!(matches!(neutralise(&s), Cow::Borrowed(_)), clean);
            if clean {
                prop_assert_eq!(neutralise(&s), s.as_str());
            }
        }

        #[test]
        fn every_character_can_be_read_back(s in text()) {
            let plain: String = s.chars().filter(|c| *c != '^' && *c != '<').collect();
            prop_assert_eq!(restore(&neutralise(&plain)), plain);
        }

        #[test]
        fn lines_are_neutralised_one_by_one(s in text()) {
            let whole = neutralise_lines(&s);
            let each: Vec<String> = s.split('\n').map(|l| neutralise(l).into_owned()).collect();
            prop_assert_eq!(whole, each.join("\n"));
        }
    }
}
