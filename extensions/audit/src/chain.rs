//! The hash chain and its signed checkpoints.

use std::fmt;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value};

use crate::canonical;
use crate::error::AuditError;
use crate::time::hex;

/// The `prev_hash` of the first record of a new trail.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Fields a record's hash does not cover: the hash itself and the checkpoint signature (which
/// signs the hash).
pub(crate) const UNHASHED: [&str; 2] = ["hash", "signature"];

/// Where the chain stands: the last sealed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// Sequence number of the last record (0 before the first).
    pub seq: u64,
    /// Hash of the last record (hex), or [`GENESIS`].
    pub hash: String,
}

impl ChainHead {
    /// The head of an empty trail.
    pub fn genesis() -> Self {
        Self { seq: 0, hash: GENESIS.to_owned() }
    }
}

/// The SHA-256 (hex) a record is chained by: over its canonical form without its `hash` and `signature` fields.
pub fn record_hash(record: &Map<String, Value>) -> String {
    let mut out = Vec::with_capacity(1024);
    canonical::Members::of(record).write(&UNHASHED, &[], &mut out);
    hex(digest::digest(&digest::SHA256, &out).as_ref())
}

/// Chains `record` after `head`: adds `seq`, `prev_hash`, `hash` (and, for a checkpoint with a
/// signer, `signature`). Returns the sealed record, its line (canonical JSON and `\n`) and the
/// new head.
pub fn seal(
    mut record: Map<String, Value>,
    head: &ChainHead,
    signer: Option<&CheckpointSigner>,
) -> (Value, Vec<u8>, ChainHead) {
    for key in ["seq", "prev_hash", "hash", "signature"] {
        record.remove(key);
    }
    let (line, next, signature) = seal_members(canonical::Members::of(&record), head, signer);
    record.insert("seq".into(), Value::from(next.seq));
    record.insert("prev_hash".into(), Value::from(head.hash.clone()));
    if let Some(sig) = signature {
        record.insert("signature".into(), Value::from(sig));
    }
    record.insert("hash".into(), Value::from(next.hash.clone()));
    (Value::Object(record), line, next)
}

/// [`seal`] of a record built member by member (without `seq`, `prev_hash`, `hash` or
/// `signature`): every member is serialised once, for the hash and for the line. Returns the
/// line, the new head and the checkpoint signature, if one was made.
pub(crate) fn seal_members(
    mut members: canonical::Members<'_>,
    head: &ChainHead,
    signer: Option<&CheckpointSigner>,
) -> (Vec<u8>, ChainHead, Option<String>) {
    let mut line = Vec::with_capacity(1024);
    let (next, signature) = seal_into(&mut members, head, signer, &mut line);
    (line, next, signature)
}

/// [`seal_members`] appending the line to `out` (serialised once, hashed, the hash inserted).
pub(crate) fn seal_into(
    members: &mut canonical::Members<'_>,
    head: &ChainHead,
    signer: Option<&CheckpointSigner>,
    out: &mut Vec<u8>,
) -> (ChainHead, Option<String>) {
    let seq = head.seq + 1;
    members.int("seq", seq);
    members.str("prev_hash", &head.hash);
    let (hash, signature) = members.write_sealed(out, |members, hash| {
        // only a checkpoint is signed (the type is looked up only when there is a key)
        signer.filter(|_| members.raw("type") == Some(br#""checkpoint""#.as_slice())).map(|s| s.sign(hash))
    });
    out.push(b'\n');
    (ChainHead { seq, hash }, signature)
}

/// Ed25519 key that signs checkpoints.
pub struct CheckpointSigner {
    pair: Ed25519KeyPair,
    key_id: String,
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointSigner").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// A signer from a PKCS#8 document: DER, base64 of DER, or PEM (`openssl genpkey -algorithm ed25519`).
    pub fn from_pkcs8(document: &[u8]) -> Result<Self, AuditError> {
        let der = decode_key_document(document, "PRIVATE KEY")
            .ok_or_else(|| AuditError::Key("not a PKCS#8 Ed25519 private key (PEM, base64 or DER)".into()))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|_| AuditError::Key("not a PKCS#8 Ed25519 private key".into()))?;
        Ok(Self::from_pair(pair))
    }

    /// A fresh random key (the demo's; a real trail needs a key kept outside the trail's reach).
    pub fn generate() -> Result<Self, AuditError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .map_err(|_| AuditError::Key("cannot generate an Ed25519 key".into()))?;
        Self::from_pkcs8(doc.as_ref())
    }

    /// A fresh key as a PEM PKCS#8 document (for `audit keygen`).
    pub fn generate_pem() -> Result<String, AuditError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .map_err(|_| AuditError::Key("cannot generate an Ed25519 key".into()))?;
        Ok(pem("PRIVATE KEY", doc.as_ref()))
    }

    fn from_pair(pair: Ed25519KeyPair) -> Self {
        let key_id = key_id(pair.public_key().as_ref());
        Self { pair, key_id }
    }

    /// The id checkpoints name the key by.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key, base64url (what verifiers need).
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref())
    }

    /// The public key as a PEM SubjectPublicKeyInfo.
    pub fn public_key_pem(&self) -> String {
        let mut spki = ED25519_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(self.pair.public_key().as_ref());
        pem("PUBLIC KEY", &spki)
    }

    /// Signature (base64url) over a record hash.
    pub(crate) fn sign(&self, hash_hex: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.pair.sign(hash_hex.as_bytes()).as_ref())
    }
}

