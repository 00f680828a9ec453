//! The token endpoint's ES256 signing key (aws-lc-rs): generated at start-up, or read from a
//! PKCS#8 file so that replicas sign with the same key. Its `kid` is the RFC 7638 thumbprint.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::error::WorkloadConfigError;

/// An ES256 (P-256) signing key. Its private part never shows in `Debug` output.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    jwk: Value,
    kid: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key (tokens stop verifying when the process restarts; use a key file for
    /// replicas or restarts).
    pub fn generate() -> Result<Self, WorkloadConfigError> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| WorkloadConfigError::SigningKey("key generation failed".into()))?;
        Self::from_pkcs8_der(pkcs8.as_ref())
    }

    /// A P-256 key from an unencrypted PKCS#8 DER document.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, WorkloadConfigError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| WorkloadConfigError::SigningKey("not an unencrypted PKCS#8 P-256 private key".into()))?;
        let point = pair.public_key().as_ref();
        if point.len() != 65 {
            return Err(WorkloadConfigError::SigningKey("unexpected public key encoding".into()));
        }
        let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..65]));
        // RFC 7638: the required members in lexicographic order, no whitespace
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(mcp_enterprise_core::jwks::sha256(canonical.as_bytes()));
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"});
        Ok(Self { pair, jwk, kid })
    }

    /// A P-256 key from a PEM `PRIVATE KEY` (PKCS#8) document, as
    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes it.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, WorkloadConfigError> {
        let body = pem
            .split("-----BEGIN PRIVATE KEY-----")
            .nth(1)
            .and_then(|rest| rest.split("-----END PRIVATE KEY-----").next())
            .ok_or_else(|| WorkloadConfigError::SigningKey("no PEM \"PRIVATE KEY\" block (PKCS#8)".into()))?;
        let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der =
            STANDARD.decode(b64).map_err(|_| WorkloadConfigError::SigningKey("the PEM block is not base64".into()))?;
        Self::from_pkcs8_der(&der)
    }

    /// The key id (RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK (`kty`, `crv`, `x`, `y`, `kid`, `alg: ES256`, `use: sig`).
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// Signs a JWS of `claims` under `header` plus `alg: ES256` and this key's `kid`.
    pub(crate) fn sign(&self, header: &Value, claims: &Value) -> Result<String, WorkloadConfigError> {
        let mut header = header.clone();
        header["alg"] = json!("ES256");
        header["kid"] = json!(self.kid);
        let message =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = self
            .pair
            .sign(&SystemRandom::new(), message.as_bytes())
            .map_err(|_| WorkloadConfigError::SigningKey("signing failed".into()))?;
        Ok(format!("{message}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use mcp_enterprise_core::jwks::{Algorithm, parse_jwks};

    use super::*;

    #[test]
    fn signs_what_its_jwk_verifies_and_reads_pem() {
        let key = SigningKey::generate().expect("key");
        let token = key.sign(&json!({"typ": "at+jwt"}), &json!({"sub": "s"})).expect("signed");
        let keys = parse_jwks(json!({"keys": [key.public_jwk()]}).to_string().as_bytes()).expect("jwks");
        let (input, sig) = token.rsplit_once('.').expect("jws");
        assert_eq!(keys[0].verify(Algorithm::ES256, input.as_bytes(), sig), Ok(true));
        assert_eq!(keys[0].kid(), Some(key.kid()));
        assert_eq!(key.kid().len(), 43, "base64url SHA-256");
        assert_eq!(format!("{key:?}"), format!("SigningKey {{ kid: {:?}, .. }}", key.kid()), "nothing private");

        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).expect("gen");
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD
                .encode(pkcs8.as_ref())
                .as_bytes()
                .chunks(64)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("\n")
        );
        let a = SigningKey::from_pkcs8_pem(&pem).expect("pem");
        let b = SigningKey::from_pkcs8_der(pkcs8.as_ref()).expect("der");
        assert_eq!(a.kid(), b.kid(), "the same key");
        assert!(SigningKey::from_pkcs8_pem("-----BEGIN EC PRIVATE KEY-----").is_err());
        assert!(SigningKey::from_pkcs8_pem("-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----").is_err());
        assert!(SigningKey::from_pkcs8_der(b"not a key").is_err());
    }
}
