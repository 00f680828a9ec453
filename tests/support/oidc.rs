//! A real, certified OpenID provider for the SSO tests: npm `oidc-provider` (panva), run by
//! `tests/peers/oidc-provider.mjs` on Node 22, on 127.0.0.1, plus JOSE helpers from npm `jose`
//! (`tests/peers/jose-cli.mjs`) to generate keys and sign arbitrary tokens independently of the
//! code under test.
//!
//! What the provider offers (see [`OidcOptions`] for the knobs):
//!
//! - issuer `http://127.0.0.1:PORT` or `http://127.0.0.1:PORT/<path>`; discovery at
//!   `/.well-known/openid-configuration` and `/.well-known/oauth-authorization-server` (for a path
//!   issuer: RFC 8414 path insertion and/or OpenID appending, [`PathDiscovery`]), JWKS at
//!   `/jwks`, token endpoint `/token`, introspection `/token/introspection`, revocation
//!   `/token/revocation`;
//! - the `client_credentials` grant with `client_secret_basic` for the clients [`JWT_CLIENT`],
//!   [`OPAQUE_CLIENT`], [`DPOP_CLIENT`] (DPoP-bound tokens) and [`INTROSPECTION_CLIENT`] (the
//!   resource server's own credentials; may introspect any token, gets no tokens);
//! - RFC 8707 resource indicators: a token requested for a resource of
//!   [`OidcOptions::jwt_resources`] is an RFC 9068 JWT (`typ: at+jwt`, `aud` = the resource,
//!   `iss`, `sub` = `client_id`, `client_id`, `scope`, `jti`, `iat`, `exp`), signed by the first
//!   key of [`OidcOptions::keys`]; for [`OidcOptions::opaque_resources`] it is opaque (only
//!   introspection can read it). The granted `scope` is the requested scopes that are in
//!   [`OidcOptions::scopes`] (others are dropped silently). Any other resource: `invalid_target`.
//!   No `resource` at all: an opaque token without audience.
//!
//! State (issued opaque tokens) lives in the provider's memory: a restart forgets it.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use crate::artifacts::Artifacts;
use crate::peers::{Peers, free_loopback_port, read_log};
use crate::process::ChildGuard;

/// The provider script in `tests/peers`.
pub const PROVIDER_SCRIPT: &str = "oidc-provider.mjs";
/// The JOSE helper script in `tests/peers`.
pub const JOSE_SCRIPT: &str = "jose-cli.mjs";

/// The scopes every resource server accepts by default ([`OidcOptions::scopes`]).
pub const DEFAULT_SCOPES: &str = "mcp:tools mcp:tools:read mcp:admin";
/// The default resource that gets JWT access tokens.
pub const DEFAULT_JWT_RESOURCE: &str = "https://mcp.test/mcp";
/// The default resource that gets opaque access tokens.
pub const DEFAULT_OPAQUE_RESOURCE: &str = "https://mcp-opaque.test/mcp";
/// Default access token lifetime.
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(300);

/// How long the provider may take to listen (Node start, module loading) on a loaded machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on every HTTP exchange with the provider.
const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// A client registered at the provider, authenticating with `client_secret_basic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OidcClient {
    /// `client_id`.
    pub id: &'static str,
    /// `client_secret`.
    pub secret: &'static str,
}

impl OidcClient {
    /// The `Authorization` header value for `client_secret_basic` (RFC 6749 §2.3.1: id and secret
    /// form-urlencoded, then Base64).
    pub fn basic_authorization(&self) -> String {
        let pair = format!("{}:{}", form_urlencode(self.id), form_urlencode(self.secret));
        format!("Basic {}", STANDARD.encode(pair))
    }
}

/// Gets Bearer tokens (`client_credentials`); meant for the JWT resource.
pub const JWT_CLIENT: OidcClient =
    OidcClient { id: "mcp-jwt-client", secret: "mcp-jwt-client-secret-5c1f0e2d9a8b7c6d5e4f3a2b1c0d" };
/// Gets Bearer tokens (`client_credentials`); meant for the opaque resource.
pub const OPAQUE_CLIENT: OidcClient =
    OidcClient { id: "mcp-opaque-client", secret: "mcp-opaque-client-secret-9e8d7c6b5a4f3e2d1c0b9a8f" };
