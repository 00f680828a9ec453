//! Fixtures shared by the fuzz targets and the seed generator (`cargo run --example seeds`).
//!
//! Keys are Ed25519 from fixed seeds, so EdDSA signatures are deterministic: a checked-in seed
//! (a token, a proof) stays valid for the layers built here, and a crash found by libFuzzer
//! reproduces from its input alone. The layers are the real ones, configured the way the gateway
//! configures them, with a manual clock standing at [`NOW`].

use std::future::Future;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_enterprise_dpop::{DpopLayer, ExternalOrigin, StaticKeyValidator, jwk_thumbprint};
use mcp_enterprise_sso::{Issuer, Keys, SsoLayer};
use serde_json::{Value, json};

/// The instant every fixture clock stands at (seconds since the epoch).
pub const NOW: u64 = 1_800_000_000;
/// The trusted token issuer.
pub const ISSUER: &str = "https://idp.example.com";
/// The protected resource (token audience, DPoP `htu`).
pub const RESOURCE: &str = "https://mcp.example.com/mcp";
/// The resource's external origin.
pub const ORIGIN: &str = "https://mcp.example.com";
/// The `kid` of the issuer's key in its JWKS.
pub const IDP_KID: &str = "idp-1";

/// An Ed25519 key made from a fixed seed.
pub struct Ed25519 {
    pair: Ed25519KeyPair,
    jwk: Value,
}

impl Ed25519 {
    /// The key for `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let pair = match Ed25519KeyPair::from_seed_unchecked(&seed) {
            Ok(pair) => pair,
            Err(e) => panic!("a 32-byte Ed25519 seed is always accepted: {e}"),
        };
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
        Self { pair, jwk }
    }

    /// The public JWK (no `kid`).
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The RFC 7638 thumbprint of [`jwk`](Self::jwk).
    pub fn thumbprint(&self) -> String {
        jwk_thumbprint(&self.jwk).unwrap_or_default()
    }

    /// A compact JWS over exactly these header and claims (the header is not altered).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        self.sign_parts(&b64(header.to_string().as_bytes()), &b64(claims.to_string().as_bytes()))
    }

    /// A compact JWS over already encoded parts.
    pub fn sign_parts(&self, header: &str, payload: &str) -> String {
        let input = format!("{header}.{payload}");
        let sig = self.pair.sign(input.as_bytes());
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

/// Base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The token issuer's key.
pub fn idp() -> &'static Ed25519 {
    static KEY: OnceLock<Ed25519> = OnceLock::new();
    KEY.get_or_init(|| Ed25519::from_seed([7; 32]))
}

/// The DPoP client's key.
pub fn client() -> &'static Ed25519 {
    static KEY: OnceLock<Ed25519> = OnceLock::new();
    KEY.get_or_init(|| Ed25519::from_seed([9; 32]))
}

/// A key nobody trusts.
pub fn attacker() -> &'static Ed25519 {
    static KEY: OnceLock<Ed25519> = OnceLock::new();
    KEY.get_or_init(|| Ed25519::from_seed([13; 32]))
}

/// The issuer's JWKS: its key with [`IDP_KID`].
pub fn idp_jwks() -> Value {
    let mut jwk = idp().jwk().clone();
    jwk["kid"] = json!(IDP_KID);
    jwk["alg"] = json!("EdDSA");
    json!({"keys": [jwk]})
}

/// Valid access-token claims for [`RESOURCE`], bound to `jkt` when given.
pub fn token_claims(jkt: Option<&str>) -> Value {
    let mut claims = json!({"iss": ISSUER, "sub": "alice", "aud": RESOURCE, "exp": NOW + 600, "iat": NOW,
        "nbf": NOW - 10, "scope": "mcp", "client_id": "app"});
    if let Some(jkt) = jkt {
        claims["cnf"] = json!({"jkt": jkt});
    }
    claims
}

/// A valid access token (deterministic), bound to `jkt` when given.
pub fn access_token(jkt: Option<&str>) -> String {
    idp().sign(&json!({"alg": "EdDSA", "typ": "at+jwt", "kid": IDP_KID}), &token_claims(jkt))
}

/// The SSO layer trusting [`ISSUER`] with its static JWKS, clock at [`NOW`] (built once).
pub fn sso_layer() -> &'static SsoLayer {
    static LAYER: OnceLock<SsoLayer> = OnceLock::new();
    LAYER.get_or_init(build_sso_layer)
}

