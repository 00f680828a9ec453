//! Unit tests of the roles with locally generated keys and a manual clock: every rejection path
//! of the server layer (direct mode and issued tokens), the grant validator's decisions and OAuth
//! codes, the token endpoint's HTTP surface, and the client token source and layer.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use jsonwebtoken::{Algorithm, EncodingKey};
use mcp_enterprise_core::auth::{AuthChain, Authenticator};
use mcp_enterprise_core::clock::Clock as _;
use mcp_enterprise_core::jwks::JwtError;
use mcp_enterprise_core::{AuthMethod, BoxError, McpBody, PackBody, Principal, PrincipalKind};
use serde_json::{Value, json};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

use crate::{
    GrantError, GrantRequest, GrantValidator, IssuerKeys, ManualClock, MemoryReplayStore, OtherTokens, Pattern,
    ServiceTransport, TokenEndpoint, TokenSourceError, TrustPolicy, TrustedIssuer, WorkloadError,
    WorkloadIdentityLayer, WorkloadIdentityLayerBuilder, WorkloadRule, WorkloadTokenLayer, WorkloadTokenSource,
};

const RESOURCE: &str = "https://mcp.example.com/mcp";
const K8S: &str = "https://k8s.example.com";
const TD: &str = "prod.example.org";
const AS: &str = "https://mcp.example.com";
const TOKEN_URL: &str = "https://mcp.example.com/oauth/token";
const NOW: u64 = 1_800_000_000;

struct TestKey {
    kid: String,
    pkcs8: Vec<u8>,
    x: String,
    y: String,
}

fn ec_key(kid: &str) -> TestKey {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).expect("keygen");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("pair");
    let point = pair.public_key().as_ref().to_vec();
    TestKey {
        kid: kid.to_owned(),
        pkcs8: pkcs8.as_ref().to_vec(),
        x: URL_SAFE_NO_PAD.encode(&point[1..33]),
        y: URL_SAFE_NO_PAD.encode(&point[33..65]),
    }
}

impl TestKey {
    fn jwk(&self, usage: &str) -> Value {
        json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "x": self.x, "y": self.y, "use": usage})
    }

    fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let message =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig =
            jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_ec_der(&self.pkcs8), Algorithm::ES256)
                .expect("sign");
        format!("{message}.{sig}")
    }

    /// A token under `{alg: ES256, kid}` (Kubernetes tokens carry no `typ`).
    fn sign(&self, claims: &Value) -> String {
        self.sign_raw(&json!({"alg": "ES256", "kid": self.kid}), claims)
    }
}

static NEXT_JTI: AtomicUsize = AtomicUsize::new(1);

fn jti() -> String {
    format!("jti-{}", NEXT_JTI.fetch_add(1, Ordering::Relaxed))
}

/// Claims shaped like a Kubernetes projected service-account token for `ns`/`sa`.
fn k8s(aud: &str, ns: &str, sa: &str) -> Value {
    json!({
        "aud": [aud], "exp": NOW + 600, "iat": NOW, "nbf": NOW, "iss": K8S, "jti": jti(),
        "kubernetes.io": {"namespace": ns, "node": {"name": "node-1", "uid": "n-uid"},
            "pod": {"name": format!("{sa}-7d9f"), "uid": "p-uid"}, "serviceaccount": {"name": sa, "uid": "sa-uid"}},
        "sub": format!("system:serviceaccount:{ns}:{sa}"),
    })
}

/// Claims shaped like a SPIFFE JWT-SVID (no `iss`).
fn svid(aud: &str, path: &str) -> Value {
    json!({"sub": format!("spiffe://{TD}{path}"), "aud": [aud], "exp": NOW + 300, "iat": NOW, "jti": jti()})
}

struct Keys {
    k8s: TestKey,
    spiffe: TestKey,
}

fn keys() -> Keys {
    Keys { k8s: ec_key("k8s-1"), spiffe: ec_key("svid-1") }
}

fn policy(keys: &Keys, clock: &ManualClock) -> TrustPolicy {
    policy_with(keys, clock, |i| i)
}

fn policy_with(
    keys: &Keys,
    clock: &ManualClock,
    k8s_tweak: impl FnOnce(TrustedIssuer) -> TrustedIssuer,
) -> TrustPolicy {
    let k8s = TrustedIssuer::new(K8S, IssuerKeys::Static(json!({"keys": [keys.k8s.jwk("sig")]})))
        .rule(
            WorkloadRule::new("payments", Pattern::glob("system:serviceaccount:payments:*").expect("glob"))
                .claim("/kubernetes.io/namespace", Pattern::exact("payments"))
                .and_then(|r| r.scopes(["mcp:tools", "mcp:read"]))
                .expect("rule"),
        )
        .rule(
            WorkloadRule::new("billing-reader", Pattern::exact("system:serviceaccount:billing:reader"))
                .scopes(["mcp:read"])
                .expect("rule")
                .resources(["https://other.example.com/mcp"]),
        )
        .forward_claim("kubernetes.io");
    let spiffe = TrustedIssuer::spiffe(TD, IssuerKeys::Static(json!({"keys": [keys.spiffe.jwk("jwt-svid")]})))
        .rule(WorkloadRule::new("agents", Pattern::glob("spiffe://prod.example.org/ns/*/sa/agent").expect("glob")));
    TrustPolicy::builder().issuer(k8s_tweak(k8s)).issuer(spiffe).clock(Arc::new(clock.clone())).build().expect("policy")
}

type Reply = Response<Bytes>;

/// The layer in front of a service answering with the principal (as JSON).
async fn call_layer(layer: &WorkloadIdentityLayer, authorization: Option<&str>) -> Reply {
    call_with(layer, authorization, None).await
}

/// Stands in for an authentication layer inside workload identity.
#[derive(Debug, Clone)]
struct StandIn;

impl<S> tower::Layer<S> for StandIn {
    type Service = S;
    fn layer(&self, inner: S) -> S {
        inner
    }
}

impl Authenticator for StandIn {}

async fn call_with(layer: &WorkloadIdentityLayer, authorization: Option<&str>, preset: Option<Principal>) -> Reply {
    call_stack(layer, None, authorization, preset).await
}

