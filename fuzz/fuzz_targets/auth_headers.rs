//! `Authorization` parsing (core `headers::authorization`, `is_b64token`) and the SSO and DPoP
//! layers' handling of arbitrary `Authorization` fields; `WWW-Authenticate` challenges (core
//! `challenge`) built from arbitrary parameter text.
//!
//! Invariants: the parsed scheme and credentials are the field's own text; a refusal is `401`/`403`
//! with challenges an independent RFC 9110 reader parses, never echoing the credentials; a
//! challenge is always a valid header value whose parameters read back as the sanitised input.
#![no_main]

use http::HeaderMap;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use mcp_enterprise_core::challenge::{self, is_scope_token};
use mcp_enterprise_core::headers::{authorization, is_b64token};
use mcp_enterprise_core::{AuthErrorCode, Challenge};
use mcp_enterprise_fuzz::{Answer, dpop_layer, parse_www_authenticate, send, sso_layer};

#[derive(Debug, Arbitrary)]
struct Params {
    dpop: bool,
    realm: Option<String>,
    resource_metadata: Option<String>,
    scopes: Vec<String>,
    algs: Vec<String>,
    code: Option<u8>,
    description: Option<String>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    fields: Vec<Vec<u8>>,
    challenges: Vec<Params>,
}

const CODES: [AuthErrorCode; 5] = [
    AuthErrorCode::InvalidRequest,
    AuthErrorCode::InvalidToken,
    AuthErrorCode::InsufficientScope,
    AuthErrorCode::InvalidDpopProof,
    AuthErrorCode::UseDpopNonce,
];

fn check_authorization(fields: &[Vec<u8>]) {
    let mut headers = HeaderMap::new();
    for field in fields {
        let Ok(value) = http::HeaderValue::from_bytes(field) else { return };
        headers.append(http::header::AUTHORIZATION, value);
    }
    match authorization(&headers) {
        Ok(None) => assert!(fields.is_empty()),
        Ok(Some((scheme, credentials))) => {
            assert_eq!(fields.len(), 1);
            let text = std::str::from_utf8(&fields[0]).expect("parsed fields are ASCII");
            match credentials {
                None => assert_eq!(scheme, text),
                Some(rest) => {
                    let (s, raw) = text.split_once(' ').expect("a space separates the credentials");
                    assert_eq!(scheme, s);
                    assert_eq!(rest, raw.trim_matches(' '));
                }
            }
            assert!(!scheme.contains(' '));
            if let Some(rest) = credentials
                && is_b64token(rest)
            {
                assert!(rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)));
            }
        }
        Err(_) => {
            assert!(fields.len() > 1 || headers.get(http::header::AUTHORIZATION).is_some_and(|v| v.to_str().is_err()))
        }
    }
}

/// What the layers' refusals say for fixed bad `Authorization` fields: text credentials may
/// coincide with without being echoed (e.g. credentials copied from a refusal body).
fn baseline() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let mut text = String::new();
        let fields: [&[&[u8]]; 7] = [
            &[],
            &[b"Bearer x"],
            &[b"Bearer x y"],
            &[b"Bearer"],
            &[b"DPoP x"],
            &[b"Basic x"],
            &[b"Bearer x", b"Bearer y"],
        ];
        for set in fields {
            let headers: Vec<(&str, &[u8])> = set.iter().map(|f| ("authorization", *f)).collect();
            for answer in
                [send(sso_layer(), &headers, b"{}"), send(dpop_layer(), &headers, b"{}")].into_iter().flatten()
            {
                text.push_str(&answer.text());
            }
        }
        text
    })
}

