//! Reading a compact JWS without trusting it: split, decode the JSON parts, read NumericDate
//! claims, fingerprint. Every error is a short static reason that never quotes the token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// The three parts of a compact JWS (`header.payload.signature`, all non-empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactParts<'a> {
    /// The base64url protected header.
    pub header: &'a str,
    /// The base64url payload.
    pub payload: &'a str,
    /// The base64url signature.
    pub signature: &'a str,
    /// `header.payload`: the bytes the signature covers.
    pub signing_input: &'a str,
}

/// Splits a compact JWS into its three non-empty parts.
pub fn split_compact(token: &str) -> Result<CompactParts<'_>, &'static str> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS");
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err("empty JWS part");
    }
    Ok(CompactParts { header, payload, signature, signing_input: &token[..header.len() + 1 + payload.len()] })
}

/// Decodes a base64url part holding a JSON object; `not_base64` / `not_object` name the failure.
pub fn decode_object(
    part: &str,
    not_base64: &'static str,
    not_object: &'static str,
) -> Result<Map<String, Value>, &'static str> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| not_base64)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(not_object),
    }
}

/// A NumericDate claim in whole seconds: `Ok(None)` when absent, `Err(())` when it is not a
/// non-negative finite number.
#[allow(clippy::result_unit_err)]
pub fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f as u64)),
            _ => Err(()),
        },
    }
}

/// SHA-256 of `bytes` (for token fingerprints and replay keys).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn splitting_and_decoding() {
        let parts = split_compact("aGVhZA.cGF5.c2ln").expect("three parts");
        assert_eq!((parts.header, parts.payload, parts.signature), ("aGVhZA", "cGF5", "c2ln"));
        assert_eq!(parts.signing_input, "aGVhZA.cGF5");
        assert_eq!(split_compact("a.b"), Err("not a compact JWS"));
        assert_eq!(split_compact("a.b.c.d"), Err("not a compact JWS"));
        assert_eq!(split_compact("a..c"), Err("empty JWS part"));
        let obj = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256"}"#);
        assert_eq!(decode_object(&obj, "b64", "obj").expect("object")["alg"], json!("ES256"));
        assert_eq!(decode_object("!!", "b64", "obj"), Err("b64"));
        assert_eq!(decode_object(&URL_SAFE_NO_PAD.encode("[1]"), "b64", "obj"), Err("obj"));
    }

    #[test]
    fn numeric_dates() {
        let claims = json!({"a": 10, "b": 10.7, "c": -1, "d": "10"});
        let claims = claims.as_object().expect("object");
        assert_eq!(numeric_date(claims, "a"), Ok(Some(10)));
        assert_eq!(numeric_date(claims, "b"), Ok(Some(10)));
        assert_eq!(numeric_date(claims, "c"), Err(()));
        assert_eq!(numeric_date(claims, "d"), Err(()));
        assert_eq!(numeric_date(claims, "missing"), Ok(None));
        assert_eq!(sha256(b"abc")[..4], [0xba, 0x78, 0x16, 0xbf]);
    }
}