/// [`call_with`], with an authentication layer inside when `inner` is given.
async fn call_stack(
    layer: &WorkloadIdentityLayer,
    inner: Option<StandIn>,
    authorization: Option<&str>,
    preset: Option<Principal>,
) -> Reply {
    let svc = ServiceBuilder::new().layer(AuthChain::new(Some(layer.clone()), inner)).service(service_fn(
        |req: Request<McpBody<Full<Bytes>>>| async move {
            let body = match req.extensions().get::<Principal>() {
                Some(p) => json!({"issuer": p.issuer(), "subject": p.subject(), "kind": format!("{:?}", p.kind()),
                "method": format!("{:?}", p.auth_method()), "scopes": p.scopes(), "claims": p.claims(),
                "client_id": p.client_id()}),
                None => json!({"anonymous": true}),
            };
            Ok::<_, Infallible>(Response::new(PackBody::full(body.to_string())))
        },
    ));
    let body = json!({"jsonrpc": "2.0", "id": 42, "method": "tools/list"});
    let mut req = Request::post("/mcp");
    if let Some(a) = authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    let mut req = req.body(Full::new(Bytes::from(body.to_string()))).expect("request");
    if let Some(p) = preset {
        req.extensions_mut().insert(p);
    }
    let inspected = ServiceBuilder::new().layer(mcp_enterprise_core::InspectLayer::new()).service(svc);
    let res = inspected.oneshot(req).await.expect("infallible");
    let (parts, body) = res.into_parts();
    Response::from_parts(parts, body.collect().await.expect("body").to_bytes())
}

fn json_of(res: &Reply) -> Value {
    serde_json::from_slice(res.body()).expect("JSON body")
}

fn reason(res: &Reply) -> WorkloadError {
    res.extensions().get::<WorkloadError>().cloned().expect("typed reason in the response extensions")
}

fn challenge(res: &Reply) -> String {
    res.headers().get(header::WWW_AUTHENTICATE).map(|v| v.to_str().expect("ascii").to_owned()).unwrap_or_default()
}

const METADATA: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";

/// A direct-mode layer (single use) trusting [`policy`].
fn direct(keys: &Keys, clock: &ManualClock) -> WorkloadIdentityLayerBuilder {
    WorkloadIdentityLayer::builder(RESOURCE).trust(policy(keys, clock))
}

/// Checks a 401 `invalid_token` refusal for `expected`, and that the token is not echoed.
fn assert_refused(res: &Reply, token: &str, expected: WorkloadError) {
    assert_eq!(reason(res), expected);
    assert_eq!(res.status(), expected.status());
    if expected.status() == StatusCode::UNAUTHORIZED {
        let described: String = expected.to_string().chars().filter(|c| *c != '"' && *c != '\\').collect();
        assert_eq!(
            challenge(res),
            format!(
                "Bearer resource_metadata=\"{METADATA}\", error=\"invalid_token\", error_description=\"{described}\""
            )
        );
    }
    let body = json_of(res);
    assert_eq!(body["id"], json!(42), "the refusal answers the request id");
    assert_eq!(body["error"]["data"]["status"], json!(expected.status().as_u16()));
    let all = format!("{:?} {}", res.headers(), String::from_utf8_lossy(res.body()));
    for piece in token.split('.').filter(|p| p.len() >= 12) {
        assert!(!all.contains(&piece[..piece.len().min(40)]), "the token is echoed: {all}");
    }
}

