//! Structure-aware JWT fuzzing of the SSO layer's verify path (static key): tokens signed for
//! real, with each header field and claim chosen from valid, hostile and arbitrary values.
//!
//! Oracle: the token is accepted exactly when every choice is a valid one, and then the principal
//! and key binding are the token's own; header fields the layer must ignore (`jku`, `x5u`, an
//! embedded `jwk`) change nothing.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use mcp_enterprise_core::jwks::MAX_NUMERIC_DATE;
use mcp_enterprise_fuzz::{IDP_KID, ISSUER, NOW, RESOURCE, attacker, b64, block_on, idp, sso_layer};
use serde_json::{Map, Value, json};

#[derive(Debug, Arbitrary)]
enum Alg {
    EdDsa,
    Es256,
    Hs256,
    None,
    NoneUpper,
    Other(String),
    Missing,
}

#[derive(Debug, Arbitrary)]
enum Typ {
    AtJwt,
    Jwt,
    Missing,
    DpopJwt,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Kid {
    Right,
    Missing,
    Other(String),
    NotAString,
}

#[derive(Debug, Arbitrary)]
enum Iss {
    Trusted,
    TrailingSlash,
    Uppercase,
    Missing,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Aud {
    Resource,
    InList(Vec<String>),
    Other(String),
    Missing,
    Number,
}

#[derive(Debug, Arbitrary)]
enum Date {
    Offset(i32),
    Missing,
    Negative,
    Huge,
    Float(f64),
    Text,
}

#[derive(Debug, Arbitrary)]
enum Signer {
    Idp,
    Attacker,
    Unsigned,
}

#[derive(Debug, Arbitrary)]
struct Input {
    alg: Alg,
    typ: Typ,
    kid: Kid,
    crit: bool,
    injected: bool,
    iss: Iss,
    aud: Aud,
    exp: Date,
    nbf: Date,
    iat: Date,
    sub: Option<String>,
    jkt: Option<String>,
    extra: Vec<(String, String)>,
    signer: Signer,
    flip: Option<(u16, u8)>,
}

fn put(map: &mut Map<String, Value>, key: &str, value: Value) {
    map.insert(key.to_owned(), value);
}

/// The date value and whether the layer must accept it (`lo..=hi`: offsets from now allowed).
fn date(d: &Date, lo: i64, hi: i64) -> (Option<Value>, bool) {
    match d {
        Date::Offset(o) => {
            let at = NOW as i64 + i64::from(*o);
            (Some(json!(at)), at >= 0 && (lo..=hi).contains(&i64::from(*o)))
        }
        Date::Missing => (None, true),
        Date::Negative => (Some(json!(-1)), false),
        // a date past 9999-12-31 is malformed (it would otherwise saturate into "never expires")
        Date::Huge => (Some(json!(1e300)), false),
        Date::Float(f) => {
            let hi = if hi == i64::MAX { i128::MAX } else { i128::from(hi) };
            let ok = f.is_finite() && *f >= 0.0 && *f <= MAX_NUMERIC_DATE as f64 && {
                let secs = i128::from(*f as u64) - i128::from(NOW);
                (i128::from(lo)..=hi).contains(&secs)
            };
            (if f.is_finite() { Some(json!(f)) } else { None }, ok || !f.is_finite())
        }
        Date::Text => (Some(json!("1800000000")), false),
    }
}

fn token(input: &Input, inject: bool) -> (String, bool) {
    let mut ok = true;
    let mut header = Map::new();
    match &input.alg {
        Alg::EdDsa => put(&mut header, "alg", json!("EdDSA")),
        Alg::Es256 => {
            ok = false;
            put(&mut header, "alg", json!("ES256"));
        }
        Alg::Hs256 => {
            ok = false;
            put(&mut header, "alg", json!("HS256"));
        }
        Alg::None => {
            ok = false;
            put(&mut header, "alg", json!("none"));
        }
        Alg::NoneUpper => {
            ok = false;
            put(&mut header, "alg", json!("NONE"));
        }
        Alg::Other(a) => {
            ok &= a == "EdDSA";
            put(&mut header, "alg", json!(a));
        }
        Alg::Missing => ok = false,
    }
    match &input.typ {
        Typ::AtJwt => put(&mut header, "typ", json!("at+jwt")),
        Typ::Jwt => put(&mut header, "typ", json!("JWT")),
        Typ::Missing => {}
        Typ::DpopJwt => {
            ok = false;
            put(&mut header, "typ", json!("dpop+jwt"));
        }
        Typ::Other(t) => {
            ok &=
                matches!(t.to_ascii_lowercase().as_str(), "at+jwt" | "application/at+jwt" | "jwt" | "application/jwt");
            put(&mut header, "typ", json!(t));
        }
    }
    match &input.kid {
        Kid::Right => put(&mut header, "kid", json!(IDP_KID)),
        Kid::Missing => {}
        Kid::Other(k) => {
            ok &= k == IDP_KID;
            put(&mut header, "kid", json!(k));
        }
        Kid::NotAString => put(&mut header, "kid", json!(7)),
    }
    if input.crit {
        ok = false;
        put(&mut header, "crit", json!(["exp"]));
    }
    if inject {
        put(&mut header, "jku", json!("https://attacker.example/jwks"));
        put(&mut header, "x5u", json!("https://attacker.example/cert"));
        put(&mut header, "jwk", attacker().jwk().clone());
    }

    let mut claims = Map::new();
    for (k, v) in &input.extra {
        if !matches!(k.as_str(), "iss" | "aud" | "exp" | "nbf" | "iat" | "sub" | "cnf") {
            put(&mut claims, k, json!(v));
        }
    }
    match &input.iss {
        Iss::Trusted => put(&mut claims, "iss", json!(ISSUER)),
        Iss::TrailingSlash => {
            ok = false;
            put(&mut claims, "iss", json!(format!("{ISSUER}/")));
        }
        Iss::Uppercase => {
            ok = false;
            put(&mut claims, "iss", json!(ISSUER.to_uppercase()));
        }
        Iss::Missing => {
            ok = false;
        }
        Iss::Other(i) => {
            ok &= i == ISSUER;
            put(&mut claims, "iss", json!(i));
        }
    }
    match &input.aud {
        Aud::Resource => put(&mut claims, "aud", json!(RESOURCE)),
        Aud::InList(list) => {
            let mut list = list.clone();
            list.push(RESOURCE.into());
            put(&mut claims, "aud", json!(list));
        }
        Aud::Other(a) => {
            ok &= a == RESOURCE;
            put(&mut claims, "aud", json!(a));
        }
        Aud::Missing => {
            ok = false;
        }
        Aud::Number => {
            ok = false;
            put(&mut claims, "aud", json!(1));
        }
    }
    // 60 s leeway: exp must be after now - 60; nbf and iat no later than now + 60
    for (name, d, lo, hi, required) in [
        ("exp", &input.exp, -59, i64::MAX, true),
        ("nbf", &input.nbf, i64::MIN, 60, false),
        ("iat", &input.iat, i64::MIN, 60, false),
    ] {
        let (value, fine) = date(d, lo, hi);
        ok &= fine;
        match value {
            Some(v) => put(&mut claims, name, v),
            None => {
                ok &= !required;
            }
        }
    }
    match &input.sub {
        Some(s) => {
            // an empty subject names nobody: refused
            ok &= !s.is_empty();
            put(&mut claims, "sub", json!(s));
        }
        None => {
            ok = false;
        }
    }
    if let Some(j) = &input.jkt {
        put(&mut claims, "cnf", json!({"jkt": j}));
    }

    let (header, claims) = (Value::Object(header), Value::Object(claims));
    let mut token = match input.signer {
        Signer::Idp => idp().sign(&header, &claims),
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
        let mut bytes = token.into_bytes();
        let i = usize::from(at) % bytes.len();
        let before = bytes[i];
        bytes[i] ^= bits;
        if bytes[i] != before {
            // any changed byte breaks the signature, the encoding or the structure
            ok = false;
        }
        token = String::from_utf8_lossy(&bytes).into_owned();
    }
    // the layer's default size limit
    ok &= token.len() <= 16 * 1024;
    (token, ok)
}

fuzz_target!(|input: Input| {
    let layer = sso_layer();
    let (plain, ok) = token(&input, false);
    let result = block_on(layer.validate_for_dpop(&plain));
    assert_eq!(result.is_ok(), ok, "decision differs from the oracle: {result:?} for {input:?}");
    if let Ok(valid) = &result {
        assert_eq!(valid.principal.issuer(), ISSUER);
        assert_eq!(Some(valid.principal.subject()), input.sub.as_deref());
        assert_eq!(valid.jkt, input.jkt);
    }
    if input.injected {
        let (injected, _) = token(&input, true);
        let again = block_on(layer.validate_for_dpop(&injected));
        assert_eq!(again.is_ok(), ok, "jku/x5u/jwk changed the decision: {again:?} for {input:?}");
    }
});
