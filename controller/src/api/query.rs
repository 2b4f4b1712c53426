//! Query-string parameters: `?name=value&flag`, percent-decoded.

/// The decoded value of the first `name=value` pair, `Some("")` for a bare `name`.
/// A value that does not decode to UTF-8 counts as absent.
pub fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| decode(v)).flatten()
    })
}

/// Whether the flag `name` is set: `name`, `name=true` or `name=1`.
pub fn flag(query: &str, name: &str) -> bool {
    matches!(param(query, name).as_deref(), Some("" | "true" | "1"))
}

/// Percent-decodes a query value (`+` is a space, as HTML forms send it).
fn decode(v: &str) -> Option<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_decodes_parameters() {
        let q = "host=a.localhost&path=%2Fapi%2Fv1&follow&n=1";
        assert_eq!(param(q, "host").as_deref(), Some("a.localhost"));
        assert_eq!(param(q, "path").as_deref(), Some("/api/v1"));
        assert_eq!(param(q, "follow").as_deref(), Some(""));
        assert_eq!(param(q, "missing"), None);
        assert!(flag(q, "follow") && flag(q, "n") && !flag(q, "host"));
        assert_eq!(param("x=%zz", "x"), None);
        assert_eq!(param("x=%", "x"), None);
        assert_eq!(param("x=%ff", "x"), None);
    }
}