#[tokio::test]
async fn kubernetes_and_spiffe_tokens_become_workload_principals() {
    let (keys, clock) = (keys(), ManualClock::at(NOW));
    let layer = direct(&keys, &clock).build().expect("layer");
    let res = call_layer(&layer, Some(&format!("Bearer {}", keys.k8s.sign(&k8s(RESOURCE, "payments", "agent"))))).await;
    assert_eq!(res.status(), StatusCode::OK, "{:?}", res.extensions().get::<WorkloadError>());
    let p = json_of(&res);
    assert_eq!(p["issuer"], json!(K8S));
    assert_eq!(p["subject"], json!("system:serviceaccount:payments:agent"));
    assert_eq!((p["kind"].as_str(), p["method"].as_str()), (Some("Workload"), Some("Workload")));
    assert_eq!(p["scopes"], json!(["mcp:tools", "mcp:read"]));
    assert_eq!(p["claims"]["workload_rule"], json!("payments"));
    assert_eq!(p["claims"]["kubernetes.io"]["serviceaccount"]["name"], json!("agent"));

    let token = keys
        .spiffe
        .sign_raw(&json!({"alg": "ES256", "kid": "svid-1", "typ": "JWT"}), &svid(RESOURCE, "/ns/payments/sa/agent"));
    let res = call_layer(&layer, Some(&format!("Bearer {token}"))).await;
    assert_eq!(res.status(), StatusCode::OK, "{:?}", res.extensions().get::<WorkloadError>());
    let p = json_of(&res);
    assert_eq!(p["issuer"], json!("spiffe://prod.example.org"));
    assert_eq!(p["subject"], json!("spiffe://prod.example.org/ns/payments/sa/agent"));
    // an explicit spiffe:// iss naming the same trust domain is the same issuer
    let mut claims = svid(RESOURCE, "/ns/x/sa/agent");
    claims["iss"] = json!("spiffe://prod.example.org");
    let res = call_layer(&layer, Some(&format!("Bearer {}", keys.spiffe.sign(&claims)))).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn missing_and_malformed_credentials() {
    let (keys, clock) = (keys(), ManualClock::at(NOW));
    let layer = direct(&keys, &clock).build().expect("layer");
    let res = call_layer(&layer, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(reason(&res), WorkloadError::MissingToken);
    assert_eq!(challenge(&res), format!("Bearer resource_metadata=\"{METADATA}\""));
    let res = call_layer(&layer, Some("Basic dXNlcjpwYXNz")).await;
    assert_eq!(reason(&res), WorkloadError::MissingToken, "another scheme is no bearer token");
    let res = call_layer(&layer, Some("Bearer a\"b")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(challenge(&res).contains("error=\"invalid_request\""));
    for (token, why) in [
        ("abc", WorkloadError::Jwt(JwtError::Malformed("not a compact JWS"))),
        ("a.b.c.d", WorkloadError::Jwt(JwtError::Malformed("not a compact JWS"))),
        ("!!!.e30.sig", WorkloadError::MalformedHeader("the bearer token is not a b64token")),
        ("e.e30.sig", WorkloadError::Jwt(JwtError::Malformed("header is not base64url"))),
        ("W10.e30.sig", WorkloadError::Jwt(JwtError::Malformed("header is not a JSON object"))),
        ("e30.e30.sig", WorkloadError::Jwt(JwtError::Malformed("no alg"))),
    ] {
        let res = call_layer(&layer, Some(&format!("Bearer {token}"))).await;
        assert_eq!(reason(&res), why, "{token}");
    }
    let big = format!("Bearer {}", "a".repeat(20 * 1024));
    assert_eq!(reason(&call_layer(&layer, Some(&big)).await), WorkloadError::TokenTooLarge(16 * 1024));
}

#[tokio::test]
async fn header_defects_are_refused() {
    let (keys, clock) = (keys(), ManualClock::at(NOW));
    let layer = direct(&keys, &clock).build().expect("layer");
    let claims = k8s(RESOURCE, "payments", "agent");
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims));
    let cases = [
        (format!("{none}c2ln"), WorkloadError::Jwt(JwtError::DisallowedAlgorithm("none".into()))),
        (
            keys.k8s.sign_raw(&json!({"alg": "HS256", "kid": "k8s-1"}), &claims),
            WorkloadError::Jwt(JwtError::DisallowedAlgorithm("HS256".into())),
        ),
        (
            keys.k8s.sign_raw(&json!({"alg": "ES256", "kid": "k8s-1", "crit": ["exp"], "exp": 1}), &claims),
            WorkloadError::Jwt(JwtError::CriticalHeader),
        ),
        (
            keys.k8s.sign_raw(&json!({"alg": "ES256", "kid": "k8s-1", "typ": "at+jwt"}), &claims),
            WorkloadError::WrongType("at+jwt".into()),
        ),
        (keys.k8s.sign_raw(&json!({"alg": "ES256", "kid": "nope"}), &claims), WorkloadError::Jwt(JwtError::UnknownKey)),
        (
            keys.k8s.sign_raw(&json!({"alg": "ES384", "kid": "k8s-1"}), &claims),
            WorkloadError::Jwt(JwtError::KeyMismatch),
        ),
        (
            // an embedded key is never used: the token is signed by a key the issuer never published
            ec_key("k8s-1").sign_raw(
                &json!({"alg": "ES256", "kid": "k8s-1", "jwk": keys.k8s.jwk("sig"), "jku": "https://evil/jwks"}),
                &claims,
            ),
            WorkloadError::Jwt(JwtError::BadSignature),
        ),
    ];
    for (token, expected) in cases {
        let res = call_layer(&layer, Some(&format!("Bearer {token}"))).await;
        assert_refused(&res, &token, expected);
    }
    // the issuer allows only RS256: an ES256 token is refused before its signature is checked
    let rs_only = WorkloadIdentityLayer::builder(RESOURCE)
        .trust(policy_with(&keys, &clock, |i| i.algorithms(&[Algorithm::RS256]).expect("algs")))
        .build()
        .expect("layer");
    let token = keys.k8s.sign(&claims);
    assert_refused(
        &call_layer(&rs_only, Some(&format!("Bearer {token}"))).await,
        &token,
        WorkloadError::Jwt(JwtError::DisallowedAlgorithm("ES256".into())),
    );
    // tampering with the payload breaks the signature
    let token = keys.k8s.sign(&claims);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut forged = claims.clone();
    forged["sub"] = json!("system:serviceaccount:payments:admin");
    parts[1] = b64(&forged);
    let tampered = parts.join(".");
    assert_refused(
        &call_layer(&layer, Some(&format!("Bearer {tampered}"))).await,
        &tampered,
        WorkloadError::Jwt(JwtError::BadSignature),
    );
}

#[tokio::test]
async fn claim_defects_are_refused() {
    let (keys, clock) = (keys(), ManualClock::at(NOW));
    let layer = direct(&keys, &clock).max_token_lifetime(Duration::from_secs(3600)).build().expect("layer");
    let base = || k8s(RESOURCE, "payments", "agent");
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut c = base();
        f(&mut c);
        c
    };
    let remove = |name: &'static str| edit(&move |c: &mut Value| _ = c.as_object_mut().map(|o| o.remove(name)));
    let cases: Vec<(Value, WorkloadError)> = vec![
        (edit(&|c| c["iss"] = json!("https://evil.example.com")), WorkloadError::Jwt(JwtError::UntrustedIssuer)),
        (edit(&|c| c["iss"] = json!("https://k8s.example.com/")), WorkloadError::Jwt(JwtError::UntrustedIssuer)),
        (remove("iss"), WorkloadError::Jwt(JwtError::MissingIssuer)),
        (remove("aud"), WorkloadError::Jwt(JwtError::MissingAudience)),
        (edit(&|c| c["aud"] = json!("https://other.example.com/mcp")), WorkloadError::WrongAudience),
        (
            edit(&|c| c["aud"] = json!([RESOURCE, "https://other.example.com/mcp"])),
            WorkloadError::Jwt(JwtError::MultipleAudiences),
        ),
        (edit(&|c| c["aud"] = json!("https://MCP.example.com/mcp")), WorkloadError::WrongAudience),
        (remove("exp"), WorkloadError::Jwt(JwtError::MissingExpiry)),
        (edit(&|c| c["exp"] = json!(NOW - 61)), WorkloadError::Jwt(JwtError::Expired)),
        (edit(&|c| c["nbf"] = json!(NOW + 61)), WorkloadError::Jwt(JwtError::NotYetValid)),
        (remove("iat"), WorkloadError::Jwt(JwtError::MissingIssuedAt)),
        (edit(&|c| c["iat"] = json!(NOW + 61)), WorkloadError::Jwt(JwtError::IssuedInFuture)),
        (
            edit(&|c| {
                c["iat"] = json!(NOW - 10);
                c["exp"] = json!(NOW - 10 + 3601);
            }),
            WorkloadError::Jwt(JwtError::TooLongLived { lifetime: 3601, max: 3600 }),
        ),
        (edit(&|c| c["exp"] = json!("later")), WorkloadError::Jwt(JwtError::BadClaim("exp"))),
        (remove("sub"), WorkloadError::Jwt(JwtError::MissingSubject)),
        (edit(&|c| c["sub"] = json!("system:serviceaccount:payments:agent:x")), WorkloadError::NoMatchingRule),
        (edit(&|c| c["kubernetes.io"]["namespace"] = json!("billing")), WorkloadError::NoMatchingRule),
        (remove("jti"), WorkloadError::Jwt(JwtError::MissingJti)),
        (edit(&|c| c["jti"] = json!(7)), WorkloadError::Jwt(JwtError::BadClaim("jti"))),
    ];
    for (claims, expected) in cases {
        let token = keys.k8s.sign(&claims);
        let res = call_layer(&layer, Some(&format!("Bearer {token}"))).await;
        assert_refused(&res, &token, expected);
    }
    // inside the leeway is fine
    let ok = edit(&|c| c["exp"] = json!(NOW - 59));
    assert_eq!(call_layer(&layer, Some(&format!("Bearer {}", keys.k8s.sign(&ok)))).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn spiffe_trust_domains() {
    let (keys, clock) = (keys(), ManualClock::at(NOW));
    let layer = direct(&keys, &clock).build().expect("layer");
    let sign = |c: &Value| keys.spiffe.sign_raw(&json!({"alg": "ES256", "kid": "svid-1", "typ": "JWT"}), c);
    let mut other = json!({"sub": "spiffe://other.example.org/ns/a/sa/agent", "aud": [RESOURCE], "exp": NOW + 60,
        "iat": NOW, "jti": jti()});
    let token = sign(&other);
    assert_refused(&call_layer(&layer, Some(&format!("Bearer {token}"))).await, &token, WorkloadError::NoTrustBundle);
    other["iss"] = json!("spiffe://other.example.org");
    let token = sign(&other);
    assert_refused(&call_layer(&layer, Some(&format!("Bearer {token}"))).await, &token, WorkloadError::NoTrustBundle);
    // an iss of our trust domain with a subject of another is not a valid SVID of ours
    let mut cross = svid(RESOURCE, "/ns/a/sa/agent");
    cross["iss"] = json!("spiffe://prod.example.org");
    cross["sub"] = json!("spiffe://other.example.org/ns/a/sa/agent");
    let token = sign(&cross);
    assert_refused(&call_layer(&layer, Some(&format!("Bearer {token}"))).await, &token, WorkloadError::InvalidSpiffeId);
    let mut bad = svid(RESOURCE, "/ns/a/../sa/agent");
    bad["jti"] = json!(jti());
    let token = sign(&bad);
    assert_refused(&call_layer(&layer, Some(&format!("Bearer {token}"))).await, &token, WorkloadError::InvalidSpiffeId);
    let token = sign(&svid(RESOURCE, "/ns/a/sa/web"));
    assert_refused(&call_layer(&layer, Some(&format!("Bearer {token}"))).await, &token, WorkloadError::NoMatchingRule);
    // an x509-svid key (or one signed by the Kubernetes key) never verifies a JWT-SVID
    let token = keys.k8s.sign_raw(&json!({"alg": "ES256", "kid": "svid-1"}), &svid(RESOURCE, "/ns/a/sa/agent"));
    assert_refused(
        &call_layer(&layer, Some(&format!("Bearer {token}"))).await,
        &token,
        WorkloadError::Jwt(JwtError::BadSignature),
    );
}

#[tokio::test]
async fn single_use_and_reuse() {
    let (keys, clock) = (keys(), ManualClock::at(NOW));
    let layer = direct(&keys, &clock).build().expect("layer");
    let token = keys.k8s.sign(&k8s(RESOURCE, "payments", "agent"));
    let auth = format!("Bearer {token}");
    assert_eq!(call_layer(&layer, Some(&auth)).await.status(), StatusCode::OK);
    assert_refused(&call_layer(&layer, Some(&auth)).await, &token, WorkloadError::Replayed);
    // the same jti in another token of the same issuer is a replay too; another issuer's is not
    let mut same_jti = k8s(RESOURCE, "payments", "agent");
    same_jti["jti"] = k8s_jti(&token);
    let again = keys.k8s.sign(&same_jti);
    assert_refused(&call_layer(&layer, Some(&format!("Bearer {again}"))).await, &again, WorkloadError::Replayed);
    let mut svid_claims = svid(RESOURCE, "/ns/a/sa/agent");
    svid_claims["jti"] = k8s_jti(&token);
    let other_issuer = keys.spiffe.sign(&svid_claims);
    assert_eq!(call_layer(&layer, Some(&format!("Bearer {other_issuer}"))).await.status(), StatusCode::OK);

    // with reuse allowed, a token serves until it expires, and jti is optional
    let reuse = direct(&keys, &clock).insecure_allow_token_reuse().build().expect("layer");
    let mut no_jti = k8s(RESOURCE, "payments", "agent");
    no_jti.as_object_mut().map(|o| o.remove("jti"));
    let auth = format!("Bearer {}", keys.k8s.sign(&no_jti));
    for _ in 0..3 {
        assert_eq!(call_layer(&reuse, Some(&auth)).await.status(), StatusCode::OK);
    }
    clock.advance(Duration::from_secs(600 + 60));
    assert_eq!(reason(&call_layer(&reuse, Some(&auth)).await), WorkloadError::Jwt(JwtError::Expired));
}

fn k8s_jti(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
    claims["jti"].clone()
}

#[tokio::test]
async fn a_full_replay_store_fails_closed() {
    let (keys, clock) = (keys(), ManualClock::at(NOW));
    let layer = direct(&keys, &clock).replay_store(Arc::new(MemoryReplayStore::new(1))).build().expect("layer");
    let first = keys.k8s.sign(&k8s(RESOURCE, "payments", "agent"));
    assert_eq!(call_layer(&layer, Some(&format!("Bearer {first}"))).await.status(), StatusCode::OK);
    let second = keys.k8s.sign(&k8s(RESOURCE, "payments", "agent"));
    let res = call_layer(&layer, Some(&format!("Bearer {second}"))).await;
    assert_refused(&res, &second, WorkloadError::Unavailable);
    assert_eq!(res.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"5"[..]));
    assert!(res.headers().get(header::WWW_AUTHENTICATE).is_none());
    // once the first token's window is over there is room again
    clock.advance(Duration::from_secs(600 + 61));
    let third = keys.k8s.sign(&json!({"iat": NOW + 661, "exp": NOW + 1200, "jti": jti(), "iss": K8S, "aud": RESOURCE,
        "sub": "system:serviceaccount:payments:agent", "kubernetes.io": {"namespace": "payments"}}));
    assert_eq!(call_layer(&layer, Some(&format!("Bearer {third}"))).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn other_tokens_and_preset_principals() {
    let (keys, clock) = (keys(), ManualClock::at(NOW));
    let preset = Principal::builder("https://idp", "alice", PrincipalKind::User, AuthMethod::Dpop).build();
    let layer = direct(&keys, &clock).build().expect("layer");
    let res = call_with(&layer, None, Some(preset.clone())).await;
    assert_eq!(json_of(&res)["subject"], json!("alice"), "an outer layer's principal passes untouched");

    // asked to pass other tokens on with no authentication layer inside: refused, never passed
    let unarmed = layer.clone().with_other_tokens(OtherTokens::PassToInner);
    let res = call_layer(&unarmed, None).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(res.extensions().get::<mcp_enterprise_core::Miswired>().is_some());
    let denial = res.extensions().get::<mcp_enterprise_core::Denial>().expect("denial");
    assert_eq!(denial.layer(), "workload_identity");

    // armed by AuthChain around an authenticating layer
    assert_eq!(
        json_of(&call_stack(&layer, Some(StandIn), None, None).await),
        json!({"anonymous": true}),
        "no token: the inner layer decides"
    );
    let user_token = ec_key("idp").sign(&json!({"iss": "https://login.example.com", "sub": "alice", "aud": RESOURCE}));
    let res = call_stack(&layer, Some(StandIn), Some(&format!("Bearer {user_token}")), None).await;
    assert_eq!(json_of(&res), json!({"anonymous": true}), "another issuer's token: the inner layer decides");
    let res = call_stack(&layer, Some(StandIn), Some("Bearer opaque-token"), None).await;
    assert_eq!(json_of(&res), json!({"anonymous": true}));
    // a token of a trusted workload issuer is judged here even in pass mode
    let mut wrong = k8s("https://other.example.com/mcp", "payments", "agent");
    wrong["jti"] = json!(jti());
    let token = keys.k8s.sign(&wrong);
    assert_refused(
        &call_stack(&layer, Some(StandIn), Some(&format!("Bearer {token}")), None).await,
        &token,
        WorkloadError::WrongAudience,
    );
    let res = call_stack(&layer, Some(StandIn), Some("Bearer a\"b"), None).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "a malformed header is refused in any mode");
}

#[tokio::test]
async fn building_and_advertising() {
    let (keys, clock) = (keys(), ManualClock::at(NOW));
    let err = WorkloadIdentityLayer::builder(RESOURCE).build().expect_err("nothing accepted");
    assert!(matches!(err, crate::WorkloadConfigError::NothingAccepted));
    assert!(direct(&keys, &clock).max_token_lifetime(Duration::from_secs(100_000)).build().is_err());
    assert!(direct(&keys, &clock).leeway(Duration::from_secs(301)).build().is_err());
    assert!(direct(&keys, &clock).extension_name("bad/name").build().is_err());
    assert!(WorkloadIdentityLayer::builder("not a uri").trust(policy(&keys, &clock)).build().is_err());
    let layer = direct(&keys, &clock).build().expect("layer");
    assert_eq!(layer.resource_metadata_url(), METADATA);
    let set = layer
        .add_extensions(mcp_enterprise_core::ExtensionSet::builder().vendor_prefix("com.acme").expect("prefix"))
        .expect("ids")
        .build();
    assert_eq!(
        set.advertised().get("com.acme/workload-identity"),
        Some(&json!({"issuers": [K8S, "spiffe://prod.example.org"]}))
    );
    assert!(!set.contains("io.modelcontextprotocol/auth/wif"), "direct mode is not SEP-1933");
}

// ---------------------------------------------------------------------------------------------
// Grant validator and token endpoint
// ---------------------------------------------------------------------------------------------

fn grants(keys: &Keys, clock: &ManualClock) -> GrantValidator {
    GrantValidator::builder(policy(keys, clock), AS, TOKEN_URL)
        .resource(RESOURCE)
        .resource("https://second.example.com/mcp")
        .build()
        .expect("validator")
}

#[tokio::test]
async fn grant_decisions_and_oauth_codes() {
    let (keys, clock) = (keys(), ManualClock::at(NOW));
    let g = grants(&keys, &clock);
    let assertion = |aud: &str| keys.k8s.sign(&k8s(aud, "payments", "agent"));

    let a = assertion(TOKEN_URL);
    let d = g.validate(GrantRequest::new(&a, Some(RESOURCE), None)).await.expect("granted");
    assert_eq!(
        (d.issuer.as_str(), d.subject.as_str(), d.rule.as_str()),
        (K8S, "system:serviceaccount:payments:agent", "payments")
    );
    assert_eq!(d.scopes, ["mcp:tools", "mcp:read"], "no scope asked: everything the rule grants");
    assert_eq!(d.resource, RESOURCE);
    let a = assertion(AS);
    let d = g.validate(GrantRequest::new(&a, Some(RESOURCE), Some("mcp:read"))).await.expect("issuer as aud");
    assert_eq!(d.scopes, ["mcp:read"]);

    let code = |r: Result<crate::GrantDecision, GrantError>| r.map(|_| ()).map_err(|e| (e.error_code(), e));
    let a = assertion("https://elsewhere.example.com/token");
    assert_eq!(
        code(g.validate(GrantRequest::new(&a, Some(RESOURCE), None)).await),
        Err(("invalid_grant", GrantError::InvalidGrant(WorkloadError::WrongAudience)))
    );
    let a = assertion(TOKEN_URL);
    assert_eq!(
        code(g.validate(GrantRequest::new(&a, Some(RESOURCE), Some("mcp:admin"))).await),
        Err(("invalid_scope", GrantError::InvalidScope("mcp:admin".into())))
    );
    // the refused request did not consume the assertion: a corrected one succeeds, once
    assert!(g.validate(GrantRequest::new(&a, Some(RESOURCE), Some("mcp:tools"))).await.is_ok());
    assert_eq!(
        code(g.validate(GrantRequest::new(&a, Some(RESOURCE), Some("mcp:tools"))).await),
        Err(("invalid_grant", GrantError::InvalidGrant(WorkloadError::Replayed)))
    );
    let a = assertion(TOKEN_URL);
    assert_eq!(code(g.validate(GrantRequest::new(&a, None, None)).await).map_err(|e| e.0), Err("invalid_request"));
    assert_eq!(
        code(g.validate(GrantRequest::new(&a, Some("https://unknown.example.com/mcp"), None)).await),
        Err(("invalid_target", GrantError::InvalidTarget))
    );
    // billing:reader may only get tokens for another resource
    let reader = keys.k8s.sign(&k8s(TOKEN_URL, "billing", "reader"));
    assert_eq!(
        code(g.validate(GrantRequest::new(&reader, Some(RESOURCE), None)).await),
        Err(("unauthorized_client", GrantError::UnauthorizedClient))
    );
    let unknown = keys.k8s.sign(&k8s(TOKEN_URL, "billing", "writer"));
    assert_eq!(
        code(g.validate(GrantRequest::new(&unknown, Some(RESOURCE), None)).await),
        Err(("invalid_grant", GrantError::InvalidGrant(WorkloadError::NoMatchingRule)))
    );
    let mut no_jti = k8s(TOKEN_URL, "payments", "agent");
    no_jti.as_object_mut().map(|o| o.remove("jti"));
    let a = keys.k8s.sign(&no_jti);
    assert_eq!(
        code(g.validate(GrantRequest::new(&a, Some(RESOURCE), None)).await),
        Err(("invalid_grant", GrantError::InvalidGrant(WorkloadError::Jwt(JwtError::MissingJti))))
    );
    let mut long = k8s(TOKEN_URL, "payments", "agent");
    long["exp"] = json!(NOW + 7200);
    let a = keys.k8s.sign(&long);
    assert_eq!(
        code(g.validate(GrantRequest::new(&a, Some(RESOURCE), None)).await),
        Err((
            "invalid_grant",
            GrantError::InvalidGrant(WorkloadError::Jwt(JwtError::TooLongLived { lifetime: 7200, max: 3600 }))
        ))
    );
}

#[tokio::test]
async fn form_parameters() {
    let (keys, clock) = (keys(), ManualClock::at(NOW));
    let g = grants(&keys, &clock);
    let a = keys.k8s.sign(&k8s(TOKEN_URL, "payments", "agent"));
    let form =
        |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<Vec<_>>();
    let jwt = crate::JWT_BEARER_GRANT_TYPE;
    let cases = [
        (form(&[("assertion", &a), ("resource", RESOURCE)]), GrantError::InvalidRequest("grant_type is required")),
        (
            form(&[("grant_type", "client_credentials"), ("assertion", &a), ("resource", RESOURCE)]),
            GrantError::UnsupportedGrantType,
        ),
        (form(&[("grant_type", jwt), ("resource", RESOURCE)]), GrantError::InvalidRequest("assertion is required")),
        (
            form(&[("grant_type", jwt), ("assertion", &a), ("assertion", &a), ("resource", RESOURCE)]),
            GrantError::InvalidRequest("a parameter is repeated"),
        ),
        (
            form(&[("grant_type", jwt), ("assertion", &a), ("resource", RESOURCE), ("scope", "mcp:tools  mcp:read")]),
            GrantError::InvalidRequest("scope has an empty scope token"),
        ),
    ];
    for (f, expected) in cases {
        assert_eq!(g.validate_form(&f).await.map(|_| ()), Err(expected));
    }
    // with reuse allowed an assertion serves until it expires, and needs no jti
    let reuse = GrantValidator::builder(policy(&keys, &clock), AS, TOKEN_URL)
        .resource(RESOURCE)
        .insecure_allow_assertion_reuse()
        .build()
        .expect("validator");
    let mut no_jti = k8s(TOKEN_URL, "payments", "agent");
    no_jti.as_object_mut().map(|o| o.remove("jti"));
    let projected = keys.k8s.sign(&no_jti);
    for _ in 0..3 {
        assert!(reuse.validate(GrantRequest::new(&projected, Some(RESOURCE), None)).await.is_ok());
    }
    let flood: Vec<(String, String)> = (0..1000).map(|i| (format!("p{i}"), String::new())).collect();
    assert_eq!(g.validate_form(&flood).await.map(|_| ()), Err(GrantError::InvalidRequest("too many parameters")));
    let ok = form(&[("grant_type", jwt), ("assertion", &a), ("resource", RESOURCE), ("scope", "mcp:tools")]);
    assert_eq!(g.validate_form(&ok).await.map(|d| d.scopes), Ok(vec!["mcp:tools".to_owned()]));
}

fn endpoint(keys: &Keys, clock: &ManualClock) -> TokenEndpoint {
    TokenEndpoint::builder(grants(keys, clock)).access_token_ttl(Duration::from_secs(120)).build().expect("endpoint")
}

async fn send_to(ep: &TokenEndpoint, req: Request<Full<Bytes>>) -> Reply {
    let res = ep.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = res.into_parts();
    Response::from_parts(parts, body.collect().await.expect("body").to_bytes())
}

fn grant_request(assertion: &str, extra: &str) -> Request<Full<Bytes>> {
    let body = format!(
        "grant_type={}&assertion={assertion}&resource={}{extra}",
        mcp_enterprise_core::jwks::form_encode(crate::JWT_BEARER_GRANT_TYPE),
        mcp_enterprise_core::jwks::form_encode(RESOURCE)
    );
    Request::post(TOKEN_URL)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .expect("request")
}

#[tokio::test]
async fn the_token_endpoint_mints_audience_bound_tokens_the_layer_accepts() {
    let (keys, clock) = (keys(), ManualClock::at(NOW));
    let ep = endpoint(&keys, &clock);
    let a = keys.k8s.sign(&k8s(TOKEN_URL, "payments", "agent"));
    let res = send_to(&ep, grant_request(&a, "&scope=mcp%3Atools")).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", String::from_utf8_lossy(res.body()));
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    let body = json_of(&res);
    assert_eq!((body["token_type"].as_str(), body["expires_in"].as_u64()), (Some("Bearer"), Some(120)));
    assert_eq!(body["scope"], json!("mcp:tools"));
    let token = body["access_token"].as_str().expect("token").to_owned();
    let (h, c) = token.split_once('.').expect("jws");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).expect("b64")).expect("json");
    assert_eq!(header["typ"], json!("at+jwt"));
    assert_eq!(header["alg"], json!("ES256"));
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c.split('.').next().expect("payload")).expect("b64"))
            .expect("json");
    assert_eq!(claims["aud"], json!(RESOURCE));
    assert_eq!(claims["iss"], json!(AS));
    assert_eq!(claims["exp"], json!(NOW + 120));
    assert_eq!(claims["client_id"], claims["sub"]);

    let layer =
        WorkloadIdentityLayer::builder(RESOURCE).accept_issued_tokens(ep.issued_tokens()).build().expect("layer");
    let res = call_layer(&layer, Some(&format!("Bearer {token}"))).await;
    assert_eq!(res.status(), StatusCode::OK, "{:?}", res.extensions().get::<WorkloadError>());
    let p = json_of(&res);
    assert_eq!((p["issuer"].as_str(), p["subject"].as_str()), (Some(AS), Some("system:serviceaccount:payments:agent")));
    assert_eq!((p["kind"].as_str(), p["method"].as_str()), (Some("Workload"), Some("Bearer")));
    assert_eq!(p["scopes"], json!(["mcp:tools"]));
    assert_eq!(p["claims"]["workload_issuer"], json!(K8S));
    // access tokens are bearer tokens: used again until they expire
    assert_eq!(call_layer(&layer, Some(&format!("Bearer {token}"))).await.status(), StatusCode::OK);

    // for another resource, tampered, from another endpoint, expired: refused
    let other_layer = WorkloadIdentityLayer::builder("https://second.example.com/mcp")
        .accept_issued_tokens(ep.issued_tokens())
        .build()
        .expect("layer");
    assert_refused_at(&other_layer, &token, WorkloadError::WrongAudience, "https://second.example.com").await;
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = URL_SAFE_NO_PAD
        .encode(json!({"iss": AS, "sub": "root", "aud": RESOURCE, "iat": NOW, "exp": NOW + 60}).to_string());
    parts[1] = &forged;
    let tampered = parts.join(".");
    assert_refused(
        &call_layer(&layer, Some(&format!("Bearer {tampered}"))).await,
        &tampered,
        WorkloadError::Jwt(JwtError::BadSignature),
    );
    let stranger = endpoint(&keys, &clock);
    let b = keys.k8s.sign(&k8s(TOKEN_URL, "payments", "agent"));
    let foreign =
        json_of(&send_to(&stranger, grant_request(&b, "")).await)["access_token"].as_str().expect("token").to_owned();
    assert_refused(
        &call_layer(&layer, Some(&format!("Bearer {foreign}"))).await,
        &foreign,
        WorkloadError::Jwt(JwtError::UnknownKey),
    );
    clock.advance(Duration::from_secs(120 + 30));
    assert_refused(
        &call_layer(&layer, Some(&format!("Bearer {token}"))).await,
        &token,
        WorkloadError::Jwt(JwtError::Expired),
    );
}