/// Registered with `dpop_bound_access_tokens: true`: its token requests need a DPoP proof and
/// its tokens are `token_type: DPoP` with `cnf.jkt`.
pub const DPOP_CLIENT: OidcClient =
    OidcClient { id: "mcp-dpop-client", secret: "mcp-dpop-client-secret-0a1b2c3d4e5f6a7b8c9d0e1f" };
/// The resource server's credentials for the introspection endpoint (no grant types; it may
/// introspect tokens of every client).
pub const INTROSPECTION_CLIENT: OidcClient =
    OidcClient { id: "mcp-resource-server", secret: "mcp-resource-server-secret-7f6e5d4c3b2a1f0e9d8c7b6a" };

/// Every client the provider registers.
pub const ALL_CLIENTS: [OidcClient; 4] = [JWT_CLIENT, OPAQUE_CLIENT, DPOP_CLIENT, INTROSPECTION_CLIENT];

/// A JWS algorithm the helpers can generate keys for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigningAlg {
    /// ECDSA P-256 SHA-256.
    Es256,
    /// ECDSA P-384 SHA-384.
    Es384,
    /// RSASSA-PKCS1-v1_5 SHA-256 (2048-bit keys).
    Rs256,
    /// RSASSA-PSS SHA-256 (2048-bit keys).
    Ps256,
    /// Ed25519 (`"alg": "EdDSA"`).
    EdDsa,
}

impl SigningAlg {
    /// The JWS `alg` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
            Self::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A private signing key as a JWK with `kid` (by default its RFC 7638 thumbprint, as `jose`
/// computes it), `alg` and `use: "sig"`.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningKey {
    jwk: Value,
}

impl SigningKey {
    /// Generates a new key with npm `jose`.
    pub async fn generate(peers: &Peers, alg: SigningAlg) -> io::Result<Self> {
        let mut keys = Self::generate_many(peers, &[alg]).await?;
        keys.pop().ok_or_else(|| io::Error::other("jose-cli returned no key"))
    }

    /// Generates one new key per algorithm (one Node run).
    pub async fn generate_many(peers: &Peers, algs: &[SigningAlg]) -> io::Result<Vec<Self>> {
        let mut cmd = peers.node_command();
        cmd.arg(peers.dir().join(JOSE_SCRIPT)).arg("gen-key");
        for alg in algs {
            cmd.arg(alg.as_str());
        }
        let stdout = run_node(cmd, None).await?;
        let keys: Vec<Value> = serde_json::from_slice(&stdout).map_err(invalid_data)?;
        keys.into_iter().map(Self::from_private_jwk).collect()
    }

    /// Wraps a private JWK; it must have string `kid` and `alg` members.
    pub fn from_private_jwk(jwk: Value) -> io::Result<Self> {
        for member in ["kid", "alg", "kty"] {
            if jwk.get(member).and_then(Value::as_str).is_none() {
                return Err(invalid_data(format!("JWK without string {member:?}: {jwk}")));
            }
        }
        Ok(Self { jwk })
    }

    /// The same key under another `kid` (e.g. to collide with a published one).
    pub fn with_kid(mut self, kid: &str) -> Self {
        self.jwk["kid"] = Value::from(kid);
        self
    }

    /// `kid`.
    pub fn kid(&self) -> &str {
        self.jwk["kid"].as_str().unwrap_or_default()
    }

    /// `alg`.
    pub fn alg(&self) -> &str {
        self.jwk["alg"].as_str().unwrap_or_default()
    }

    /// The private JWK.
    pub fn private_jwk(&self) -> &Value {
        &self.jwk
    }

    /// The public JWK (private members removed), as the provider publishes it.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = self.jwk.clone();
        if let Some(members) = jwk.as_object_mut() {
            for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
                members.remove(private);
            }
        }
        jwk
    }

    /// Signs `payload` (exact bytes) under exactly the protected `header`, with npm `jose`; when
    /// `header` has no `alg`, the key's is added. No other member is added (no `kid`, no `typ`).
    pub async fn sign(&self, peers: &Peers, header: &Value, payload: &[u8]) -> io::Result<String> {
        let mut header = header.clone();
        if header.get("alg").is_none() {
            header["alg"] = Value::from(self.alg());
        }
        jose_sign(peers, &self.jwk, &header, payload).await
    }

    /// [`SigningKey::sign`] of the JSON serialization of `claims`.
    pub async fn sign_claims(&self, peers: &Peers, header: &Value, claims: &Value) -> io::Result<String> {
        self.sign(peers, header, &serde_json::to_vec(claims).map_err(invalid_data)?).await
    }
}