fn build_sso_layer() -> SsoLayer {
    let issuer = Issuer::new(ISSUER).keys(Keys::Static(idp_jwks()));
    match SsoLayer::builder(RESOURCE).issuer(issuer).clock(Arc::new(mcp_enterprise_sso::ManualClock::at(NOW))).build() {
        Ok(layer) => layer,
        Err(e) => panic!("fixture SSO layer: {e}"),
    }
}

/// The DPoP layer (nonces off, no replay store) with a static token validator, clock at [`NOW`]
/// (built once).
pub fn dpop_layer() -> &'static DpopLayer {
    static LAYER: OnceLock<DpopLayer> = OnceLock::new();
    LAYER.get_or_init(build_dpop_layer)
}

fn build_dpop_layer() -> DpopLayer {
    let clock = Arc::new(mcp_enterprise_dpop::ManualClock::at(NOW));
    let validator = match StaticKeyValidator::new(ISSUER, vec![RESOURCE.into()], &idp_jwks(), clock.clone()) {
        Ok(v) => v,
        Err(e) => panic!("fixture validator: {e}"),
    };
    // no replay store: each input is judged alone, and the oracle cannot know which jtis earlier
    // inputs used (replay is on by default; its store is tested in the dpop crate and tests/it)
    match DpopLayer::builder(Arc::new(validator), ExternalOrigin::Fixed(ORIGIN.into()))
        .clock(clock)
        .insecure_without_replay_check()
        .build()
    {
        Ok(layer) => layer,
        Err(e) => panic!("fixture DPoP layer: {e}"),
    }
}

/// Valid DPoP proof claims for `POST` [`RESOURCE`] with `token`.
pub fn proof_claims(token: &str, jti: &str) -> Value {
    json!({"jti": jti, "htm": "POST", "htu": RESOURCE, "iat": NOW,
        "ath": mcp_enterprise_dpop::access_token_hash(token)})
}

/// A valid DPoP proof by [`client`] (deterministic).
pub fn proof(token: &str, jti: &str) -> String {
    client().sign(&json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": client().jwk()}), &proof_claims(token, jti))
}

/// Runs a future to completion on a shared current-thread runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RUNTIME.get_or_init(|| match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    });
    rt.block_on(future)
}

/// Splits `data` at the given cut points (each taken modulo `data.len() + 1`), in order.
pub fn chunks(data: &[u8], cuts: &[u16]) -> Vec<bytes::Bytes> {
    let mut points: Vec<usize> = cuts.iter().map(|c| usize::from(*c) % (data.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut out = Vec::with_capacity(points.len() + 1);
    let mut last = 0;
    for p in points.into_iter().chain([data.len()]) {
        out.push(bytes::Bytes::copy_from_slice(&data[last..p]));
        last = p;
    }
    out
}

/// What a layer answered.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: http::StatusCode,
    /// The response headers.
    pub headers: http::HeaderMap,
    /// The response body.
    pub body: bytes::Bytes,
    /// Whether the request reached the service behind the layer.
    pub reached: bool,
    /// The principal the inner service was handed.
    pub principal: Option<mcp_enterprise_core::Principal>,
    /// The inspected message the inner service was handed.
    pub mcp: Option<mcp_enterprise_core::McpRequest>,
}

impl Answer {
    /// The whole response as text (for "never echoes" checks).
    pub fn text(&self) -> String {
        let mut out = String::from_utf8_lossy(&self.body).into_owned();
        for (name, value) in &self.headers {
            out.push_str(name.as_str());
            out.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
        out
    }
}

/// Sends `POST /mcp` with these headers through `layer` in front of [`Inner`]. `None` when a
/// header cannot be sent (bytes HTTP does not allow in a header value).
pub fn send<L, B>(layer: &L, headers: &[(&str, &[u8])], body: &[u8]) -> Option<Answer>
where
    L: tower::Layer<Inner>,
    L::Service: tower::Service<
            http::Request<http_body_util::Full<bytes::Bytes>>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        >,
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: std::fmt::Display,
{
    send_chunked(layer, headers, vec![bytes::Bytes::copy_from_slice(body)])
}

/// [`send`] with the body arriving in these chunks.
pub fn send_chunked<L, B, Req>(layer: &L, headers: &[(&str, &[u8])], body: Req) -> Option<Answer>
where
    L: tower::Layer<Inner>,
    L::Service:
        tower::Service<http::Request<Req::Body>, Response = http::Response<B>, Error = std::convert::Infallible>,
    B: http_body::Body<Data = bytes::Bytes>,
    B::Error: std::fmt::Display,
    Req: IntoBody,
{
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let mut req = http::Request::post("/mcp");
    for (name, value) in headers {
        req = req.header(*name, http::HeaderValue::from_bytes(value).ok()?);
    }
    let req = req.body(body.into_body()).ok()?;
    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    let inner = Inner(seen.clone());
    let res = match block_on(layer.layer(inner).oneshot(req)) {
        Ok(res) => res,
        Err(never) => match never {},
    };
    let (parts, body) = res.into_parts();
    let body = match block_on(body.collect()) {
        Ok(collected) => collected.to_bytes(),
        Err(e) => panic!("response body failed: {e}"),
    };
    let seen = seen.lock().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default();
    Some(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
        reached: seen.reached,
        principal: seen.principal,
        mcp: seen.mcp,
    })
}

/// A request body made from byte chunks.
pub trait IntoBody {
    /// The body type.
    type Body;
    /// Makes the body.
    fn into_body(self) -> Self::Body;
}

impl IntoBody for Vec<bytes::Bytes> {
    type Body = http_body_util::Full<bytes::Bytes>;
    fn into_body(self) -> Self::Body {
        http_body_util::Full::new(self.concat().into())
    }
}

/// A body that yields its chunks one frame at a time.
#[derive(Debug)]
pub struct Chunked(pub std::collections::VecDeque<bytes::Bytes>);

impl IntoBody for Chunked {
    type Body = Chunked;
    fn into_body(self) -> Self::Body {
        self
    }
}

impl http_body::Body for Chunked {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }
}

