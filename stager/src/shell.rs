//! Quoting for POSIX shells: the launcher runs start commands with `bash -c`, and the
//! stager writes environment scripts that bash sources.

/// Quotes one word so that the shell reads it back exactly, with no expansion.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Quotes and joins words into a command line that runs exactly those words: `exec`
/// before it runs a process without any shell processing, as Cloud Native Buildpacks'
/// processes run.
pub fn join(words: &[String]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting_leaves_nothing_for_the_shell_to_expand_or_split() {
        let words: Vec<String> = ["ls", "-la", "a b", "$HOME", "it's", "", "*"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            super::join(&words),
            r#"ls -la 'a b' '$HOME' 'it'\''s' '' '*'"#
        );
    }
}
