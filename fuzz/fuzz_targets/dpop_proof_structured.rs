//! Structure-aware DPoP fuzzing: proofs signed for real, with each header field and claim chosen
//! from valid, hostile and arbitrary values, sent through the real DPoP layer with a token bound
//! to the client key.
//!
//! Oracle: the request gets through exactly when every choice is a valid one; every refusal is
//! `401` with a parsable `DPoP` challenge naming `invalid_dpop_proof` or `invalid_token`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use mcp_enterprise_dpop::access_token_hash;
use mcp_enterprise_fuzz::{
    NOW, ORIGIN, RESOURCE, access_token, attacker, b64, client, dpop_layer, idp, parse_www_authenticate, send,
};
use serde_json::{Map, Value, json};

#[derive(Debug, Arbitrary)]
enum Typ {
    DpopJwt,
    Uppercase,
    AtJwt,
    Missing,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Alg {
    EdDsa,
    Ed25519,
    Es256,
    Hs256,
    None,
    Missing,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Jwk {
    Client,
    Attacker,
    WithPrivatePart,
    Symmetric,
    Missing,
    NotAnObject,
}

#[derive(Debug, Arbitrary)]
enum Htm {
    Post,
    Get,
    Lowercase,
    Missing,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Htu {
    Resource,
    WithQuery(String),
    UppercaseHost,
    DefaultPort,
    TrailingSlash,
    OtherPath(String),
    OtherHost,
    Missing,
}

#[derive(Debug, Arbitrary)]
enum Iat {
    Offset(i16),
    Missing,
    Negative,
    Text,
    Float(f64),
}

#[derive(Debug, Arbitrary)]
enum Ath {
    Right,
    OtherToken,
    Missing,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Signer {
    Client,
    Attacker,
    Unsigned,
}

#[derive(Debug, Arbitrary)]
struct Input {
    typ: Typ,
    alg: Alg,
    jwk: Jwk,
    crit: bool,
    jti: Option<String>,
    htm: Htm,
    htu: Htu,
    iat: Iat,
    ath: Ath,
    nonce: Option<Option<String>>,
    extra: Vec<(String, String)>,
    signer: Signer,
    token_bound_elsewhere: bool,
    flip: Option<(u16, u8)>,
}

fn put(map: &mut Map<String, Value>, key: &str, value: Value) {
    map.insert(key.to_owned(), value);
}

fn proof(input: &Input, token: &str) -> (String, bool) {
    let mut ok = true;
    let mut header = Map::new();
    match &input.typ {
        Typ::DpopJwt => put(&mut header, "typ", json!("dpop+jwt")),
        Typ::Uppercase => put(&mut header, "typ", json!("DPoP+JWT")),
        Typ::AtJwt => {
            ok = false;
            put(&mut header, "typ", json!("at+jwt"));
        }
        Typ::Missing => ok = false,
        Typ::Other(t) => {
            ok &= t.eq_ignore_ascii_case("dpop+jwt");
            put(&mut header, "typ", json!(t));
        }
    }
    match &input.alg {
        Alg::EdDsa => put(&mut header, "alg", json!("EdDSA")),
        Alg::Ed25519 => put(&mut header, "alg", json!("Ed25519")),
        Alg::Es256 | Alg::Hs256 | Alg::None => {
            ok = false;
            let name = match input.alg {
                Alg::Es256 => "ES256",
                Alg::Hs256 => "HS256",
                _ => "none",
            };
            put(&mut header, "alg", json!(name));
        }
        Alg::Missing => ok = false,
        Alg::Other(a) => {
            ok &= a == "EdDSA" || a == "Ed25519";
            put(&mut header, "alg", json!(a));
        }
    }
    match input.jwk {
        Jwk::Client => put(&mut header, "jwk", client().jwk().clone()),
        Jwk::Attacker => {
            ok = false;
            put(&mut header, "jwk", attacker().jwk().clone());
        }
        Jwk::WithPrivatePart => {
            ok = false;
            let mut jwk = client().jwk().clone();
            jwk["d"] = json!(b64(&[9; 32]));
            put(&mut header, "jwk", jwk);
        }
        Jwk::Symmetric => {
            ok = false;
            put(&mut header, "jwk", json!({"kty": "oct", "k": b64(b"secret")}));
        }
        Jwk::Missing => ok = false,
        Jwk::NotAnObject => {
            ok = false;
            put(&mut header, "jwk", json!("jwk"));
        }
    }
    if input.crit {
        ok = false;
        put(&mut header, "crit", json!(["htm"]));
    }

    let mut claims = Map::new();
    for (k, v) in &input.extra {
        if !matches!(k.as_str(), "jti" | "htm" | "htu" | "iat" | "ath" | "nonce") {
            put(&mut claims, k, json!(v));
        }
    }
    match &input.jti {
        Some(j) => {
            ok &= !j.is_empty() && j.len() <= 256;
            put(&mut claims, "jti", json!(j));
        }
        None => ok = false,
    }
    match &input.htm {
        Htm::Post => put(&mut claims, "htm", json!("POST")),
        Htm::Get => {
            ok = false;
            put(&mut claims, "htm", json!("GET"));
        }
        Htm::Lowercase => {
            ok = false;
            put(&mut claims, "htm", json!("post"));
        }
        Htm::Missing => ok = false,
        Htm::Other(m) => {
            ok &= m == "POST";
            put(&mut claims, "htm", json!(m));
        }
    }
    let htu = match &input.htu {
        Htu::Resource => Some(RESOURCE.to_owned()),
        Htu::WithQuery(q) => {
            // query and fragment are ignored, but the text must still be a URI
            ok &= format!("{RESOURCE}?{q}").is_ascii()
                && !q.bytes().any(|b| b.is_ascii_control() || b == b' ')
                && format!("{RESOURCE}?{q}").split('#').next().is_some_and(|u| u.parse::<http::Uri>().is_ok());
            Some(format!("{RESOURCE}?{q}"))
        }
        Htu::UppercaseHost => Some(RESOURCE.replace("mcp.example.com", "MCP.Example.COM")),
        Htu::DefaultPort => Some(RESOURCE.replace("example.com", "example.com:443")),
        Htu::TrailingSlash => Some(format!("{RESOURCE}/")),
        Htu::OtherPath(p) => {
            ok &= mcp_enterprise_dpop::htu_matches(&format!("{ORIGIN}/{p}"), RESOURCE);
            Some(format!("{ORIGIN}/{p}"))
        }
        Htu::OtherHost => {
            ok = false;
            Some("https://evil.example.com/mcp".to_owned())
        }
        Htu::Missing => {
            ok = false;
            None
        }
    };
    if let Some(htu) = htu {
        put(&mut claims, "htu", json!(htu));
    }
    match &input.iat {
        Iat::Offset(o) => {
            ok &= o.unsigned_abs() <= 300;
            put(&mut claims, "iat", json!(NOW as i64 + i64::from(*o)));
        }
        Iat::Missing => ok = false,
        Iat::Negative => {
            ok = false;
            put(&mut claims, "iat", json!(-1));
        }
        Iat::Text => {
            ok = false;
            put(&mut claims, "iat", json!(NOW.to_string()));
        }
        Iat::Float(f) => {
            ok &= f.is_finite() && *f >= 0.0 && (*f as u64).abs_diff(NOW) <= 300;
            put(&mut claims, "iat", json!(f));
        }
    }
    match &input.ath {
        Ath::Right => put(&mut claims, "ath", json!(access_token_hash(token))),
        Ath::OtherToken => {
            ok = false;
            put(&mut claims, "ath", json!(access_token_hash("another token")));
        }
        Ath::Missing => ok = false,
        Ath::Other(a) => {
            ok &= *a == access_token_hash(token);
            put(&mut claims, "ath", json!(a));
        }
    }
    match &input.nonce {
        None => {}
        // nonces are off: a string nonce is ignored, anything else is malformed
        Some(Some(n)) => put(&mut claims, "nonce", json!(n)),
        Some(None) => {
            ok = false;
            put(&mut claims, "nonce", json!(1));
        }
    }

    let (header, claims) = (Value::Object(header), Value::Object(claims));
    let mut proof = match input.signer {
        Signer::Client => client().sign(&header, &claims),
        Signer::Attacker => {
            ok = false;
            attacker().sign(&header, &claims)
        }
        Signer::Unsigned => {
            ok = false;
            format!("{}.{}.", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()))
        }
    };
    if let Some((at, bits)) = input.flip {
        let mut bytes = proof.into_bytes();
        let i = usize::from(at) % bytes.len();
        let before = bytes[i];
        bytes[i] ^= bits;
        ok &= bytes[i] == before;
        proof = String::from_utf8_lossy(&bytes).into_owned();
    }
    // the layer's default size limit; one header value, so no commas
    ok &= proof.len() <= 4096 && !proof.contains(',');
    (proof, ok)
}

fn tokens() -> &'static (String, String) {
    static TOKENS: OnceLock<(String, String)> = OnceLock::new();
    TOKENS.get_or_init(|| (access_token(Some(&client().thumbprint())), access_token(Some(&idp().thumbprint()))))
}

fuzz_target!(|input: Input| {
    let (bound, elsewhere) = tokens();
    let (token, mut ok) = if input.token_bound_elsewhere { (elsewhere, false) } else { (bound, true) };
    let (proof, valid) = proof(&input, token);
    ok &= valid;
    let authorization = format!("DPoP {token}");
    let Some(answer) =
        send(dpop_layer(), &[("authorization", authorization.as_bytes()), ("dpop", proof.as_bytes())], b"{}")
    else {
        // not sendable as a header value: HTTP itself keeps it out
        return;
    };
    assert_eq!(answer.principal.is_some(), ok, "decision differs from the oracle: {answer:?} for {input:?}");
    if ok {
        assert_eq!(answer.status, http::StatusCode::OK);
    } else {
        assert_eq!(answer.status, http::StatusCode::UNAUTHORIZED, "{answer:?}");
        let value = answer.headers.get("www-authenticate").expect("challenge").to_str().expect("ASCII");
        let parsed = parse_www_authenticate(value).expect("the challenge parses");
        let (scheme, params) = &parsed[0];
        assert_eq!(scheme, "DPoP");
        let error = params.iter().find(|(n, _)| n == "error").map(|(_, v)| v.as_str());
        assert!(matches!(error, Some("invalid_dpop_proof" | "invalid_token")), "{value}");
        assert!(!answer.text().contains(&proof), "the response echoes the proof");
        assert!(!answer.text().contains(token.as_str()), "the response echoes the token");
    }
});
