//! Host header normalisation: `MyApp.Example.COM.:8080` → `myapp.example.com`.

/// Normalises a Host header value for route lookup: lowercase, no port, no trailing dot.
/// Returns `None` for a value that is not a plausible host name.
pub fn normalise(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // An IPv6 literal, `[::1]:8080`: never an app route, but not malformed either.
        let end = rest.find(']')?;
        return Some(format!("[{}]", rest[..end].to_ascii_lowercase()));
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return None;
    }
    let ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    // Found by the fuzz target: "-.." kept a trailing dot after the one allowed.
    if !ok || host.starts_with('.') || host.ends_with('.') || host.contains("..") {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

/// The port a Host header value names, if it names one: `app.example.com:8080` → 8080.
pub fn port(raw: &str) -> Option<u16> {
    let raw = raw.trim();
    let after_host = match raw.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.1,
        None => raw,
    };
    after_host.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{normalise, port};

    #[test]
    fn finds_the_port() {
        assert_eq!(port("app.localhost:8080"), Some(8080));
        assert_eq!(port("app.localhost"), None);
        assert_eq!(port("[::1]:443"), Some(443));
        assert_eq!(port("[::1]"), None);
    }

    #[test]
    fn ignores_case_port_and_trailing_dot() {
        assert_eq!(
            normalise("MyApp.Example.COM.:8080").as_deref(),
            Some("myapp.example.com")
        );
        assert_eq!(normalise("app.localhost").as_deref(), Some("app.localhost"));
        assert_eq!(
            normalise("app.localhost:80").as_deref(),
            Some("app.localhost")
        );
        assert_eq!(normalise("[::1]:8080").as_deref(), Some("[::1]"));
    }

    #[test]
    fn refuses_malformed_hosts() {
        for bad in [
            "", ":80", "a b", "a/b", "a..b", ".a", "a:port", "a:", "x@y", "-..", "a..",
        ] {
            assert_eq!(normalise(bad), None, "{bad:?}");
        }
    }
}