/// A key that verifies checkpoint signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct CheckpointVerifier {
    public: Vec<u8>,
    key_id: String,
}

impl fmt::Debug for CheckpointVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointVerifier").field("key_id", &self.key_id).finish()
    }
}

impl CheckpointVerifier {
    /// From a public key: PEM SubjectPublicKeyInfo, or the raw 32 bytes in base64url/base64.
    pub fn from_public_key(text: &[u8]) -> Result<Self, AuditError> {
        let raw = match decode_key_document(text, "PUBLIC KEY") {
            Some(der) if der.len() == 44 && der.starts_with(&ED25519_SPKI_PREFIX) => der[12..].to_vec(),
            Some(raw) if raw.len() == 32 => raw,
            _ => return Err(AuditError::Key("not an Ed25519 public key (PEM SPKI or base64 of 32 bytes)".into())),
        };
        Ok(Self { key_id: key_id(&raw), public: raw })
    }

    /// The id checkpoints made by the matching private key carry.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Whether `signature` (base64url) signs `hash_hex`.
    pub(crate) fn verify(&self, hash_hex: &str, signature: &str) -> bool {
        let Ok(sig) = URL_SAFE_NO_PAD.decode(signature) else { return false };
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.public).verify(hash_hex.as_bytes(), &sig).is_ok()
    }
}

const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

fn key_id(public: &[u8]) -> String {
    hex(&digest::digest(&digest::SHA256, public).as_ref()[..8])
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// PEM with `label`, base64/base64url text, or raw DER.
fn decode_key_document(document: &[u8], label: &str) -> Option<Vec<u8>> {
    let Ok(text) = std::str::from_utf8(document) else {
        return Some(document.to_vec());
    };
    let text = text.trim();
    let begin = format!("-----BEGIN {label}-----");
    let body: String = match text.strip_prefix(&begin) {
        Some(rest) => rest.split("-----END").next()?.chars().filter(|c| !c.is_whitespace()).collect(),
        None if text.starts_with("-----") => return None,
        None => text.chars().filter(|c| !c.is_whitespace()).collect(),
    };
    STANDARD
        .decode(&body)
        .or_else(|_| URL_SAFE_NO_PAD.decode(body.trim_end_matches('=')))
        .ok()
        .or_else(|| (!text.is_empty()).then(|| document.to_vec()).filter(|d| d.first() == Some(&0x30)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn hash_ignores_hash_and_signature_and_key_order() {
        let a = json!({"b": 1, "a": "x", "hash": "h", "signature": "s"});
        let b = json!({"a": "x", "b": 1});
        assert_eq!(record_hash(a.as_object().expect("o")), record_hash(b.as_object().expect("o")));
        let c = json!({"a": "x", "b": 2});
        assert_ne!(record_hash(b.as_object().expect("o")), record_hash(c.as_object().expect("o")));
        assert_eq!(record_hash(b.as_object().expect("o")).len(), 64);
    }

    #[test]
    fn keys_round_trip_through_pem_and_base64() {
        let pem_doc = CheckpointSigner::generate_pem().expect("pem");
        let signer = CheckpointSigner::from_pkcs8(pem_doc.as_bytes()).expect("signer");
        let sig = signer.sign("abc");
        for public in [signer.public_key_pem(), signer.public_key()] {
            let v = CheckpointVerifier::from_public_key(public.as_bytes()).expect("verifier");
            assert_eq!(v.key_id(), signer.key_id());
            assert!(v.verify("abc", &sig));
            assert!(!v.verify("abd", &sig));
            assert!(!v.verify("abc", "not base64!"));
        }
        let other = CheckpointSigner::generate().expect("other");
        assert!(!CheckpointVerifier::from_public_key(other.public_key().as_bytes()).expect("v").verify("abc", &sig));
        assert!(CheckpointSigner::from_pkcs8(b"garbage").is_err());
        assert!(CheckpointVerifier::from_public_key(b"AAAA").is_err());
        assert!(!format!("{signer:?}").contains("BEGIN"));
    }
}
