//! Outbound connections, shared by every part of the pack that calls out: identity providers
//! (discovery, JWKS, introspection, token requests), token exchange, and the gateway's HTTPS
//! upstreams.
//!
//! - TLS is rustls on aws-lc-rs (the project's one crypto stack) with the system's roots
//!   (`rustls-native-certs`: the OS store, or `SSL_CERT_FILE`/`SSL_CERT_DIR`) plus any CA bundle
//!   configured; optional client certificate (mTLS) and server-name override.
//! - [`Egress`]: the forward proxy. `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY` (curl's
//!   rules, hyper-util's matcher) unless configured explicitly; every proxied connection is an
//!   HTTP `CONNECT` tunnel (hyper-util's), with `Proxy-Authorization` from the proxy URL's user
//!   info or from a configured credential (a sensitive header value: never logged).
//! - Every connection attempt — TCP connect, proxy tunnel and TLS handshake together — ends
//!   within the connect timeout: a server that accepts and then says nothing cannot hang a call.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tower::ServiceExt as _;
use tower_service::Service;

use crate::BoxError;

/// How long a connection attempt (connect, tunnel and TLS handshake) may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS file or setting that cannot be used (names the file and why; never its contents).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutboundError {
    /// A certificate or key file cannot be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The client key is not the certificate's.
    #[error("{key} is not the private key of the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A proxy or server-name setting is not usable.
    #[error("{0}")]
    Setting(String),
    /// rustls refused the configuration.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// Reads every certificate of a PEM bundle (at least one).
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, OutboundError> {
    let file = |reason: String| OutboundError::File { path: path.to_owned(), reason };
    let bytes = std::fs::read(path).map_err(|e| file(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file(format!("not a PEM certificate bundle ({e})")))?;
    if certs.is_empty() {
        return Err(file("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned()));
    }
    Ok(certs)
}

/// A client certificate chain and its private key (PEM, the key PKCS#8, PKCS#1 or SEC1), checked
/// to match.
#[derive(Clone)]
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").field("certificates", &self.chain.len()).finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// Loads `cert` (a PEM chain, leaf first) and `key`; fails when the key is not the leaf's.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, OutboundError> {
        let chain = load_certificates(cert)?;
        let key_bytes =
            std::fs::read(key).map_err(|e| OutboundError::File { path: key.to_owned(), reason: e.to_string() })?;
        let private = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| OutboundError::File {
            path: key.to_owned(),
            reason: format!("not a PEM private key ({e})"),
        })?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let signing = provider
            .key_provider
            .load_private_key(private.clone_key())
            .map_err(|e| OutboundError::File { path: key.to_owned(), reason: format!("unusable private key ({e})") })?;
        let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
        certified
            .keys_match()
            .map_err(|_| OutboundError::KeyMismatch { cert: cert.to_owned(), key: key.to_owned() })?;
        Ok(Self { chain, key: Arc::new(private) })
    }
}

/// How to authenticate servers and present ourselves to them.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TlsSettings {
    /// Certificates trusted besides the system's roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Presented when the server asks for a client certificate.
    pub client_identity: Option<ClientIdentity>,
    /// The name checked in the server's certificate and sent as SNI, instead of the URL's host.
    pub server_name: Option<String>,
}

impl TlsSettings {
    /// System roots only, no client certificate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the certificates of this PEM bundle too.
    pub fn with_ca_file(mut self, path: &Path) -> Result<Self, OutboundError> {
        self.extra_roots.extend(load_certificates(path)?);
        Ok(self)
    }

    /// Presents this client certificate.
    #[must_use]
    pub fn with_client_identity(mut self, identity: ClientIdentity) -> Self {
        self.client_identity = Some(identity);
        self
    }

    /// Checks the server's certificate against `name` (and sends it as SNI).
    pub fn with_server_name(mut self, name: &str) -> Result<Self, OutboundError> {
        ServerName::try_from(name.to_owned())
            .map_err(|_| OutboundError::Setting(format!("{name:?} is not a DNS name or IP address")))?;
        self.server_name = Some(name.to_owned());
        Ok(self)
    }

