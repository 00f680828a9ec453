//! Stateless server nonces (RFC 9449 §9): an AES-256-GCM-sealed issue time, so any replica that
//! holds the key accepts any replica's nonce with no shared store. Keys rotate: the current key
//! seals, the current and previous keys open.

use std::fmt;
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const AAD: &[u8] = b"mcp-enterprise dpop nonce v1";

/// One nonce key: a 32-byte secret and a one-byte id that tells replicas which key sealed a nonce.
#[derive(Clone)]
pub struct NonceKey {
    id: u8,
    key: std::sync::Arc<LessSafeKey>,
}

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl NonceKey {
    /// A key from 32 secret bytes (share them with every replica).
    pub fn new(id: u8, secret: &[u8; 32]) -> Self {
        // a 32-byte key is always valid for AES-256-GCM
        let key = UnboundKey::new(&AES_256_GCM, secret).map(LessSafeKey::new);
        let key = key.unwrap_or_else(|_| unreachable!("AES-256-GCM takes any 32-byte key"));
        Self { id, key: std::sync::Arc::new(key) }
    }

    /// A random key (single-replica deployments, tests).
    pub fn random(id: u8) -> Self {
        let mut secret = [0u8; 32];
        let _ = SystemRandom::new().fill(&mut secret);
        Self::new(id, &secret)
    }

    /// The key id.
    pub fn id(&self) -> u8 {
        self.id
    }
}

/// Why a nonce was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NonceError {
    /// Not one of ours (bad encoding, unknown key, failed authentication).
    #[error("the nonce was not issued by this server")]
    Invalid,
    /// Ours, but too old (or from the future).
    #[error("the nonce has expired")]
    Expired,
}

/// Issues and checks nonces.
#[derive(Debug, Clone)]
pub struct NonceKeys {
    current: NonceKey,
    previous: Vec<NonceKey>,
    lifetime: Duration,
}

impl NonceKeys {
    /// Seals with `current`; nonces live for `lifetime`.
    pub fn new(current: NonceKey, lifetime: Duration) -> Self {
        Self { current, previous: Vec::new(), lifetime }
    }

    /// Also opens nonces sealed with an older key (rotation).
    #[must_use]
    pub fn with_previous(mut self, key: NonceKey) -> Self {
        self.previous.push(key);
        self
    }

    /// How long a nonce is accepted.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A nonce for the time `now`.
    pub fn issue(&self, now: Duration) -> String {
        let mut iv = [0u8; NONCE_LEN];
        let _ = SystemRandom::new().fill(&mut iv);
        let mut data = now.as_secs().to_be_bytes().to_vec();
        let sealed =
            self.current.key.seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::from(AAD), &mut data);
        if sealed.is_err() {
            // sealing 8 bytes cannot fail; an unusable nonce is refused later, never trusted
            return String::new();
        }
        let mut out = Vec::with_capacity(1 + NONCE_LEN + data.len());
        out.push(self.current.id);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&data);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Checks a nonce at time `now`; returns when it was issued.
    pub fn check(&self, nonce: &str, now: Duration) -> Result<Duration, NonceError> {
        if nonce.len() > 128 {
            return Err(NonceError::Invalid);
        }
        let raw = URL_SAFE_NO_PAD.decode(nonce).map_err(|_| NonceError::Invalid)?;
        if raw.len() != 1 + NONCE_LEN + 8 + 16 {
            return Err(NonceError::Invalid);
        }
        let key =
            std::iter::once(&self.current).chain(&self.previous).find(|k| k.id == raw[0]).ok_or(NonceError::Invalid)?;
        let mut iv = [0u8; NONCE_LEN];
        iv.copy_from_slice(&raw[1..=NONCE_LEN]);
        let mut data = raw[1 + NONCE_LEN..].to_vec();
        let plain = key
            .key
            .open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(AAD), &mut data)
            .map_err(|_| NonceError::Invalid)?;
        let mut secs = [0u8; 8];
        secs.copy_from_slice(plain.get(..8).ok_or(NonceError::Invalid)?);
        let issued = Duration::from_secs(u64::from_be_bytes(secs));
        // a small allowance for replica clock skew on the future side
        if issued > now + Duration::from_secs(5) || now.saturating_sub(issued) > self.lifetime {
            return Err(NonceError::Expired);
        }
        Ok(issued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(1_800_000_000);

    #[test]
    fn any_replica_with_the_key_accepts() {
        let secret = [7u8; 32];
        let a = NonceKeys::new(NonceKey::new(1, &secret), Duration::from_secs(300));
        let b = NonceKeys::new(NonceKey::new(1, &secret), Duration::from_secs(300));
        let n = a.issue(T);
        assert_eq!(b.check(&n, T + Duration::from_secs(10)), Ok(T));
        assert_ne!(a.issue(T), a.issue(T), "every nonce is unique");
    }

    #[test]
    fn expiry_tampering_and_rotation() {
        let old = NonceKey::new(1, &[1u8; 32]);
        let new = NonceKey::new(2, &[2u8; 32]);
        let before = NonceKeys::new(old.clone(), Duration::from_secs(300));
        let n = before.issue(T);
        assert_eq!(before.check(&n, T + Duration::from_secs(301)), Err(NonceError::Expired));
        assert_eq!(before.check(&n, T - Duration::from_secs(60)), Err(NonceError::Expired));
        let mut tampered = URL_SAFE_NO_PAD.decode(&n).expect("b64");
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(before.check(&URL_SAFE_NO_PAD.encode(tampered), T), Err(NonceError::Invalid));
        assert_eq!(before.check("garbage", T), Err(NonceError::Invalid));
        assert_eq!(before.check(&"A".repeat(500), T), Err(NonceError::Invalid));
        // rotated: the new key seals, the old one still opens
        let rotated = NonceKeys::new(new.clone(), Duration::from_secs(300)).with_previous(old);
        assert!(rotated.check(&n, T).is_ok());
        let fresh = rotated.issue(T);
        assert_eq!(before.check(&fresh, T), Err(NonceError::Invalid), "unknown key id");
        // after retiring the old key its nonces are refused
        let retired = NonceKeys::new(new, Duration::from_secs(300));
        assert_eq!(retired.check(&n, T), Err(NonceError::Invalid));
        // a different secret under the same id fails authentication
        let forged = NonceKeys::new(NonceKey::new(1, &[9u8; 32]), Duration::from_secs(300));
        assert_eq!(forged.check(&n, T), Err(NonceError::Invalid));
    }
}