/// Signs `payload` (exact bytes) with any JWK `jose` accepts (including `oct` for HS256) under
/// exactly the protected `header` (which must name an `alg` suiting the key). Returns the compact
/// JWS.
pub async fn jose_sign(peers: &Peers, jwk: &Value, header: &Value, payload: &[u8]) -> io::Result<String> {
    let request = json!({ "jwk": jwk, "header": header, "payload": URL_SAFE_NO_PAD.encode(payload) });
    let mut cmd = peers.node_command();
    cmd.arg(peers.dir().join(JOSE_SCRIPT)).arg("sign");
    let stdout = run_node(cmd, Some(request.to_string().into_bytes())).await?;
    Ok(String::from_utf8(stdout).map_err(invalid_data)?.trim().to_owned())
}

/// Signs a batch of JWTs with npm `jose`'s JWT producer (`SignJWT`) in one Node run: for each
/// `(key, header, claims)`, `claims` under exactly `header` plus the key's `alg` when the header
/// has none. Returns the compact JWTs in order.
pub async fn jose_sign_jwts(peers: &Peers, requests: &[(&SigningKey, Value, Value)]) -> io::Result<Vec<String>> {
    let batch: Vec<Value> = requests
        .iter()
        .map(|(key, header, claims)| {
            let mut header = header.clone();
            if header.get("alg").is_none() {
                header["alg"] = Value::from(key.alg());
            }
            json!({ "jwk": key.private_jwk(), "header": header, "claims": claims })
        })
        .collect();
    let mut cmd = peers.node_command();
    cmd.arg(peers.dir().join(JOSE_SCRIPT)).arg("sign-jwts");
    let stdout = run_node(cmd, Some(Value::Array(batch).to_string().into_bytes())).await?;
    let jwts: Vec<String> = serde_json::from_slice(&stdout).map_err(invalid_data)?;
    if jwts.len() != requests.len() {
        return Err(invalid_data(format!("jose-cli signed {} of {} JWTs", jwts.len(), requests.len())));
    }
    Ok(jwts)
}

/// Decodes (without verifying anything) the protected header and the payload of a compact JWS.
pub fn decode_jws(token: &str) -> Result<(Value, Value), String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(format!("a compact JWS has 3 parts, this has {}: {token}", parts.len()));
    }
    let decode = |part: &str, what: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|err| format!("{what} is not base64url: {err}"))?;
        serde_json::from_slice(&bytes).map_err(|err| format!("{what} is not JSON: {err}"))
    };
    Ok((decode(parts[0], "header")?, decode(parts[1], "payload")?))
}

/// Where discovery documents of a path issuer (`http://host/tenant`) are served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PathDiscovery {
    /// Both RFC 8414 path insertion (`/.well-known/oauth-authorization-server/tenant`,
    /// `/.well-known/openid-configuration/tenant`) and OpenID appending
    /// (`/tenant/.well-known/openid-configuration`, `/tenant/.well-known/oauth-authorization-server`).
    #[default]
    Both,
    /// Only path insertion; the appended forms are 404.
    InsertionOnly,
    /// Only appending; the inserted forms are 404.
    AppendOnly,
}

impl PathDiscovery {
    fn as_str(self) -> &'static str {
        match self {
            Self::Both => "both",
            Self::InsertionOnly => "insertion",
            Self::AppendOnly => "append",
        }
    }
}