fn check_refusal(answer: &Answer, fields: &[Vec<u8>], scheme: &str) {
    if answer.reached {
        assert!(answer.principal.is_some(), "let through without a principal");
        assert_eq!(answer.status, http::StatusCode::OK);
        return;
    }
    // RFC 6750 §3.1: 400 invalid_request (malformed), 401 (missing or invalid), 403 (scope)
    assert!(
        matches!(
            answer.status,
            http::StatusCode::BAD_REQUEST | http::StatusCode::UNAUTHORIZED | http::StatusCode::FORBIDDEN
        ),
        "{answer:?}"
    );
    let values: Vec<_> = answer.headers.get_all("www-authenticate").iter().collect();
    assert!(!values.is_empty(), "a refusal carries a challenge");
    for value in values {
        let text = value.to_str().expect("a challenge is visible ASCII");
        let parsed = parse_www_authenticate(text).unwrap_or_else(|| panic!("challenge does not parse: {text}"));
        assert!(parsed.iter().any(|(s, _)| s == scheme), "{text}");
        if answer.status == http::StatusCode::BAD_REQUEST {
            let error = parsed.iter().flat_map(|(_, p)| p).find(|(n, _)| n == "error").map(|(_, v)| v.as_str());
            assert_eq!(error, Some("invalid_request"), "{text}");
        }
    }
    // the credentials never come back (unless a refusal without any carries the same text)
    let (text, base) = (answer.text(), baseline());
    for field in fields {
        let field = String::from_utf8_lossy(field);
        let credentials = field.split_once(' ').map_or(field.as_ref(), |(_, c)| c).trim_matches(' ');
        if credentials.len() >= 12 && !base.contains(credentials) {
            assert!(!text.contains(credentials), "the response echoes the credentials");
        }
    }
}

fn visible(s: &str) -> String {
    s.chars().filter(|c| matches!(*c as u32, 0x20..=0x7e)).collect()
}

fn check_challenges(list: &[Params]) {
    let mut built = Vec::new();
    for p in list.iter().take(4) {
        let mut c = if p.dpop { Challenge::dpop() } else { Challenge::bearer() };
        let mut expected: Vec<(String, String)> = Vec::new();
        let mut set = |name: &str, value: String| {
            expected.retain(|(n, _)| n != name);
            expected.push((name.to_owned(), value));
        };
        if let Some(realm) = &p.realm {
            c = c.realm(realm);
            set("realm", visible(realm));
        }
        if let Some(url) = &p.resource_metadata {
            c = c.resource_metadata(url);
            set("resource_metadata", visible(url));
        }
        c = c.scope(&p.scopes);
        let scopes: Vec<&str> = p.scopes.iter().map(String::as_str).filter(|s| is_scope_token(s)).collect();
        if !scopes.is_empty() {
            set("scope", scopes.join(" "));
        }
        c = c.algs(&p.algs);
        let algs: Vec<&str> = p
            .algs
            .iter()
            .map(String::as_str)
            .filter(|a| {
                !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            })
            .collect();
        if !algs.is_empty() {
            set("algs", algs.join(" "));
        }
        if let Some(code) = p.code {
            let code = CODES[usize::from(code) % CODES.len()];
            c = c.error(code);
            set("error", code.as_str().to_owned());
        }
        if let Some(d) = &p.description {
            c = c.error_description(d);
            set(
                "error_description",
                d.chars().filter(|c| *c != '"' && *c != '\\').filter(|c| matches!(*c as u32, 0x20..=0x7e)).collect(),
            );
        }
        let text = c.to_text();
        assert_eq!(c.to_header_value().to_str().ok(), Some(text.as_str()), "the challenge is not a valid header value");
        let parsed = parse_www_authenticate(&text).unwrap_or_else(|| panic!("challenge does not parse: {text}"));
        assert_eq!(parsed.len(), 1, "{text}");
        assert_eq!(parsed[0].0, if p.dpop { "DPoP" } else { "Bearer" });
        let mut got = parsed[0].1.clone();
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "{text}");
        built.push(c);
    }
    let value = challenge::header_value(&built);
    let text = value.to_str().expect("visible ASCII");
    if !built.is_empty() {
        let parsed = parse_www_authenticate(text).unwrap_or_else(|| panic!("challenges do not parse: {text}"));
        assert_eq!(parsed.len(), built.len(), "{text}");
    }
}

fuzz_target!(|input: Input| {
    let fields: Vec<Vec<u8>> = input.fields.into_iter().take(3).collect();
    check_authorization(&fields);
    check_challenges(&input.challenges);

    let headers: Vec<(&str, &[u8])> = fields.iter().map(|f| ("authorization", f.as_slice())).collect();
    for (scheme, sso) in [("Bearer", true), ("DPoP", false)] {
        let answer = if sso { send(sso_layer(), &headers, b"{}") } else { send(dpop_layer(), &headers, b"{}") };
        if let Some(answer) = answer {
            check_refusal(&answer, &fields, scheme);
        }
    }
});