#[derive(Debug, Default)]
struct Seen {
    reached: bool,
    principal: Option<mcp_enterprise_core::Principal>,
    mcp: Option<mcp_enterprise_core::McpRequest>,
}

/// The service behind the layer under test: `200 reached`, remembering what it was handed.
#[derive(Clone, Debug)]
pub struct Inner(Arc<std::sync::Mutex<Seen>>);

impl<B> tower::Service<http::Request<B>> for Inner {
    type Response = http::Response<http_body_util::Full<bytes::Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if let Ok(mut seen) = self.0.lock() {
            seen.reached = true;
            seen.principal = req.extensions().get::<mcp_enterprise_core::Principal>().cloned();
            seen.mcp = mcp_enterprise_core::McpRequest::of(req.extensions()).cloned();
        }
        std::future::ready(Ok(http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"reached")))))
    }
}

/// One challenge read back: the scheme and its `(name, value)` parameters.
pub type ParsedChallenge = (String, Vec<(String, String)>);

/// Parses a `WWW-Authenticate` value (RFC 9110 §11.6.1) into challenges: scheme and
/// `(name, value)` parameters with quoted strings unescaped. `None` when it is not well formed.
/// An independent reader for checking the challenges our layers write.
pub fn parse_www_authenticate(value: &str) -> Option<Vec<ParsedChallenge>> {
    fn token_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
    }
    let s: Vec<char> = value.chars().collect();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == ' ' || s[*i] == '\t') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| -> Option<String> {
        let start = *i;
        while *i < s.len() && token_char(s[*i]) {
            *i += 1;
        }
        (*i > start).then(|| s[start..*i].iter().collect())
    };
    let mut out: Vec<ParsedChallenge> = Vec::new();
    loop {
        skip_ws(&mut i);
        let scheme = token(&mut i)?;
        let mut params = Vec::new();
        skip_ws(&mut i);
        // parameters until a new scheme (a token not followed by '=') or the end
        loop {
            let save = i;
            let Some(name) = token(&mut i) else { break };
            skip_ws(&mut i);
            if i >= s.len() || s[i] != '=' {
                i = save;
                break;
            }
            i += 1;
            skip_ws(&mut i);
            let value = if i < s.len() && s[i] == '"' {
                i += 1;
                let mut v = String::new();
                loop {
                    match s.get(i)? {
                        '"' => {
                            i += 1;
                            break;
                        }
                        '\\' => {
                            v.push(*s.get(i + 1)?);
                            i += 2;
                        }
                        c => {
                            v.push(*c);
                            i += 1;
                        }
                    }
                }
                v
            } else {
                token(&mut i)?
            };
            params.push((name, value));
            skip_ws(&mut i);
            if i < s.len() && s[i] == ',' {
                i += 1;
                skip_ws(&mut i);
            } else {
                break;
            }
        }
        out.push((scheme, params));
        skip_ws(&mut i);
        if i >= s.len() {
            return Some(out);
        }
        if s[i] == ',' {
            i += 1;
        }
    }
}