/// How to run the provider. Build with `OidcOptions { field: ..., ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct OidcOptions {
    /// Issuer path, e.g. `Some("/tenant-a")` for issuer `http://127.0.0.1:PORT/tenant-a`. It must
    /// start with `/` and must not end with `/`. `None`: issuer `http://127.0.0.1:PORT`.
    pub issuer_path: Option<String>,
    /// Where a path issuer's discovery documents are served.
    pub path_discovery: PathDiscovery,
    /// Published keys; the first signs JWT access tokens. Empty: one new ES256 key is generated.
    pub keys: Vec<SigningKey>,
    /// JWS `alg` of JWT access tokens; `None`: the first key's `alg`.
    pub signing_alg: Option<String>,
    /// Resources (RFC 8707 indicators, the MCP servers' canonical URIs) that get JWT tokens.
    pub jwt_resources: Vec<String>,
    /// Resources that get opaque tokens (for introspection).
    pub opaque_resources: Vec<String>,
    /// Any other resource indicator gets a JWT with that audience (instead of `invalid_target`).
    /// Handy for wrong-audience tokens or when the MCP server's port is not known yet.
    pub any_resource_as_jwt: bool,
    /// Space-separated scopes every resource accepts.
    pub scopes: String,
    /// Access token lifetime (whole seconds, at least 1).
    pub access_token_ttl: Duration,
    /// Whether the token endpoint demands DPoP nonces (`use_dpop_nonce`).
    pub dpop_require_nonce: bool,
    /// Registers the RFC 8693 token-exchange grant (see `tests/peers/oidc-provider.mjs`).
    pub token_exchange: Option<TokenExchangePeer>,
    /// More client registrations (client metadata as the provider takes it).
    pub extra_clients: Vec<Value>,
    /// Issues ID-JAGs (SEP-990) through the RFC 8693 grant (see `tests/peers/oidc-provider.mjs`).
    pub id_jag: Option<IdJagPeer>,
}

/// The ID-JAG side of the provider's token-exchange grant.
#[derive(Debug, Clone, Default)]
pub struct IdJagPeer {
    /// Lifetime of issued ID-JAGs (default 300 s).
    pub ttl: Option<Duration>,
    /// The `client_id` an ID-JAG names per exchanging client (default: the same id).
    pub client_ids: Vec<(String, String)>,
}

/// The token-exchange grant of the provider.
#[derive(Debug, Clone)]
pub struct TokenExchangePeer {
    /// The audience a subject token must have (the gateway's resource URI).
    pub subject_audience: String,
    /// Lifetime of the issued tokens.
    pub ttl: Duration,
    /// Subjects refused with `invalid_grant`.
    pub refuse_subjects: Vec<String>,
}

/// A client of the token-exchange grant: `token_endpoint_auth_method` `method`, secret `secret`
/// (unused for `private_key_jwt`, which takes `public_jwk`).
pub fn token_exchange_client(id: &str, secret: &str, method: &str, public_jwk: Option<&Value>) -> Value {
    let mut client = json!({
        "client_id": id,
        "token_endpoint_auth_method": method,
        "grant_types": ["urn:ietf:params:oauth:grant-type:token-exchange"],
        "response_types": [],
        "redirect_uris": [],
    });
    match public_jwk {
        Some(jwk) => {
            client["jwks"] = json!({ "keys": [jwk] });
            client["token_endpoint_auth_signing_alg"] = json!(jwk["alg"]);
        }
        None => client["client_secret"] = json!(secret),
    }
    client
}

/// A new key pair from npm `jose`: the private key as PKCS#8 PEM and the public JWK.
pub async fn jose_pkcs8_key(peers: &Peers, alg: &str) -> io::Result<(String, Value)> {
    let mut cmd = peers.node_command();
    cmd.arg(peers.dir().join(JOSE_SCRIPT)).arg("gen-pkcs8").arg(alg);
    let out: Value = serde_json::from_slice(&run_node(cmd, None).await?).map_err(invalid_data)?;
    let pem = out["pem"].as_str().ok_or_else(|| invalid_data("no pem"))?.to_owned();
    Ok((pem, out["jwk"].clone()))
}

impl Default for OidcOptions {
    fn default() -> Self {
        Self {
            issuer_path: None,
            path_discovery: PathDiscovery::Both,
            keys: Vec::new(),
            signing_alg: None,
            jwt_resources: vec![DEFAULT_JWT_RESOURCE.to_owned()],
            opaque_resources: vec![DEFAULT_OPAQUE_RESOURCE.to_owned()],
            any_resource_as_jwt: false,
            scopes: DEFAULT_SCOPES.to_owned(),
            access_token_ttl: DEFAULT_ACCESS_TOKEN_TTL,
            dpop_require_nonce: false,
            token_exchange: None,
            extra_clients: Vec::new(),
            id_jag: None,
        }
    }
}