    /// The rustls client configuration, offering `alpn` (e.g. `h2`, `http/1.1`).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, OutboundError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        for cert in &self.extra_roots {
            roots.add(cert.clone()).map_err(|e| OutboundError::Tls(format!("CA certificate refused: {e}")))?;
        }
        if roots.is_empty() {
            tracing::warn!("no CA certificates (system or configured): https servers will be unreachable");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| OutboundError::Tls(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match &self.client_identity {
            Some(id) => builder
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .map_err(|e| OutboundError::Tls(e.to_string()))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// Where outbound connections go: straight to the server, or through a forward proxy.
#[derive(Clone, Default)]
pub struct Egress {
    matcher: Option<Arc<Matcher>>,
    /// Overrides the credential in the proxy URL.
    authorization: Option<HeaderValue>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("proxy", &self.matcher.is_some())
            .field("authorization", &self.authorization.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Egress {
    /// No proxy, whatever the environment says.
    pub fn direct() -> Self {
        Self::default()
    }

    /// The proxy named by `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` (or their lowercase forms),
    /// except for the hosts of `NO_PROXY`: curl's rules.
    pub fn from_env() -> Self {
        let get = |names: &[&str]| names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()));
        let any = get(&["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]);
        if any.is_none() {
            return Self::direct();
        }
        Self { matcher: Some(Arc::new(Matcher::from_env())), authorization: None }
    }

    /// Every destination through `proxy` (`http://[user:password@]host:port`), except the hosts
    /// listed in `no_proxy` (comma-separated; `NO_PROXY` syntax). Overrides the environment.
    pub fn proxy(proxy: &str, no_proxy: &str) -> Result<Self, OutboundError> {
        let uri: Uri = proxy.parse().map_err(|_| OutboundError::Setting(format!("{proxy:?} is not a URL")))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(OutboundError::Setting(
                "the proxy must be an http:// URL with a host (the tunnel to it is plain HTTP; CONNECT carries TLS)"
                    .to_owned(),
            ));
        }
        let matcher = Matcher::builder().all(proxy.to_owned()).no(no_proxy.to_owned()).build();
        Ok(Self { matcher: Some(Arc::new(matcher)), authorization: None })
    }

    /// Sends `Proxy-Authorization: <value>` on every `CONNECT` (e.g. `Basic …`), instead of the
    /// proxy URL's user info. The value is marked sensitive: never logged.
    #[must_use]
    pub fn with_authorization(mut self, mut value: HeaderValue) -> Self {
        value.set_sensitive(true);
        self.authorization = Some(value);
        self
    }

    /// `Basic` proxy credentials (RFC 7617).
    pub fn with_basic_auth(self, user: &str, password: &str) -> Result<Self, OutboundError> {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let value = HeaderValue::from_str(&format!("Basic {encoded}"))
            .map_err(|_| OutboundError::Setting("proxy credentials are not a valid header value".to_owned()))?;
        Ok(self.with_authorization(value))
    }

    /// The proxy for `dst`, if any (for messages: the proxy's URI without credentials).
    pub fn proxy_for(&self, dst: &Uri) -> Option<String> {
        let intercept = self.matcher.as_ref()?.intercept(dst)?;
        let uri = intercept.uri();
        Some(format!("{}://{}:{}", uri.scheme_str().unwrap_or("http"), uri.host()?, uri.port_u16().unwrap_or(80)))
    }
}

/// TCP connections, straight or through the [`Egress`] proxy's `CONNECT` tunnel.
#[derive(Clone, Debug)]
pub struct EgressConnector {
    http: HttpConnector,
    egress: Egress,
}

impl EgressConnector {
    /// Connects with `http` (its own settings: no-delay, keep-alive), through `egress`.
    pub fn new(mut http: HttpConnector, egress: Egress) -> Self {
        http.enforce_http(false);
        Self { http, egress }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl Service<Uri> for EgressConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let http = self.http.clone();
        let intercept = self.egress.matcher.as_ref().and_then(|m| m.intercept(&dst));
        let Some(intercept) = intercept else {
            return Box::pin(async move { http.oneshot(dst).await.map_err(Into::into) });
        };
        let proxy = intercept.uri().clone();
        let auth = self.egress.authorization.clone().or_else(|| intercept.basic_auth().cloned());
        Box::pin(async move {
            if proxy.scheme_str() != Some("http") {
                return Err(format!("proxy {proxy}: only http:// proxies are supported").into());
            }
            let shown = format!("{}:{}", proxy.host().unwrap_or_default(), proxy.port_u16().unwrap_or(80));
            let proxy = Uri::builder()
                .scheme("http")
                .authority(shown.as_str())
                .path_and_query("/")
                .build()
                .map_err(|e| format!("proxy address: {e}"))?;
            let mut tunnel = Tunnel::new(proxy, http);
            if let Some(auth) = auth {
                tunnel = tunnel.with_auth(auth);
            }
            tunnel.oneshot(dst).await.map_err(|e| format!("through proxy {shown}: {}", error_chain(&e)).into())
        })
    }
}

/// A connector whose every attempt ends within a timeout.
///
/// The connector is shared: hyper-util's client clones its connector for every request (the
/// connection it would open races the pool's idle one), so a clone is one reference count here,
/// and the connector is cloned only when a connection is really opened.
#[derive(Debug)]
pub struct TimeoutConnector<C> {
    inner: Arc<C>,
    timeout: Duration,
}

impl<C> Clone for TimeoutConnector<C> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner), timeout: self.timeout }
    }
}