async fn assert_refused_at(layer: &WorkloadIdentityLayer, token: &str, expected: WorkloadError, origin: &str) {
    let res = call_layer(layer, Some(&format!("Bearer {token}"))).await;
    assert_eq!(reason(&res), expected);
    assert!(challenge(&res).starts_with(&format!("Bearer resource_metadata=\"{origin}/.well-known/")));
}

#[tokio::test]
async fn the_token_endpoint_http_surface() {
    let (keys, clock) = (keys(), ManualClock::at(NOW));
    let ep = endpoint(&keys, &clock);
    let get =
        |path: &str| Request::get(format!("https://mcp.example.com{path}")).body(Full::new(Bytes::new())).expect("req");
    let jwks = json_of(&send_to(&ep, get("/oauth/jwks")).await);
    assert_eq!(jwks["keys"][0]["alg"], json!("ES256"));
    assert!(jwks["keys"][0].get("d").is_none(), "no private member");
    let meta = json_of(&send_to(&ep, get("/.well-known/oauth-authorization-server")).await);
    assert_eq!(meta["token_endpoint"], json!(TOKEN_URL));
    assert_eq!(meta["issuer"], json!(AS));
    assert_eq!(send_to(&ep, get("/oauth/token")).await.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(send_to(&ep, get("/elsewhere")).await.status(), StatusCode::NOT_FOUND);

    let a = keys.k8s.sign(&k8s(TOKEN_URL, "payments", "agent"));
    let mut json_body = grant_request(&a, "");
    json_body.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("hv"));
    let res = send_to(&ep, json_body).await;
    assert_eq!((res.status(), json_of(&res)["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    let big = Request::post(TOKEN_URL)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(vec![b'a'; 65 * 1024])))
        .expect("req");
    assert_eq!(json_of(&send_to(&ep, big).await)["error"], json!("invalid_request"));
    let broken = Request::post(TOKEN_URL)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded; charset=utf-8")
        .body(Full::new(Bytes::from("grant_type=%zz")))
        .expect("req");
    assert_eq!(json_of(&send_to(&ep, broken).await)["error"], json!("invalid_request"));
    // every refusal carries the RFC 6749 body and its typed reason; the assertion is never echoed
    let expired = keys.k8s.sign(&{
        let mut c = k8s(TOKEN_URL, "payments", "agent");
        c["exp"] = json!(NOW - 120);
        c["iat"] = json!(NOW - 600);
        c
    });
    let res = send_to(&ep, grant_request(&expired, "")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json_of(&res),
        json!({"error": "invalid_grant", "error_description": "invalid assertion: the token has expired"})
    );
    assert_eq!(
        res.extensions().get::<GrantError>(),
        Some(&GrantError::InvalidGrant(WorkloadError::Jwt(JwtError::Expired)))
    );
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    // building refuses a token endpoint on another origin and bad lifetimes
    let elsewhere = GrantValidator::builder(policy(&keys, &clock), AS, "https://token.example.net/token")
        .resource(RESOURCE)
        .build()
        .expect("validator");
    assert!(TokenEndpoint::builder(elsewhere).build().is_err());
    assert!(TokenEndpoint::builder(grants(&keys, &clock)).access_token_ttl(Duration::from_secs(5)).build().is_err());
    assert!(TokenEndpoint::builder(grants(&keys, &clock)).jwks_path("/oauth/token").build().is_err());
    for bad in ["oauth/jwks", "/oauth/{kid}", "/oauth/*", "/oauth/", "/a//b", "/a:b"] {
        assert!(TokenEndpoint::builder(grants(&keys, &clock)).jwks_path(bad).build().is_err(), "{bad}");
    }
    assert!(
        TokenEndpoint::builder(grants(&keys, &clock)).extension_id("io.modelcontextprotocol/other").build().is_err()
    );
    assert!(
        GrantValidator::builder(policy(&keys, &clock), "http://mcp.example.com", TOKEN_URL)
            .resource(RESOURCE)
            .build()
            .is_err()
    );
    assert!(GrantValidator::builder(policy(&keys, &clock), AS, TOKEN_URL).build().is_err(), "no resource");
}

// ---------------------------------------------------------------------------------------------
// Client token source and layer
// ---------------------------------------------------------------------------------------------

/// The token endpoint as an in-process transport, counting grants.
#[derive(Clone)]
struct Counted {
    ep: TokenEndpoint,
    calls: Arc<AtomicUsize>,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

impl Service<Request<Full<Bytes>>> for Counted {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = crate::BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let fail = self.fail.load(Ordering::SeqCst);
        let ep = self.ep.clone();
        Box::pin(async move {
            if fail {
                return Err("connection refused".into());
            }
            Ok(ep.oneshot(req).await?)
        })
    }
}

struct ClientFixture {
    keys: Keys,
    clock: ManualClock,
    dir: tempfile::TempDir,
    transport: Counted,
    source: WorkloadTokenSource,
}

impl ClientFixture {
    fn new() -> Self {
        let (keys, clock) = (keys(), ManualClock::at(NOW));
        let ep = endpoint(&keys, &clock);
        let transport = Counted { ep, calls: Arc::default(), fail: Arc::default() };
        let dir = tempfile::tempdir().expect("tempdir");
        let source = WorkloadTokenSource::builder(dir.path().join("token"), TOKEN_URL, RESOURCE)
            .scope("mcp:tools")
            .clock(Arc::new(clock.clone()))
            .transport(Arc::new(ServiceTransport::new(transport.clone(), Duration::from_secs(5))))
            .build()
            .expect("source");
        Self { keys, clock, dir, transport, source }
    }

    /// Writes a fresh projected token (the kubelet rotating it), issued now.
    fn rotate(&self) {
        let now = self.clock.now().as_secs();
        let mut claims = k8s(TOKEN_URL, "payments", "agent");
        claims["iat"] = json!(now);
        claims["nbf"] = json!(now);
        claims["exp"] = json!(now + 3600);
        std::fs::write(self.dir.path().join("token"), format!("{}\n", self.keys.k8s.sign(&claims))).expect("write");
    }

    fn calls(&self) -> usize {
        self.transport.calls.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn the_token_source_grants_caches_and_follows_rotation() {
    let f = ClientFixture::new();
    assert!(matches!(f.source.token().await, Err(TokenSourceError::Assertion(_))), "no file yet");
    std::fs::write(f.dir.path().join("token"), "not a jwt").expect("write");
    assert!(matches!(f.source.token().await, Err(TokenSourceError::Assertion(_))));
    assert_eq!(f.calls(), 0, "nothing is sent without a usable assertion");
    f.rotate();
    // concurrent callers share one grant
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let s = f.source.clone();
            tokio::spawn(async move { s.token().await })
        })
        .collect();
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.expect("join").expect("token"));
    }
    assert_eq!(f.calls(), 1);
    assert!(tokens.iter().all(|t| t == &tokens[0]));
    assert!(!tokens[0].is_dpop());
    assert_eq!(tokens[0].expires_at(), Duration::from_secs(NOW + 120));
    assert!(!format!("{:?}", tokens[0]).contains(tokens[0].secret()), "Debug hides the token");

    // cached until shortly before expiry (120 s lifetime, 30 s margin)
    f.clock.advance(Duration::from_secs(89));
    assert_eq!(f.source.token().await.expect("cached"), tokens[0]);
    assert_eq!(f.calls(), 1);
    // then a new grant — with the same projected token, which the endpoint has seen: refused
    f.clock.advance(Duration::from_secs(2));
    let err = f.source.token().await.expect_err("replayed assertion");
    assert!(matches!(&err, TokenSourceError::Rejected { status: 400, error, .. } if error == "invalid_grant"), "{err}");
    assert_eq!(f.calls(), 2);
    // a refusal is not retried with the same assertion
    assert_eq!(f.source.token().await.expect_err("cached refusal"), err);
    assert_eq!(f.calls(), 2);
    // the kubelet rotates the file: the next call grants with the new assertion
    f.rotate();
    let fresh = f.source.token().await.expect("token after rotation");
    assert_ne!(fresh, tokens[0]);
    assert_eq!(f.calls(), 3);
}

#[tokio::test]
async fn transport_failures_pause_then_retry() {
    let f = ClientFixture::new();
    f.rotate();
    f.transport.fail.store(true, Ordering::SeqCst);
    assert!(matches!(f.source.token().await, Err(TokenSourceError::Transport(_))));
    assert!(matches!(f.source.token().await, Err(TokenSourceError::Transport(_))));
    assert_eq!(f.calls(), 1, "no second attempt inside the pause");
    f.transport.fail.store(false, Ordering::SeqCst);
    f.clock.advance(Duration::from_secs(5));
    assert!(f.source.token().await.is_ok());
    assert_eq!(f.calls(), 2);
}

#[tokio::test]
async fn the_layer_attaches_tokens_and_drops_refused_ones() {
    let f = ClientFixture::new();
    f.rotate();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let refuse_next = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = {
        let (seen, refuse_next) = (seen.clone(), refuse_next.clone());
        service_fn(move |req: Request<Full<Bytes>>| {
            let (seen, refuse_next) = (seen.clone(), refuse_next.clone());
            async move {
                let auth = req.headers().get(header::AUTHORIZATION).map(|v| v.to_str().expect("ascii").to_owned());
                seen.lock().expect("lock").push(auth.unwrap_or_default());
                let mut res = Response::new(Full::new(Bytes::new()));
                if refuse_next.swap(false, Ordering::SeqCst) {
                    *res.status_mut() = StatusCode::UNAUTHORIZED;
                    res.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"".parse().expect("hv"));
                }
                Ok::<_, BoxError>(res)
            }
        })
    };
    let client = ServiceBuilder::new().layer(WorkloadTokenLayer::new(f.source.clone())).service(server);
    let req = || Request::post(RESOURCE).body(Full::new(Bytes::new())).expect("req");
    assert_eq!(client.clone().oneshot(req()).await.expect("sent").status(), StatusCode::OK);
    assert_eq!(client.clone().oneshot(req()).await.expect("sent").status(), StatusCode::OK);
    assert_eq!(f.calls(), 1);
    let first = seen.lock().expect("lock")[0].clone();
    assert!(first.starts_with("Bearer ey"), "{first}");
    assert_eq!(seen.lock().expect("lock")[1], first);
    // the server says invalid_token: the cached token is dropped and the next request re-grants
    refuse_next.store(true, Ordering::SeqCst);
    assert_eq!(client.clone().oneshot(req()).await.expect("sent").status(), StatusCode::UNAUTHORIZED);
    f.rotate();
    assert_eq!(client.clone().oneshot(req()).await.expect("sent").status(), StatusCode::OK);
    assert_eq!(f.calls(), 2);
    assert_ne!(seen.lock().expect("lock")[3], first);
    // without a token the request is not sent: the error surfaces
    std::fs::remove_file(f.dir.path().join("token")).expect("rm");
    f.clock.advance(Duration::from_secs(3600));
    let err = client.clone().oneshot(req()).await.expect_err("no token");
    assert!(err.to_string().contains("workload assertion"), "{err}");
    assert_eq!(seen.lock().expect("lock").len(), 4);
}