/// An HTTP response from the provider.
#[derive(Debug, Clone)]
pub struct OidcResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers (e.g. `DPoP-Nonce`, `WWW-Authenticate`).
    pub headers: HeaderMap,
    /// The body as text.
    pub text: String,
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub json: Value,
}

impl OidcResponse {
    /// The JSON body if the status is 200, an error quoting the response otherwise.
    pub fn ok_json(self) -> io::Result<Value> {
        if self.status == StatusCode::OK {
            Ok(self.json)
        } else {
            Err(io::Error::other(format!("HTTP {}: {}", self.status, self.text)))
        }
    }
}

/// `oidc-provider` on 127.0.0.1 (see the module documentation). Killed when dropped; its logs,
/// configuration and keys live in a temporary directory kept when the test fails.
#[derive(Debug)]
pub struct OidcProvider {
    // Dropped first: the process dies before its directory goes.
    guard: Option<ChildGuard>,
    http: Client<HttpConnector, Full<Bytes>>,
    peers: Peers,
    options: OidcOptions,
    port: u16,
    issuer: String,
    starts: u32,
    log: PathBuf,
    dir: Artifacts,
}

impl OidcProvider {
    /// Starts the provider on a free loopback port and waits until it listens.
    pub async fn start(peers: &Peers, mut options: OidcOptions) -> io::Result<Self> {
        if options.keys.is_empty() {
            options.keys.push(SigningKey::generate(peers, SigningAlg::Es256).await?);
        }
        let dir = Artifacts::new_in(std::env::temp_dir(), "oidc-provider-")?;
        let log = dir.path().join("provider-1.log");
        let mut provider = Self {
            guard: None,
            http: Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(HttpConnector::new()),
            peers: peers.clone(),
            options,
            port: 0,
            issuer: String::new(),
            starts: 0,
            log,
            dir,
        };
        let mut last_error = None;
        // The free port may be taken between probing and binding: retry with a new one.
        for _ in 0..3 {
            provider.port = free_loopback_port()?;
            match provider.spawn().await {
                Ok(()) => return Ok(provider),
                Err(error) => {
                    let clash = read_log(&provider.log).contains("EADDRINUSE");
                    if !clash {
                        return Err(error);
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("oidc-provider did not start")))
    }

    /// The issuer identifier (`http://127.0.0.1:PORT[/path]`, no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The port; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The current options (with the keys in use).
    pub fn options(&self) -> &OidcOptions {
        &self.options
    }

    /// The published keys; the first signs.
    pub fn keys(&self) -> &[SigningKey] {
        &self.options.keys
    }

    /// The key that signs JWT access tokens.
    pub fn signing_key(&self) -> &SigningKey {
        &self.options.keys[0]
    }

    /// `{issuer}/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// `{issuer}/jwks`.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// `{issuer}/token/introspection`.
    pub fn introspection_endpoint(&self) -> String {
        format!("{}/token/introspection", self.issuer)
    }

    /// `{issuer}/token/revocation`.
    pub fn revocation_endpoint(&self) -> String {
        format!("{}/token/revocation", self.issuer)
    }

    /// RFC 8414 metadata URL: `http://127.0.0.1:PORT/.well-known/oauth-authorization-server[/path]`
    /// (path insertion).
    pub fn oauth_metadata_url(&self) -> String {
        format!("http://{}/.well-known/oauth-authorization-server{}", self.addr(), self.issuer_path())
    }

    /// OpenID Connect Discovery URL: `{issuer}/.well-known/openid-configuration` (appending).
    pub fn openid_configuration_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// The directory holding `jwks.json`, `config-N.json` and `provider-N.log` (N = start count).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The log (stdout and stderr) of the current or last run.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether the provider process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.guard.as_mut().map(ChildGuard::try_wait), Some(Ok(None)))
    }

    /// Kills the provider ("IdP down"): connections to its port are refused until a restart.
    /// Does nothing when it is not running.
    pub fn stop(&mut self) -> io::Result<()> {
        match self.guard.take() {
            Some(guard) => guard.stop().map(drop),
            None => Ok(()),
        }
    }

    /// Stops the provider if it runs, then starts it again on the same port with the current
    /// options (same keys). Issued opaque tokens are forgotten.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.stop()?;
        self.spawn().await
    }

