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

/// The error of [`decode_object`] for a JSON object with a member name twice.
pub const DUPLICATE_MEMBER: &str = "duplicate member name in a JOSE header or claims set";

/// Decodes a base64url part holding a JSON object; `not_base64` / `not_object` name the failure.
///
/// A member name repeated in any object is refused ([`DUPLICATE_MEMBER`]): RFC 7515/7519 let a
/// parser take the last one, but two parsers that pick differently (first wins, last wins) would
/// judge the same token differently, so no ambiguous header or claims set is accepted.
pub fn decode_object(
    part: &str,
    not_base64: &'static str,
    not_object: &'static str,
) -> Result<Map<String, Value>, &'static str> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| not_base64)?;
    match crate::json::unambiguous_object(&bytes) {
        Ok(map) => Ok(map),
        Err(crate::json::ObjectError::DuplicateMember) => Err(DUPLICATE_MEMBER),
        Err(_) => Err(not_object),
    }
}

/// The largest NumericDate accepted: 9999-12-31T23:59:59Z. A date beyond it (`exp: 1e300`, a
/// number past `u64`) would otherwise saturate into "never expires".
pub const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// A NumericDate claim in whole seconds: `Ok(None)` when absent, `Err(())` when it is not a
/// non-negative finite number up to [`MAX_NUMERIC_DATE`].
#[allow(clippy::result_unit_err)]
pub fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(f) if f.is_finite() && f >= 0.0 && f <= MAX_NUMERIC_DATE as f64 => Ok(Some(f as u64)),
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
    fn duplicate_member_names_are_refused_at_any_depth() {
        let enc = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let decode = |s: &str| decode_object(&enc(s), "b64", "obj");
        assert_eq!(decode(r#"{"alg":"ES256","alg":"none"}"#), Err(DUPLICATE_MEMBER));
        assert_eq!(decode(r#"{"cnf":{"jkt":"a","jkt":"b"}}"#), Err(DUPLICATE_MEMBER));
        assert_eq!(decode(r#"{"a":[{"x":1,"x":2}]}"#), Err(DUPLICATE_MEMBER));
        let ok = decode(r#"{"a":[1,-2,3.5,true,null,"s"],"b":{"c":18446744073709551616}}"#).expect("valid");
        assert_eq!(ok["a"], json!([1, -2, 3.5, true, null, "s"]));
        assert!(ok["b"]["c"].is_f64());
        assert_eq!(decode("[1]"), Err("obj"));
        assert_eq!(decode(r#"{"a":1"#), Err("obj"));
        assert_eq!(decode_object("***", "b64", "obj"), Err("b64"));
    }

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
        let claims = json!({"a": 10, "b": 10.7, "c": -1, "d": "10", "max": MAX_NUMERIC_DATE,
            "e": MAX_NUMERIC_DATE + 1, "f": 1e300, "g": 18446744073709551615u64});
        let claims = claims.as_object().expect("object");
        assert_eq!(numeric_date(claims, "a"), Ok(Some(10)));
        assert_eq!(numeric_date(claims, "b"), Ok(Some(10)));
        assert_eq!(numeric_date(claims, "c"), Err(()));
        assert_eq!(numeric_date(claims, "d"), Err(()));
        assert_eq!(numeric_date(claims, "missing"), Ok(None));
        assert_eq!(numeric_date(claims, "max"), Ok(Some(MAX_NUMERIC_DATE)));
        for beyond in ["e", "f", "g"] {
            assert_eq!(numeric_date(claims, beyond), Err(()), "{beyond}: past year 9999");
        }
        assert_eq!(sha256(b"abc")[..4], [0xba, 0x78, 0x16, 0xbf]);
    }
}