#[tokio::test]
async fn dpop_bound_tokens_use_the_dpop_scheme() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = ClientFixture::new();
    let assertion = f.keys.k8s.sign(&k8s(TOKEN_URL, "payments", "agent"));
    std::fs::write(dir.path().join("t"), &assertion).expect("write");
    let answers = |body: Value| {
        service_fn(move |_req: Request<Full<Bytes>>| {
            let body = body.clone();
            async move { Ok::<_, BoxError>(Response::new(Full::new(Bytes::from(body.to_string())))) }
        })
    };
    let source = |body: Value| {
        WorkloadTokenSource::builder(dir.path().join("t"), TOKEN_URL, RESOURCE)
            .transport(Arc::new(ServiceTransport::new(answers(body), Duration::from_secs(5))))
            .build()
            .expect("source")
    };
    let t = source(json!({"access_token": "abc.def.ghi", "token_type": "DPoP", "expires_in": 60}))
        .token()
        .await
        .expect("t");
    assert!(t.is_dpop());
    assert_eq!(t.authorization().expect("hv"), "DPoP abc.def.ghi");
    for bad in [
        json!({"token_type": "Bearer"}),
        json!({"access_token": "a b", "token_type": "Bearer"}),
        json!({"access_token": "abc", "token_type": "mac"}),
        json!({"access_token": "abc", "token_type": "Bearer", "expires_in": -5}),
    ] {
        assert!(matches!(source(bad).token().await, Err(TokenSourceError::InvalidResponse(_))));
    }
}

mod id_jag;
