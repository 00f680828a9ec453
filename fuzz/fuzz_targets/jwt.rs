//! JWT/JWS parsing and header handling on arbitrary bytes: core's compact-JWS reader
//! (`split_compact`, `decode_object`, `numeric_date`), JWK Set parsing, and the SSO layer's
//! verify path with a static key. Seeds are real tokens (valid for the fixture issuer).
//!
//! Invariants: the split parts put back together are the input; a key parsed from any JWK Set
//! never fits HMAC; a token the SSO layer accepts is signed by the trusted key with an allowed
//! algorithm, comes from the trusted issuer, is meant for the resource, is inside its lifetime,
//! and the principal and key binding are the token's own claims.
#![no_main]

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use mcp_enterprise_core::jwks::{self, Algorithm, JwksFormat};
use mcp_enterprise_fuzz::{ISSUER, NOW, RESOURCE, block_on, idp, sso_layer};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    for format in [JwksFormat::Jwks, JwksFormat::SpiffeBundle] {
        if let Ok(keys) = jwks::parse_jwks_as(data, format) {
            for key in keys {
                for hmac in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                    assert!(!key.fits(hmac), "a published key must never verify HMAC");
                    assert!(key.verify(hmac, b"a.b", "c").is_err());
                }
            }
        }
    }
    let Ok(token) = std::str::from_utf8(data) else { return };

    match jwks::split_compact(token) {
        Ok(parts) => {
            assert_eq!(format!("{}.{}.{}", parts.header, parts.payload, parts.signature), token);
            assert_eq!(parts.signing_input, format!("{}.{}", parts.header, parts.payload));
            for part in [parts.header, parts.payload, parts.signature] {
                assert!(!part.is_empty() && !part.contains('.'));
            }
            if let Ok(claims) = jwks::decode_object(parts.payload, "b64", "obj") {
                for name in ["exp", "nbf", "iat"] {
                    match jwks::numeric_date(&claims, name) {
                        Ok(None) => assert!(!claims.contains_key(name)),
                        Ok(Some(_)) => assert!(
                            claims[name].as_f64().is_some_and(|f| f >= 0.0 && f <= jwks::MAX_NUMERIC_DATE as f64)
                        ),
                        // past 9999-12-31 is malformed (it would saturate into "never expires")
                        Err(()) => assert!(
                            !claims[name]
                                .as_f64()
                                .is_some_and(|f| { f.is_finite() && f >= 0.0 && f <= jwks::MAX_NUMERIC_DATE as f64 })
                        ),
                    }
                }
            }
        }
        Err(_) => {
            let parts: Vec<&str> = token.split('.').collect();
            assert!(parts.len() != 3 || parts.iter().any(|p| p.is_empty()));
        }
    }

    let layer = sso_layer();
    if let Ok(valid) = block_on(layer.validate_for_dpop(token)) {
        let parts = jwks::split_compact(token).expect("an accepted token is a compact JWS");
        let header = jwks::decode_object(parts.header, "b64", "obj").expect("accepted header");
        let claims = jwks::decode_object(parts.payload, "b64", "obj").expect("accepted payload");
        assert_eq!(header.get("alg").and_then(Value::as_str), Some("EdDSA"));
        assert!(!header.contains_key("crit"));
        let sig = URL_SAFE_NO_PAD.decode(parts.signature).expect("accepted signature is base64url");
        UnparsedPublicKey::new(&ED25519, idp_public_key())
            .verify(parts.signing_input.as_bytes(), &sig)
            .expect("an accepted token is signed by the trusted key");
        assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISSUER));
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == RESOURCE,
            Some(Value::Array(list)) => list.iter().any(|a| a == RESOURCE),
            _ => false,
        };
        assert!(aud_ok, "accepted a token for another audience");
        let exp = jwks::numeric_date(&claims, "exp").expect("valid exp").expect("exp required");
        assert!(NOW < exp + 60, "accepted an expired token");
        assert_eq!(valid.principal.issuer(), ISSUER);
        assert_eq!(Some(valid.principal.subject()), claims.get("sub").and_then(Value::as_str));
        assert_eq!(valid.jkt.as_deref(), claims.get("cnf").and_then(|c| c.get("jkt")).and_then(Value::as_str));
    }
});

fn idp_public_key() -> Vec<u8> {
    let x = idp().jwk()["x"].as_str().unwrap_or_default();
    URL_SAFE_NO_PAD.decode(x).unwrap_or_default()
}
