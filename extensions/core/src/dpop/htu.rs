//! `htu` comparison: RFC 3986 syntax- and scheme-based normalisation (lowercase scheme and host,
//! default port dropped, percent-encoding case, unreserved characters decoded, dot segments
//! removed), query and fragment ignored, one trailing slash tolerated.

use http::Uri;

/// Normalises an absolute http(s) URI for comparison; `None` when it is not one (including any
/// non-ASCII character, which a URI cannot contain).
pub fn normalize(uri: &str) -> Option<String> {
    if !uri.is_ascii() || uri.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return None;
    }
    let without_fragment = uri.split('#').next().unwrap_or(uri);
    let parsed: Uri = without_fragment.parse().ok()?;
    let scheme = parsed.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let authority = parsed.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    let port = match authority.port_u16() {
        Some(p) if p != default_port => format!(":{p}"),
        _ => String::new(),
    };
    let path = normalize_path(parsed.path())?;
    Some(format!("{scheme}://{host}{port}{path}"))
}

fn normalize_path(path: &str) -> Option<String> {
    // percent-encoding: uppercase hex, decode unreserved characters
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = path.get(i + 1..i + 3)?;
            let value = u8::from_str_radix(hex, 16).ok()?;
            if value.is_ascii_alphanumeric() || b"-._~".contains(&value) {
                out.push(value as char);
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    // dot segments (RFC 3986 §5.2.4)
    let mut segments: Vec<&str> = Vec::new();
    for seg in out.split('/').skip(1) {
        match seg {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut result = String::from("/");
    result.push_str(&segments.join("/"));
    if out.ends_with("/.") || out.ends_with("/..") {
        result.push('/');
    }
    Some(result)
}

/// Whether `path` (of a parsed request URI) is its own normal form: no percent-encoding and no
/// dot segments, so an origin in normal form followed by it needs no normalising.
pub fn is_plain_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.bytes().any(|b| b == b'%' || b.is_ascii_control() || b == b' ' || !b.is_ascii())
        && !path.split('/').any(|seg| seg == "." || seg == "..")
}

/// Whether `origin` (`scheme://host[:port]`) is its own normal form.
pub fn is_normal_origin(origin: &str) -> bool {
    let with_root = format!("{origin}/");
    normalize(&with_root).is_some_and(|n| n == with_root)
}

/// Whether a proof's `htu` names the expected URI.
pub fn matches(htu: &str, expected: &str) -> bool {
    match (normalize(htu), normalize(expected)) {
        (Some(a), Some(b)) => {
            a == b || (a.trim_end_matches('/') == b.trim_end_matches('/') && a.len().abs_diff(b.len()) <= 1)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_applies_only_to_what_normalises_to_itself() {
        for origin in ["https://mcp.example.com", "http://127.0.0.1:8080"] {
            assert!(is_normal_origin(origin), "{origin}");
        }
        for origin in ["HTTPS://mcp.example.com", "https://MCP.example.com", "https://h:443", "http://h:80", "ftp://h"]
        {
            assert!(!is_normal_origin(origin), "{origin}");
        }
        for path in ["/", "/mcp", "/a/b.c/", "/.well-known/x"] {
            assert!(is_plain_path(path), "{path}");
            let uri = format!("https://h{path}");
            assert_eq!(normalize(&uri).as_deref(), Some(uri.as_str()), "a plain path is its own normal form");
        }
        for path in ["/a/%7e", "/a/./b", "/a/..", "/.", "relative", "/ü"] {
            assert!(!is_plain_path(path), "{path}");
        }
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize("HTTPS://MCP.Example.COM:443/mcp?x=1#f").as_deref(), Some("https://mcp.example.com/mcp"));
        assert_eq!(normalize("http://127.0.0.1:80/mcp").as_deref(), Some("http://127.0.0.1/mcp"));
        assert_eq!(normalize("http://127.0.0.1:8080/mcp").as_deref(), Some("http://127.0.0.1:8080/mcp"));
        assert_eq!(normalize("https://h/a/./b/../c").as_deref(), Some("https://h/a/c"));
        assert_eq!(normalize("https://h/%7euser/%2f").as_deref(), Some("https://h/~user/%2F"));
        assert_eq!(normalize("https://h").as_deref(), Some("https://h/"));
        assert_eq!(normalize("https://h/mcp/ü"), None, "non-ASCII");
        assert_eq!(normalize("ftp://h/x"), None);
        assert_eq!(normalize("/relative"), None);
        assert_eq!(normalize("https://u:p@h/x"), None);
        assert_eq!(normalize("https://h/%zz"), None);
    }

    #[test]
    fn matching() {
        assert!(matches("https://MCP.example.com:443/mcp?q#f", "https://mcp.example.com/mcp"));
        assert!(matches("https://mcp.example.com/mcp/", "https://mcp.example.com/mcp"));
        assert!(!matches("https://mcp.example.com/mcp//", "https://mcp.example.com/mcp"));
        assert!(!matches("https://wrong.example.com/mcp", "https://mcp.example.com/mcp"));
        assert!(!matches("http://mcp.example.com/mcp", "https://mcp.example.com/mcp"));
        assert!(!matches("https://mcp.example.com:8443/mcp", "https://mcp.example.com/mcp"));
        assert!(!matches("https://mcp.example.com/mcpx", "https://mcp.example.com/mcp"));
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::normalize;

        fn uri() -> impl Strategy<Value = String> {
            (
                prop_oneof![Just("http"), Just("HTTPS"), Just("Http"), Just("ftp")],
                "[A-Za-z0-9.-]{1,20}",
                proptest::option::of(0u16..=65535),
                proptest::collection::vec(
                    prop_oneof!["[A-Za-z0-9_~.-]{0,8}", Just(".".to_owned()), Just("..".to_owned()), "%[0-9a-fA-F]{2}"],
                    0..6,
                ),
                proptest::option::of("[a-z=&0-9]{0,10}"),
                proptest::option::of("[a-z0-9]{0,6}"),
            )
                .prop_map(|(scheme, host, port, segments, query, fragment)| {
                    let mut u = format!("{scheme}://{host}");
                    if let Some(p) = port {
                        u.push_str(&format!(":{p}"));
                    }
                    for s in segments {
                        u.push('/');
                        u.push_str(&s);
                    }
                    if let Some(q) = query {
                        u.push('?');
                        u.push_str(&q);
                    }
                    if let Some(f) = fragment {
                        u.push('#');
                        u.push_str(&f);
                    }
                    u
                })
        }

        proptest! {
            /// Normalising is idempotent, and query/fragment never matter.
            #[test]
            fn normalisation_is_idempotent(u in uri()) {
                if let Some(n) = normalize(&u) {
                    prop_assert_eq!(normalize(&n), Some(n.clone()));
                    let bare = u.split(['?', '#']).next().unwrap_or(&u);
                    prop_assert_eq!(normalize(bare), Some(n.clone()));
                    prop_assert!(!n.contains('?') && !n.contains('#'));
                }
            }
        }
    }
}
