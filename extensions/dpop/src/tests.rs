//! Service-level tests with our own signer and a static validator: the happy path, nonces,
//! challenges, `Date`, bearer handling, replay.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use mcp_enterprise_core::auth::{AuthChain, Authenticator};
use mcp_enterprise_core::{AuthMethod, PackBody, Principal, PrincipalKind};
use serde_json::json;
use tower::{Layer, Service, ServiceExt, service_fn};

use crate::{
    BearerMode, ClientKeyAlg, DpopError, DpopLayer, DpopSigner, ExternalOrigin, ManualClock, MemoryReplayStore,
    NonceKey, NonceKeys, NonceMode, StaticKeyValidator,
};

const ORIGIN: &str = "https://mcp.example.com";
const URL: &str = "https://mcp.example.com/mcp";
const ISS: &str = "https://idp.example.com";
const NOW: u64 = 1_800_000_000;

/// The IdP: signs access tokens with an ES256 key (our signer's key doubles as one).
struct Idp {
    key: DpopSigner,
}

impl Idp {
    fn token(&self, jkt: Option<&str>, aud: &str) -> String {
        let header = json!({"alg": "ES256", "typ": "at+jwt"});
        let mut claims = json!({"iss": ISS, "sub": "svc", "client_id": "svc", "aud": aud, "exp": NOW + 600, "iat": NOW, "scope": "mcp"});
        if let Some(jkt) = jkt {
            claims["cnf"] = json!({"jkt": jkt});
        }
        self.key.sign_jws(&header, &claims).expect("sign")
    }
}

fn layer(
    idp: &Idp,
    clock: &ManualClock,
    tweak: impl FnOnce(crate::DpopLayerBuilder) -> crate::DpopLayerBuilder,
) -> DpopLayer {
    let jwks = json!({"keys": [idp.key.public_jwk()]});
    let validator = StaticKeyValidator::new(ISS, vec![URL.into()], &jwks, Arc::new(clock.clone())).expect("validator");
    tweak(DpopLayer::builder(Arc::new(validator), ExternalOrigin::Fixed(ORIGIN.into())).clock(Arc::new(clock.clone())))
        .build()
        .expect("layer")
}

/// Stands in for an authentication layer inside DPoP (its service is [`bearer_stand_in`]).
#[derive(Debug, Clone)]
struct StandIn;

impl<S> Layer<S> for StandIn {
    type Service = S;
    fn layer(&self, inner: S) -> S {
        inner
    }
}

impl Authenticator for StandIn {}

async fn send(layer: &DpopLayer, req: Request<Full<Bytes>>) -> Response<PackBody> {
    let mut svc = AuthChain::new(Some(layer.clone()), Some(StandIn)).layer(service_fn(bearer_stand_in));
    svc.ready().await.expect("ready").call(req).await.expect("infallible")
}

/// An inner bearer layer: no principal → 401 with its own challenge.
async fn bearer_stand_in(req: Request<Full<Bytes>>) -> Result<Response<PackBody>, Infallible> {
    {
        let mut res = Response::new(PackBody::empty());
        match req.extensions().get::<Principal>() {
            Some(p) => assert_eq!(p.auth_method(), AuthMethod::Dpop),
            None => {
                *res.status_mut() = StatusCode::UNAUTHORIZED;
                res.headers_mut().insert("www-authenticate", "Bearer resource_metadata=\"x\"".parse().expect("hv"));
            }
        }
        Ok(res)
    }
}

fn request(token: &str, proof: &str) -> Request<Full<Bytes>> {
    Request::post("/mcp")
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("request")
}

