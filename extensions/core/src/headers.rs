//! MCP HTTP header names and the SEP-2243 header value encoding.
//!
//! Values that are not plain visible ASCII travel as `=?base64?<base64 of UTF-8>?=`; servers must
//! decode them before comparing with the body.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use http::HeaderName;

/// `MCP-Protocol-Version`.
pub const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// `Mcp-Method` (SEP-2243).
pub const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// `Mcp-Name` (SEP-2243).
pub const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
/// `Mcp-Session-Id` (legacy era only).
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
/// Prefix of `Mcp-Param-{Name}` headers, lowercase.
pub const MCP_PARAM_PREFIX: &str = "mcp-param-";
/// `DPoP`.
pub const DPOP: HeaderName = HeaderName::from_static("dpop");
/// `DPoP-Nonce`.
pub const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");
/// `Last-Event-ID` (legacy era only).
pub const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

const SENTINEL_START: &str = "=?base64?";
const SENTINEL_END: &str = "?=";

/// Why a header value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderValueError {
    /// The raw value holds bytes outside visible ASCII and space.
    #[error("header value contains characters outside visible ASCII")]
    NotVisibleAscii,
    /// The value has leading or trailing whitespace (it should have been sentinel-encoded).
    #[error("header value has leading or trailing whitespace")]
    SurroundingWhitespace,
    /// The `=?base64?…?=` payload is not valid base64.
    #[error("header value sentinel holds invalid base64")]
    InvalidBase64,
    /// The decoded payload is not UTF-8.
    #[error("header value sentinel does not decode to UTF-8")]
    InvalidUtf8,
}

/// Decodes one SEP-2243 header value: plain visible ASCII is returned as is, the
/// `=?base64?…?=` sentinel form is decoded to its UTF-8 text.
pub fn decode_value(raw: &[u8]) -> Result<String, HeaderValueError> {
    decode_value_cow(raw).map(std::borrow::Cow::into_owned)
}

/// [`decode_value`] without a copy for the plain form (the common case): borrowed from `raw`.
pub fn decode_value_cow(raw: &[u8]) -> Result<std::borrow::Cow<'_, str>, HeaderValueError> {
    if !raw.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Err(HeaderValueError::NotVisibleAscii);
    }
    // All bytes are ASCII, so this cannot fail; map defensively anyway.
    let text = std::str::from_utf8(raw).map_err(|_| HeaderValueError::NotVisibleAscii)?;
    if text.trim_matches(' ') != text {
        return Err(HeaderValueError::SurroundingWhitespace);
    }
    match text.strip_prefix(SENTINEL_START).and_then(|rest| rest.strip_suffix(SENTINEL_END)) {
        Some(payload) => {
            let bytes = STANDARD
                .decode(payload)
                .or_else(|_| STANDARD_NO_PAD.decode(payload))
                .map_err(|_| HeaderValueError::InvalidBase64)?;
            String::from_utf8(bytes).map(std::borrow::Cow::Owned).map_err(|_| HeaderValueError::InvalidUtf8)
        }
        None => Ok(std::borrow::Cow::Borrowed(text)),
    }
}

/// Encodes a value for a SEP-2243 header: as is when it is plain visible ASCII without
/// surrounding whitespace and does not itself look like a sentinel, otherwise in sentinel form.
pub fn encode_value(value: &str) -> String {
    let plain = !value.is_empty()
        && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && value.trim_matches(' ') == value
        && !(value.starts_with(SENTINEL_START) && value.ends_with(SENTINEL_END));
    if plain || value.is_empty() {
        value.to_owned()
    } else {
        format!("{SENTINEL_START}{}{SENTINEL_END}", STANDARD.encode(value.as_bytes()))
    }
}

/// The request's one `Authorization` field split into its scheme and what follows the first
/// space (`None` when there is no space), trimmed of spaces. `Ok(None)` when there is no field;
/// `Err` (a reason, never the value) for several fields or bytes that are not visible ASCII.
/// Shared by the auth layers so they read credentials the same way.
pub fn authorization(headers: &http::HeaderMap) -> Result<Option<(&str, Option<&str>)>, &'static str> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err("more than one Authorization header");
    }
    let value = value.to_str().map_err(|_| "Authorization is not visible ASCII")?;
    Ok(Some(match value.split_once(' ') {
        Some((scheme, rest)) => (scheme, Some(rest.trim_matches(' '))),
        None => (value, None),
    }))
}

/// Whether `token` is a non-empty RFC 6750 `b64token`.
pub fn is_b64token(token: &str) -> bool {
    // one table lookup per byte: a DPoP-bound token of ~1 KiB is checked on every request
    !token.is_empty() && token.bytes().all(|b| B64TOKEN[usize::from(b)])
}

/// The bytes of a `b64token`: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" / "=".
const B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64token_bytes() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
            let text = [b'a', b, b'z'];
            if let Ok(token) = std::str::from_utf8(&text) {
                assert_eq!(is_b64token(token), expected, "byte {b:#04x}");
            }
        }
        assert!(!is_b64token(""));
        assert!(is_b64token("eyJ.abc-_~+/=="));
        assert!(!is_b64token("a b") && !is_b64token("a\"b") && !is_b64token("ä"));
    }

    #[test]
    fn plain_values_pass() {
        assert_eq!(decode_value(b"tools/call").as_deref(), Ok("tools/call"));
        assert_eq!(decode_value(b"file:///a b").as_deref(), Ok("file:///a b"));
    }

    #[test]
    fn sentinel_values_decode() {
        let enc = encode_value("héllo wörld");
        assert!(enc.starts_with("=?base64?"), "{enc}");
        assert_eq!(decode_value(enc.as_bytes()).as_deref(), Ok("héllo wörld"));
        // unpadded is accepted too
        assert_eq!(decode_value(b"=?base64?aMOp?=").as_deref(), Ok("h\u{e9}"));
        // a value that looks like a sentinel is itself encoded
        let tricky = encode_value("=?base64?abc?=");
        assert_ne!(tricky, "=?base64?abc?=");
        assert_eq!(decode_value(tricky.as_bytes()).as_deref(), Ok("=?base64?abc?="));
        assert_eq!(encode_value(" lead"), format!("=?base64?{}?=", STANDARD.encode(" lead")));
    }

    #[test]
    fn bad_values_are_rejected() {
        assert_eq!(decode_value(b"a\x01b"), Err(HeaderValueError::NotVisibleAscii));
        assert_eq!(decode_value("é".as_bytes()), Err(HeaderValueError::NotVisibleAscii));
        assert_eq!(decode_value(b" x"), Err(HeaderValueError::SurroundingWhitespace));
        assert_eq!(decode_value(b"=?base64?!!!?="), Err(HeaderValueError::InvalidBase64));
        assert_eq!(decode_value(b"=?base64?/w==?="), Err(HeaderValueError::InvalidUtf8));
    }
}
