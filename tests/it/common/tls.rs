//! Test PKI (rcgen, aws-lc-rs) and a TLS terminator (tokio-rustls) in front of a plain upstream:
//! every certificate is made by the test, every listener is on 127.0.0.1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    /// Writes `name.crt` and `name.key` into `dir`: their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&cert, &self.cert_pem).expect("write certificate");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        Self { issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA") }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `dir/name`: its path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.pem()).expect("write CA");
        path
    }

    /// A leaf for these DNS names / IP addresses, valid from a day ago for a year.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let now = time_now();
        self.leaf_valid(names, now - 86_400, now + 365 * 86_400)
    }

    /// A leaf valid between these Unix times.
    pub fn leaf_valid(&self, names: &[&str], not_before: i64, not_after: i64) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("client"));
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(not_before as u64);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(not_after as u64);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }
}

fn time_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A TLS server configuration presenting `leaf`; when `client_ca` is given, a client
/// certificate signed by it is required. Offers `http/1.1` by ALPN.
pub fn server_config(leaf: &Leaf, client_ca: Option<&TestCa>) -> rustls::ServerConfig {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes()).collect::<Result<_, _>>().expect("leaf PEM");
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key PEM");
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der()).expect("client CA");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).expect("server certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// A TLS terminator on 127.0.0.1 forwarding each connection's bytes to `backend` (a plain
/// HTTP/1.1 server). Stops when dropped.
pub struct TlsFront {
    pub addr: SocketAddr,
    /// Connections closed unanswered because they came from another address than the allowed one.
    pub refused: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsFront {
    pub async fn start(config: rustls::ServerConfig, backend: SocketAddr) -> Self {
        Self::start_on([127, 0, 0, 1].into(), None, config, backend).await
    }

    /// Listens on `ip` (a loopback address) and, when `only_from` is given, closes every
    /// connection from any other address before the handshake.
    pub async fn start_on(
        ip: std::net::IpAddr,
        only_from: Option<std::net::IpAddr>,
        config: rustls::ServerConfig,
        backend: SocketAddr,
    ) -> Self {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await.expect("bind TLS front");
        let addr = listener.local_addr().expect("addr");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = refused.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((tcp, peer)) = listener.accept().await {
                if only_from.is_some_and(|allowed| peer.ip() != allowed) {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    drop(tcp);
                    continue;
                }
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    let mut tls = match acceptor.accept(tcp).into_fallible().await {
                        Ok(tls) => tls,
                        // the alert is sent; read what the client sends until it closes, since
                        // closing with unread bytes resets the connection and may discard the
                        // alert before the client reads it (TLS 1.3: a client certificate is
                        // refused after the client's side of the handshake is done)
                        Err((_, tcp)) => return drain(tcp).await,
                    };
                    let Ok(mut plain) = TcpStream::connect(backend).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Self { addr, refused, task }
    }

    /// `https://{host}:{port}/mcp`.
    pub fn url(&self, host: &str) -> String {
        format!("https://{host}:{}/mcp", self.addr.port())
    }
}

/// Reads and drops what `tcp` receives until the peer closes (at most 10 s).
async fn drain(mut tcp: TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut sink = [0u8; 2048];
    let until_closed = async { while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), until_closed).await;
}

/// The `host:port` of a plain `http://` URL.
pub fn addr_of(url: &str) -> SocketAddr {
    let uri: http::Uri = url.parse().expect("url");
    let authority = uri.authority().expect("authority");
    authority.as_str().parse().expect("socket address")
}