fn challenge(res: &Response<PackBody>) -> String {
    res.headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn setup() -> (Idp, DpopSigner, ManualClock) {
    let idp = Idp { key: DpopSigner::generate(ClientKeyAlg::Es256).expect("idp key") };
    let clock = ManualClock::at(NOW);
    let client = DpopSigner::generate(ClientKeyAlg::Es256).expect("client key").with_clock(Arc::new(clock.clone()));
    (idp, client, clock)
}

#[tokio::test]
async fn valid_request_passes_with_date_and_principal() {
    let (idp, client, clock) = setup();
    let l = layer(&idp, &clock, |b| b);
    let token = idp.token(Some(client.thumbprint()), URL);
    let res = send(&l, request(&token, &client.proof("POST", URL, Some(&token), None).expect("proof"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["date"], "Fri, 15 Jan 2027 08:00:00 GMT");
}

#[tokio::test]
async fn key_binding_and_token_problems_are_invalid_token() {
    let (idp, client, clock) = setup();
    let l = layer(&idp, &clock, |b| b);
    let other = DpopSigner::generate(ClientKeyAlg::Es256).expect("key").with_clock(Arc::new(clock.clone()));
    let token = idp.token(Some(other.thumbprint()), URL);
    let res = send(&l, request(&token, &client.proof("POST", URL, Some(&token), None).expect("proof"))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let c = challenge(&res);
    assert!(
        c.starts_with(
            "DPoP algs=\"ES256 ES384 ES512 RS256 RS384 RS512 PS256 PS384 PS512 EdDSA Ed25519\", error=\"invalid_token\""
        ),
        "{c}"
    );
    let unbound = idp.token(None, URL);
    let res = send(&l, request(&unbound, &client.proof("POST", URL, Some(&unbound), None).expect("proof"))).await;
    assert!(matches!(res.extensions().get::<DpopError>(), Some(DpopError::InvalidToken(_))));
    let wrong_aud = idp.token(Some(client.thumbprint()), "https://not-this-server.example.com/mcp");
    let res = send(&l, request(&wrong_aud, &client.proof("POST", URL, Some(&wrong_aud), None).expect("proof"))).await;
    assert!(challenge(&res).contains("error=\"invalid_token\""));
}

#[tokio::test]
async fn required_nonce_flow_and_replicas() {
    let (idp, client, clock) = setup();
    let secret = [3u8; 32];
    let keys = || NonceKeys::new(NonceKey::new(1, &secret), Duration::from_secs(120));
    let a = layer(&idp, &clock, |b| b.nonce(NonceMode::Required(keys())));
    let b = layer(&idp, &clock, |b| b.nonce(NonceMode::Required(keys())));
    let token = idp.token(Some(client.thumbprint()), URL);
    let res = send(&a, request(&token, &client.proof("POST", URL, Some(&token), None).expect("proof"))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&res).contains("error=\"use_dpop_nonce\""));
    let nonce = res.headers()["dpop-nonce"].to_str().expect("ascii").to_owned();
    // replica B accepts replica A's nonce
    let res = send(&b, request(&token, &client.proof("POST", URL, Some(&token), Some(&nonce)).expect("proof"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    // an expired nonce gets a fresh one
    clock.advance(Duration::from_secs(121));
    let res = send(&a, request(&token, &client.proof("POST", URL, Some(&token), Some(&nonce)).expect("proof"))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&res).contains("use_dpop_nonce"));
    assert_ne!(res.headers()["dpop-nonce"], nonce.as_str());
}

#[tokio::test]
async fn replayed_jti_is_refused_with_the_cache_on() {
    let (idp, client, clock) = setup();
    let l = layer(&idp, &clock, |b| b.replay_store(Arc::new(MemoryReplayStore::new(100))));
    let token = idp.token(Some(client.thumbprint()), URL);
    let proof = client.proof("POST", URL, Some(&token), None).expect("proof");
    assert_eq!(send(&l, request(&token, &proof)).await.status(), StatusCode::OK);
    let res = send(&l, request(&token, &proof)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.extensions().get::<DpopError>(), Some(&DpopError::Replayed));
    // without the cache the ±5 min window is the defence
    let open = layer(&idp, &clock, |b| b);
    assert_eq!(send(&open, request(&token, &proof)).await.status(), StatusCode::OK);
    clock.advance(Duration::from_secs(301));
    assert_eq!(send(&open, request(&token, &proof)).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bearer_handling() {
    let (idp, client, clock) = setup();
    let only = layer(&idp, &clock, |b| {
        b.resource_metadata("https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
    });
    let bearer =
        Request::post("/mcp").header("authorization", "Bearer abc").body(Full::new(Bytes::new())).expect("req");
    let res = send(&only, bearer).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&res).starts_with("DPoP algs="));
    let none = Request::post("/mcp").body(Full::new(Bytes::new())).expect("req");
    let res = send(&only, none).await;
    assert!(
        challenge(&res)
            .contains("resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\"")
    );
    assert!(!challenge(&res).contains("error="), "no token: no error code");
    // with bearer also accepted, the inner layer decides and both challenges go out
    let both = layer(&idp, &clock, |b| b.bearer(BearerMode::AlsoBearer));
    let none = Request::post("/mcp").body(Full::new(Bytes::new())).expect("req");
    let res = send(&both, none).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&res),
        "Bearer resource_metadata=\"x\" | DPoP algs=\"ES256 ES384 ES512 RS256 RS384 RS512 PS256 PS384 PS512 EdDSA Ed25519\""
    );
    assert!(res.headers().contains_key("date"));
    // unarmed (nothing authenticates inside it), a bearer or anonymous request is refused: 500
    let mut alone = both.layer(service_fn(bearer_stand_in));
    let none = Request::post("/mcp").body(Full::new(Bytes::new())).expect("req");
    let res = alone.ready().await.expect("ready").call(none).await.expect("infallible");
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let miswired = res.extensions().get::<mcp_enterprise_core::Miswired>().expect("miswired");
    assert!(miswired.needs().contains("authentication layer inside"));
    // and a DPoP request is still fully checked
    let token = idp.token(Some(client.thumbprint()), URL);
    let res = send(&both, request(&token, &client.proof("POST", URL, Some(&token), None).expect("proof"))).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn malformed_credentials_and_headers() {
    let (idp, client, clock) = setup();
    let l = layer(&idp, &clock, |b| b);
    let token = idp.token(Some(client.thumbprint()), URL);
    let proof = client.proof("POST", URL, Some(&token), None).expect("proof");
    let mut two = request(&token, &proof);
    two.headers_mut().append("dpop", proof.parse().expect("hv"));
    assert_eq!(send(&l, two).await.status(), StatusCode::UNAUTHORIZED);
    let folded = request(&token, &format!("{proof}, {proof}"));
    assert!(challenge(&send(&l, folded).await).contains("invalid_dpop_proof"));
    let missing = Request::post("/mcp")
        .header("authorization", format!("DPoP {token}"))
        .body(Full::new(Bytes::new()))
        .expect("req");
    assert!(challenge(&send(&l, missing).await).contains("invalid_dpop_proof"));
    let big = request(&token, &format!("{}.{}.{}", "e".repeat(3000), "e".repeat(3000), "e".repeat(2200)));
    assert!(challenge(&send(&l, big).await).contains("invalid_dpop_proof"));
    // a proof whose header names `typ` twice: refused as ambiguous
    let parts: Vec<&str> = proof.split('.').collect();
    let header = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("utf8");
    let doubled = header.replacen('{', r#"{"typ":"JWT","#, 1);
    let dup = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(doubled), parts[1], parts[2]);
    let answer = challenge(&send(&l, request(&token, &dup)).await);
    assert!(answer.contains("invalid_dpop_proof") && answer.contains("appears twice"), "{answer}");
    // a GET proof for a POST
    let get = request(&token, &client.proof("GET", URL, Some(&token), None).expect("proof"));
    assert!(challenge(&send(&l, get).await).contains("invalid_dpop_proof"));
    // normalised htu variants are the same URI
    for variant in ["https://MCP.EXAMPLE.COM:443/mcp?x=1#frag", "https://mcp.example.com/mcp/"] {
        let ok = request(&token, &client.proof("POST", variant, Some(&token), None).expect("proof"));
        assert_eq!(send(&l, ok).await.status(), StatusCode::OK, "{variant}");
    }
}

/// A request an outer layer of the chain (workload identity) authenticated goes through, whatever
/// its `Authorization` header; one without a principal is still judged.
#[tokio::test]
async fn a_principal_from_an_outer_layer_is_not_judged_again() {
    let (idp, _client, clock) = setup();
    let l = layer(&idp, &clock, |b| b);
    let inner = service_fn(|req: Request<Full<Bytes>>| async move {
        let method = req.extensions().get::<Principal>().map(Principal::auth_method);
        assert_eq!(method, Some(AuthMethod::Workload), "the outer layer's principal reaches the service");
        Ok::<_, Infallible>(Response::new(PackBody::empty()))
    });
    let mut svc = AuthChain::new(Some(l.clone()), Some(StandIn)).layer(inner);
    let mut req = Request::post("/mcp")
        .header("authorization", "Bearer workload.jwt.x")
        .body(Full::new(Bytes::new()))
        .expect("req");
    req.extensions_mut().insert(
        Principal::builder("https://workloads.example", "agent", PrincipalKind::Workload, AuthMethod::Workload).build(),
    );
    let res = svc.ready().await.expect("ready").call(req).await.expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    let bearer = Request::post("/mcp")
        .header("authorization", "Bearer workload.jwt.x")
        .body(Full::new(Bytes::new()))
        .expect("req");
    assert_eq!(send(&l, bearer).await.status(), StatusCode::UNAUTHORIZED);
}