    /// [`OidcProvider::restart`] publishing `keys` (the first signs), e.g. `[new, old]` then
    /// `[new]` for a rotation.
    pub async fn restart_with_keys(&mut self, keys: Vec<SigningKey>) -> io::Result<()> {
        if keys.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the provider needs at least one key"));
        }
        self.options.keys = keys;
        self.restart().await
    }

    /// [`OidcProvider::restart`] with other options, on the same port (empty `keys`: keep the
    /// current ones).
    pub async fn restart_with(&mut self, mut options: OidcOptions) -> io::Result<()> {
        if options.keys.is_empty() {
            options.keys = std::mem::take(&mut self.options.keys);
        }
        self.options = options;
        self.restart().await
    }

    /// `client_credentials` token request: returns the `access_token`, or an error quoting the
    /// provider's answer. `resource` is the RFC 8707 indicator (the audience); `scope` is
    /// space-separated.
    pub async fn client_credentials_token(
        &self,
        client: OidcClient,
        resource: Option<&str>,
        scope: Option<&str>,
    ) -> io::Result<String> {
        let body = self.client_credentials(client, resource, scope, None).await?.ok_json()?;
        body.get("access_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| invalid_data(format!("token response without access_token: {body}")))
    }

    /// `client_credentials` token request, returning the whole response (errors included).
    /// `dpop_proof` goes in the `DPoP` header.
    pub async fn client_credentials(
        &self,
        client: OidcClient,
        resource: Option<&str>,
        scope: Option<&str>,
        dpop_proof: Option<&str>,
    ) -> io::Result<OidcResponse> {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend(resource.map(|resource| ("resource", resource)));
        form.extend(scope.map(|scope| ("scope", scope)));
        let headers: Vec<(&str, &str)> = dpop_proof.map(|proof| ("dpop", proof)).into_iter().collect();
        self.post_form(&self.token_endpoint(), Some(client), &form, &headers).await
    }

    /// Introspects `token` with the [`INTROSPECTION_CLIENT`]; returns the introspection response
    /// (`{"active": false}` for unknown, expired or revoked tokens). JWT access tokens are refused
    /// by the provider (`unsupported_token_type`, an error here).
    pub async fn introspect(&self, token: &str) -> io::Result<Value> {
        self.post_form(&self.introspection_endpoint(), Some(INTROSPECTION_CLIENT), &[("token", token)], &[])
            .await?
            .ok_json()
    }

    /// Revokes `token` (RFC 7009) as `client` (the client it was issued to).
    pub async fn revoke(&self, client: OidcClient, token: &str) -> io::Result<()> {
        self.post_form(&self.revocation_endpoint(), Some(client), &[("token", token)], &[]).await?.ok_json().map(drop)
    }

    /// Every token-exchange request the provider received: its parameters, the client and its
    /// authentication method (see `tests/peers/oidc-provider.mjs`).
    pub async fn token_exchange_records(&self) -> io::Result<Vec<Value>> {
        let url = format!("http://127.0.0.1:{}/__token-exchange/records", self.port);
        let body = self.get(&url).await?.ok_json()?;
        serde_json::from_value(body).map_err(invalid_data)
    }

    /// `GET url` (any URL, e.g. a discovery document).
    pub async fn get(&self, url: &str) -> io::Result<OidcResponse> {
        self.send(Method::GET, url, None, &[], Bytes::new()).await
    }

    /// `POST url` with a form body, optionally authenticated with `client_secret_basic`.
    pub async fn post_form(
        &self,
        url: &str,
        client: Option<OidcClient>,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> io::Result<OidcResponse> {
        let body = form
            .iter()
            .map(|(name, value)| format!("{}={}", form_urlencode(name), form_urlencode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let mut all_headers = vec![("content-type", "application/x-www-form-urlencoded")];
        all_headers.extend_from_slice(headers);
        self.send(Method::POST, url, client, &all_headers, Bytes::from(body)).await
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        client: Option<OidcClient>,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> io::Result<OidcResponse> {
        let mut request = Request::builder().method(method).uri(url);
        if let Some(client) = client {
            request = request.header(header::AUTHORIZATION, client.basic_authorization());
        }
        for (name, value) in headers {
            request = request.header(*name, HeaderValue::from_str(value).map_err(invalid_input)?);
        }
        let request = request.body(Full::new(body)).map_err(invalid_input)?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(io::Error::other)?;
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await.map_err(io::Error::other)?.to_bytes();
            Ok::<_, io::Error>((parts, bytes))
        };
        let (parts, bytes) = tokio::time::timeout(HTTP_TIMEOUT, exchange).await.map_err(|_| {
            io::Error::new(io::ErrorKind::TimedOut, format!("no answer from {url} in {HTTP_TIMEOUT:?}"))
        })??;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(OidcResponse { status: parts.status, headers: parts.headers, text, json })
    }

    fn issuer_path(&self) -> &str {
        self.options.issuer_path.as_deref().unwrap_or_default()
    }

    /// Writes the keys and the configuration, runs the script on `self.port` and waits for its
    /// ready file.
    async fn spawn(&mut self) -> io::Result<()> {
        let path = self.issuer_path();
        if !path.is_empty() && (!path.starts_with('/') || path.ends_with('/') || path.contains(['?', '#', ' '])) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("issuer path {path:?} must start with '/', not end with '/', and have no query or fragment"),
            ));
        }
        let ttl = self.options.access_token_ttl.as_secs();
        if ttl == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "access_token_ttl must be at least 1s"));
        }
        self.issuer = format!("http://127.0.0.1:{}{path}", self.port);
        self.starts += 1;
        let n = self.starts;
        let dir = self.dir.path().to_path_buf();

        let jwks_path = dir.join("jwks.json");
        let keys: Vec<&Value> = self.options.keys.iter().map(SigningKey::private_jwk).collect();
        write_json(&jwks_path, &json!({ "keys": keys }))?;

        let mut resources: Vec<Value> = Vec::new();
        for (list, format) in [(&self.options.jwt_resources, "jwt"), (&self.options.opaque_resources, "opaque")] {
            resources.extend(list.iter().map(|id| json!({ "id": id, "format": format })));
        }
        let ready_file = dir.join(format!("ready-{n}.json"));
        let config = json!({
            "port": self.port,
            "issuer": self.issuer,
            "pathDiscovery": self.options.path_discovery.as_str(),
            "jwksPath": jwks_path,
            "signingAlg": self.options.signing_alg,
            "resources": resources,
            "anyResourceAsJwt": self.options.any_resource_as_jwt,
            "scope": self.options.scopes,
            "accessTokenTtl": ttl,
            "clients": clients_metadata(),
            "introspectionClients": [INTROSPECTION_CLIENT.id],
            "dpopRequireNonce": self.options.dpop_require_nonce,
            "tokenExchange": self.options.token_exchange.as_ref().map(|te| json!({
                "subjectAudience": te.subject_audience,
                "ttl": te.ttl.as_secs(),
                "refuseSubjects": te.refuse_subjects,
            })),
            "extraClients": self.options.extra_clients,
            "idJag": self.options.id_jag.as_ref().map(|ij| json!({
                "ttl": ij.ttl.map_or(300, |t| t.as_secs()),
                "clientIds": ij.client_ids.iter().map(|(a, b)| (a.clone(), json!(b)))
                    .collect::<serde_json::Map<String, Value>>(),
            })),
            "readyFile": ready_file,
        });
        let config_path = dir.join(format!("config-{n}.json"));
        write_json(&config_path, &config)?;

        self.log = dir.join(format!("provider-{n}.log"));
        let out = File::create(&self.log)?;
        let err = out.try_clone()?;
        let child = self
            .peers
            .node_command()
            .arg(self.peers.dir().join(PROVIDER_SCRIPT))
            .arg("--config")
            .arg(&config_path)
            .stdout(out)
            .stderr(err)
            .spawn()?;
        let mut guard = ChildGuard::new("oidc-provider", child);

        let start = Instant::now();
        loop {
            if let Some(status) = guard.try_wait()? {
                return Err(io::Error::other(format!(
                    "oidc-provider exited ({status}) before listening on port {}; its output ({}):\n{}",
                    self.port,
                    self.log.display(),
                    read_log(&self.log)
                )));
            }
            if ready_file.is_file() {
                let ready: Value = serde_json::from_str(&fs::read_to_string(&ready_file)?).map_err(invalid_data)?;
                if ready["port"] != json!(self.port) || ready["issuer"] != json!(self.issuer) {
                    return Err(invalid_data(format!("oidc-provider reports {ready}, expected {}", self.issuer)));
                }
                self.guard = Some(guard);
                return Ok(());
            }
            if start.elapsed() > STARTUP_TIMEOUT {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "oidc-provider did not listen on port {} within {STARTUP_TIMEOUT:?}; its output:\n{}",
                        self.port,
                        read_log(&self.log)
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Static client registrations.
fn clients_metadata() -> Value {
    let client = |client: OidcClient, grant_types: &[&str]| {
        json!({
            "client_id": client.id,
            "client_secret": client.secret,
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": grant_types,
            "response_types": [],
            "redirect_uris": [],
        })
    };
    let mut dpop = client(DPOP_CLIENT, &["client_credentials"]);
    dpop["dpop_bound_access_tokens"] = Value::Bool(true);
    json!([
        client(JWT_CLIENT, &["client_credentials"]),
        client(OPAQUE_CLIENT, &["client_credentials"]),
        dpop,
        client(INTROSPECTION_CLIENT, &[]),
    ])
}

/// Runs a Node command to completion (with `stdin` if given) and returns its stdout, failing on a
/// non-zero exit.
async fn run_node(cmd: std::process::Command, stdin: Option<Vec<u8>>) -> io::Result<Vec<u8>> {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(&input).await?;
        drop(pipe);
    }
    let output = tokio::time::timeout(STARTUP_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "jose-cli took too long"))??;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "jose-cli failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(output.stdout)
}

