//! DPoP proof validation on arbitrary bytes, through the real DPoP layer (static token
//! validator, clock fixed): the input is sent as the `DPoP` header with a valid bound token, and
//! as the access token with a valid proof for it. Seeds are valid proofs and tokens.
//!
//! Invariants: a request gets through only with a proof signed by the key the token is bound to,
//! for `POST` on the resource, inside the `iat` window, carrying the token's hash; a refusal is
//! `401` with a `DPoP` challenge that parses; neither the proof nor the token is ever echoed.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use mcp_enterprise_core::jwks;
use mcp_enterprise_dpop::{access_token_hash, htu_matches, jwk_thumbprint};
use mcp_enterprise_fuzz::{
    ISSUER, NOW, RESOURCE, access_token, client, dpop_layer, parse_www_authenticate, proof, send,
};
use serde_json::Value;

fn bound_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| access_token(Some(&client().thumbprint())))
}

/// What refusals say for fixed bad inputs: text a credential may coincide with without being
/// echoed (e.g. a "proof" that is a copy of a refusal body).
fn baseline() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let token = bound_token();
        let mut text = String::new();
        for (authorization, proof) in [
            (format!("DPoP {token}"), "x".to_owned()),
            (format!("DPoP {token}"), "x.y.z".to_owned()),
            ("DPoP x".to_owned(), proof("x", "fuzz-jti")),
            ("DPoP x.y.z".to_owned(), proof("x.y.z", "fuzz-jti")),
            ("Bearer x".to_owned(), "x".to_owned()),
        ] {
            let headers = [("authorization", authorization.as_bytes()), ("dpop", proof.as_bytes())];
            if let Some(answer) = send(dpop_layer(), &headers, b"{}") {
                text.push_str(&answer.text());
            }
        }
        if let Some(answer) = send(dpop_layer(), &[], b"{}") {
            text.push_str(&answer.text());
        }
        text
    })
}

fn check_refusal(answer: &mcp_enterprise_fuzz::Answer, secret: &[u8]) {
    assert_eq!(answer.status, http::StatusCode::UNAUTHORIZED, "{answer:?}");
    let challenges: Vec<_> = answer.headers.get_all("www-authenticate").iter().collect();
    assert!(!challenges.is_empty(), "a refusal carries a challenge");
    for value in challenges {
        let text = value.to_str().expect("a challenge is visible ASCII");
        let parsed = parse_www_authenticate(text).expect("a challenge parses");
        assert!(parsed.iter().any(|(scheme, _)| scheme == "DPoP"), "{text}");
    }
    // no part of the credential comes back (unless refusals of fixed inputs say the same)
    let text = answer.text();
    let secret = String::from_utf8_lossy(secret);
    for part in secret.split('.').filter(|p| p.len() >= 16) {
        if !baseline().contains(part) {
            assert!(!text.contains(part), "the response echoes a credential");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let layer = dpop_layer();
    let token = bound_token();
    let authorization = format!("DPoP {token}");

    // the input as the proof
    if let Some(answer) = send(layer, &[("authorization", authorization.as_bytes()), ("dpop", data)], b"{}") {
        match &answer.principal {
            Some(principal) => {
                assert_eq!(answer.status, http::StatusCode::OK);
                assert_eq!(principal.issuer(), ISSUER);
                let proof = std::str::from_utf8(data).expect("an accepted proof is ASCII");
                let parts = jwks::split_compact(proof).expect("an accepted proof is a compact JWS");
                let header = jwks::decode_object(parts.header, "b64", "obj").expect("header");
                let claims = jwks::decode_object(parts.payload, "b64", "obj").expect("claims");
                assert!(header.get("typ").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")));
                assert!(!header.contains_key("crit"));
                let jwk = header.get("jwk").expect("jwk");
                assert_eq!(jwk_thumbprint(jwk), Some(client().thumbprint()), "accepted a proof by another key");
                let sig = URL_SAFE_NO_PAD.decode(parts.signature).expect("signature");
                let x = URL_SAFE_NO_PAD.decode(client().jwk()["x"].as_str().unwrap_or_default()).unwrap_or_default();
                aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, x)
                    .verify(parts.signing_input.as_bytes(), &sig)
                    .expect("an accepted proof verifies with the bound key");
                assert_eq!(claims.get("htm").and_then(Value::as_str), Some("POST"));
                assert!(htu_matches(claims.get("htu").and_then(Value::as_str).unwrap_or(""), RESOURCE));
                let iat = jwks::numeric_date(&claims, "iat").expect("iat").expect("iat");
                assert!(iat.abs_diff(NOW) <= 300, "accepted a proof outside the iat window");
                assert_eq!(claims.get("ath").and_then(Value::as_str), Some(access_token_hash(token).as_str()));
                assert!(claims.get("jti").and_then(Value::as_str).is_some_and(|j| !j.is_empty()));
            }
            None => check_refusal(&answer, data),
        }
    }

    // the input as the access token, with a valid proof for it
    let Ok(text) = std::str::from_utf8(data) else { return };
    let authorization = format!("DPoP {text}");
    let proof = proof(text, "fuzz-jti");
    if let Some(answer) = send(layer, &[("authorization", authorization.as_bytes()), ("dpop", proof.as_bytes())], b"{}")
    {
        match &answer.principal {
            Some(_) => {
                let parts = jwks::split_compact(text.trim_matches(' ')).expect("an accepted token is a JWT");
                let claims = jwks::decode_object(parts.payload, "b64", "obj").expect("claims");
                assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISSUER));
                assert_eq!(
                    claims.get("cnf").and_then(|c| c.get("jkt")).and_then(Value::as_str),
                    Some(client().thumbprint().as_str()),
                    "accepted a token bound to another key"
                );
            }
            None => check_refusal(&answer, data),
        }
    }
});