impl<C> Service<Uri> for TimeoutConnector<C>
where
    C: Service<Uri> + Clone + Send + 'static,
    C::Future: Send + 'static,
    C::Response: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = BoxFuture<C::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // the shared connector is made ready on its own clone, inside the attempt (and its time)
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let timeout = self.timeout;
        let host = dst.host().unwrap_or_default().to_owned();
        let fut = C::clone(&self.inner).oneshot(dst);
        Box::pin(async move {
            match tokio::time::timeout(timeout, fut).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(format!("connecting to {host} (TLS handshake included) took over {timeout:?}").into()),
            }
        })
    }
}

/// The connector of every outbound HTTP(S) client: proxy, TLS, timeout.
pub type OutboundConnector = TimeoutConnector<HttpsConnector<EgressConnector>>;

/// Builds an [`OutboundConnector`]: `tls` for `https://` destinations (plain `http://` allowed
/// too), HTTP/2 offered by ALPN when `http2`, attempts bounded by `connect_timeout`.
pub fn connector(
    egress: &Egress,
    tls: &TlsSettings,
    connect_timeout: Duration,
    http2: bool,
) -> Result<OutboundConnector, OutboundError> {
    let alpn: &[&[u8]] = if http2 { &[b"h2", b"http/1.1"] } else { &[b"http/1.1"] };
    let mut config = tls.client_config(alpn)?;
    // the ALPN offer is set by hyper-rustls from the enabled versions
    config.alpn_protocols.clear();
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let inner = EgressConnector::new(http, egress.clone());
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_or_http();
    let builder = match &tls.server_name {
        Some(name) => {
            let name = ServerName::try_from(name.clone())
                .map_err(|_| OutboundError::Setting(format!("{name:?} is not a DNS name or IP address")))?;
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    let https = if http2 {
        builder.enable_all_versions().wrap_connector(inner)
    } else {
        builder.enable_http1().wrap_connector(inner)
    };
    Ok(TimeoutConnector { inner: Arc::new(https), timeout: connect_timeout })
}

/// An error and its sources, joined with `: ` (for messages and logs; never holds secrets).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Whether a failed exchange failed in the TLS handshake or certificate check, and why.
pub fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = next {
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // an I/O error's `source` skips the error it wraps: look at that one first
        next = match s.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => s.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_settings() {
        assert!(Egress::proxy("https://proxy:3128", "").is_err());
        assert!(Egress::proxy("not a url", "").is_err());
        let egress = Egress::proxy("http://proxy.internal:3128", "localhost,.corp.example").expect("proxy");
        let via = |u: &str| egress.proxy_for(&u.parse().expect("uri"));
        assert_eq!(via("https://idp.example.com/x").as_deref(), Some("http://proxy.internal:3128"));
        assert_eq!(via("http://idp.example.com/x").as_deref(), Some("http://proxy.internal:3128"));
        assert_eq!(via("https://localhost:8443/"), None);
        assert_eq!(via("https://a.corp.example/"), None);
        assert_eq!(Egress::direct().proxy_for(&"https://x.example".parse().expect("uri")), None);
        let debug = format!("{:?}", egress.with_basic_auth("u", "secret-password").expect("auth"));
        assert!(!debug.contains("secret") && !debug.contains("dTpz"), "{debug}");
    }

    #[test]
    fn unusable_files_are_named() {
        let dir = std::env::temp_dir().join(format!("outbound-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let missing = dir.join("missing.pem");
        assert!(matches!(load_certificates(&missing), Err(OutboundError::File { path, .. }) if path == missing));
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "hello\n").expect("write");
        let e = load_certificates(&empty).expect_err("no certificate");
        assert!(e.to_string().contains("empty.pem") && e.to_string().contains("no PEM certificate"), "{e}");
        assert!(TlsSettings::new().with_server_name("not a name!").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