fn write_json(path: &Path, value: &Value) -> io::Result<()> {
    fs::write(path, serde_json::to_vec_pretty(value).map_err(invalid_data)?)
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
fn form_urlencode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(char::from(byte)),
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

fn invalid_data(err: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err.to_string())
}

fn invalid_input(err: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, err.to_string())
}

/// Verifies JWTs with npm `jose` (`jwtVerify` against a remote JWK Set it fetches itself):
/// `request` is `{"jwks_uri", "jwts": [..], "issuer", "audience", "typ", "algorithms"}`; one result
/// per JWT, `{"ok": true, "header", "payload"}` or `{"ok": false, "code", "message"}`.
pub async fn jose_verify_remote(peers: &Peers, request: &Value) -> io::Result<Vec<Value>> {
    let mut cmd = peers.node_command();
    cmd.arg(peers.dir().join(JOSE_SCRIPT)).arg("verify-remote");
    let stdout = run_node(cmd, Some(serde_json::to_vec(request).map_err(invalid_data)?)).await?;
    serde_json::from_slice(&stdout).map_err(invalid_data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_follows_the_html_rules() {
        assert_eq!(form_urlencode("mcp:tools mcp:admin"), "mcp%3Atools+mcp%3Aadmin");
        assert_eq!(form_urlencode("https://a.test/mcp?x=1"), "https%3A%2F%2Fa.test%2Fmcp%3Fx%3D1");
    }

    #[test]
    fn basic_authorization_encodes_id_and_secret() {
        let client = OidcClient { id: "a:b", secret: "s p" };
        assert_eq!(client.basic_authorization(), format!("Basic {}", STANDARD.encode("a%3Ab:s+p")));
    }

    #[test]
    fn public_jwk_drops_private_members() {
        let key = SigningKey::from_private_jwk(
            json!({"kty": "EC", "crv": "P-256", "x": "X", "y": "Y", "d": "D", "kid": "k", "alg": "ES256"}),
        )
        .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(
            key.public_jwk(),
            json!({"kty": "EC", "crv": "P-256", "x": "X", "y": "Y", "kid": "k", "alg": "ES256"})
        );
    }

    #[test]
    fn decode_jws_reads_header_and_payload() {
        let token =
            format!("{}.{}.sig", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode(r#"{"a":1}"#));
        assert_eq!(decode_jws(&token), Ok((json!({"alg": "none"}), json!({"a": 1}))));
        assert!(decode_jws("a.b").is_err());
    }
}
