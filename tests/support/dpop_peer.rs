//! DPoP proofs and JWS from independent implementations (npm `dpop` and npm `jose`, both by
//! panva), run by `tests/peers/dpop-cli.mjs` on the Node 22 of the peers: valid proofs from
//! `dpop.generateProof` and from `jose`'s `SignJWT`, arbitrary (hostile) JWS from `jose`'s
//! `CompactSign`, and verification of our own proofs with `jose`'s `jwtVerify` + `EmbeddedJWK`.
//!
//! Every operation of a test goes into one [`DpopBatch`], so a test pays for one Node start-up:
//!
//! ```no_run
//! # async fn demo(peers: &mcp_enterprise_tests::peers::Peers, key: &mcp_enterprise_tests::oidc::SigningKey) -> std::io::Result<()> {
//! use mcp_enterprise_tests::dpop_peer::DpopBatch;
//! let mut batch = DpopBatch::new();
//! let proof = batch.npm_dpop_proof(key, "https://mcp.example.com/mcp", "POST", None, Some("token"));
//! let results = batch.run(peers).await?;
//! let proof: String = results.string(proof)?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use crate::oidc::SigningKey;
use crate::peers::Peers;

/// The script in `tests/peers`.
pub const DPOP_SCRIPT: &str = "dpop-cli.mjs";

/// How long one batch may take.
const BATCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Operations for one run of `dpop-cli.mjs`; each `add`-style method returns the index of its
/// result in the [`DpopResults`].
#[derive(Debug, Clone, Default)]
pub struct DpopBatch {
    ops: Vec<Value>,
}

impl DpopBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many operations are queued.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn push(&mut self, op: Value) -> usize {
        self.ops.push(op);
        self.ops.len() - 1
    }

    /// A proof from npm `dpop` `generateProof(keyPair(key), htu, htm, nonce, accessToken)`. The
    /// library chooses `alg` from the key type (`ES256`, `RS256`, `PS256`, and `Ed25519` — the
    /// RFC 9864 fully-specified name — for Ed25519 keys) and sets `iat` and `jti`.
    pub fn npm_dpop_proof(
        &mut self,
        key: &SigningKey,
        htu: &str,
        htm: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> usize {
        self.push(json!({
            "op": "dpop-proof", "jwk": key.private_jwk(), "htu": htu, "htm": htm,
            "nonce": nonce, "accessToken": access_token,
        }))
    }

    /// The same proof built with npm `jose` `SignJWT` (`alg` = the key's, e.g. `EdDSA`).
    pub fn jose_proof(
        &mut self,
        key: &SigningKey,
        htu: &str,
        htm: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> usize {
        self.push(json!({
            "op": "signjwt-proof", "jwk": key.private_jwk(), "htu": htu, "htm": htm,
            "nonce": nonce, "accessToken": access_token,
        }))
    }

    /// npm `jose` `CompactSign` of exactly `payload` under exactly `header` (which must name an
    /// `alg` suiting `jwk`; an `oct` JWK signs HS256).
    pub fn sign(&mut self, jwk: &Value, header: &Value, payload: &[u8]) -> usize {
        self.push(json!({ "op": "sign", "jwk": jwk, "header": header, "payload": URL_SAFE_NO_PAD.encode(payload) }))
    }

    /// [`sign`](Self::sign) of the JSON of `claims`, under `header` plus the key's `alg` when the
    /// header has none.
    pub fn sign_claims(&mut self, key: &SigningKey, header: &Value, claims: &Value) -> usize {
        let mut header = header.clone();
        if header.get("alg").is_none() {
            header["alg"] = Value::from(key.alg());
        }
        self.sign(key.private_jwk(), &header, claims.to_string().as_bytes())
    }

    /// npm `jose` `jwtVerify(proof, EmbeddedJWK, {typ: "dpop+jwt"})`; the result value is
    /// `{protectedHeader, payload, jkt}` (`jkt`: `jose`'s RFC 7638 thumbprint of the `jwk`).
    pub fn verify_proof(&mut self, proof: &str) -> usize {
        self.push(json!({ "op": "verify-proof", "proof": proof }))
    }

    /// base64url(SHA-256(token)) computed by WebCrypto.
    pub fn ath(&mut self, access_token: &str) -> usize {
        self.push(json!({ "op": "ath", "accessToken": access_token }))
    }

    /// Runs the batch (one Node process).
    pub async fn run(self, peers: &Peers) -> io::Result<DpopResults> {
        let mut cmd = tokio::process::Command::from(peers.node_command());
        cmd.arg(peers.dir().join(DPOP_SCRIPT))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(Value::Array(self.ops.clone()).to_string().as_bytes()).await?;
            drop(pipe);
        }
        let output = tokio::time::timeout(BATCH_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "dpop-cli took too long"))??;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "dpop-cli failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        let results: Vec<Value> = serde_json::from_slice(&output.stdout).map_err(invalid_data)?;
        if results.len() != self.ops.len() {
            return Err(invalid_data(format!("dpop-cli answered {} of {} operations", results.len(), self.ops.len())));
        }
        Ok(DpopResults { ops: self.ops, results })
    }
}

/// The answers of one [`DpopBatch`].
#[derive(Debug, Clone)]
pub struct DpopResults {
    ops: Vec<Value>,
    results: Vec<Value>,
}

impl DpopResults {
    /// The value of operation `index`, or its error (with the operation's kind).
    pub fn value(&self, index: usize) -> io::Result<&Value> {
        let result = self.results.get(index).ok_or_else(|| invalid_data(format!("no result {index}")))?;
        if result["ok"] == Value::Bool(true) {
            Ok(&result["value"])
        } else {
            Err(io::Error::other(format!("dpop-cli {} failed: {}", self.ops[index]["op"], result["error"])))
        }
    }

    /// The value of operation `index` as a string (a proof, a JWS).
    pub fn string(&self, index: usize) -> io::Result<String> {
        self.value(index)?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| invalid_data(format!("result {index} is not a string")))
    }

    /// The error text of operation `index` when it failed (e.g. a proof `jose` refused).
    pub fn error(&self, index: usize) -> Option<String> {
        let result = self.results.get(index)?;
        (result["ok"] != Value::Bool(true)).then(|| result["error"].as_str().unwrap_or_default().to_owned())
    }
}

/// The public members of a JWK (`kty`, `crv`, `e`, `n`, `x`, `y`), as a proof's `jwk` carries.
pub fn public_members(jwk: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for member in ["kty", "crv", "e", "n", "x", "y"] {
        if let Some(v) = jwk.get(member) {
            out.insert(member.to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

/// A compact JWS assembled by hand: `b64(header).b64(payload).signature` (the signature given
/// already encoded, possibly empty, as for `alg: none`).
pub fn hand_jws(header: &Value, payload: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    )
}

fn invalid_data(err: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err.to_string())
}
