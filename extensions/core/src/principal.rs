//! The authenticated caller, as auth layers establish it and audit/authorization read it.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// What kind of party the principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PrincipalKind {
    /// A human user (an SSO subject).
    User,
    /// An OAuth client acting for itself (client credentials).
    ServiceClient,
    /// A workload with a platform identity (SPIFFE, Kubernetes, cloud OIDC).
    Workload,
}

impl PrincipalKind {
    /// The lower-case name used in records and policies: `user`, `service_client`, `workload`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::ServiceClient => "service_client",
            Self::Workload => "workload",
        }
    }
}

/// How the principal authenticated on this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// A bearer access token.
    Bearer,
    /// A DPoP-bound access token with a valid proof.
    Dpop,
    /// A workload identity token.
    Workload,
}

impl AuthMethod {
    /// The lower-case name used in records and policies: `bearer`, `dpop`, `workload`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::Dpop => "dpop",
            Self::Workload => "workload",
        }
    }
}

/// A non-reversible fingerprint of a credential: the first 16 bytes of its SHA-256 digest,
/// shown as base64url. Lets audit correlate uses of one token without storing it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenFingerprint([u8; 16]);

impl TokenFingerprint {
    /// Builds the fingerprint from the SHA-256 digest of the token bytes (the auth layer computes
    /// the digest with its crypto provider; this crate has no crypto dependency).
    pub fn from_sha256(digest: &[u8; 32]) -> Self {
        let mut fp = [0u8; 16];
        fp.copy_from_slice(&digest[..16]);
        Self(fp)
    }

    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for TokenFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for TokenFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenFingerprint({self})")
    }
}

/// An authenticated caller. Inserted into the request extensions by auth layers. Cheap to clone
/// (the identity is shared), as several layers keep it per request.
#[derive(Clone, PartialEq)]
pub struct Principal {
    identity: Arc<Identity>,
    auth_method: AuthMethod,
}

/// Everything about a principal but how it authenticated this time.
#[derive(Clone, PartialEq)]
struct Identity {
    issuer: String,
    subject: String,
    kind: PrincipalKind,
    client_id: Option<String>,
    scopes: Vec<String>,
    claims: Map<String, Value>,
    token_fingerprint: Option<TokenFingerprint>,
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // claim values may be personal data: show their names only
        let i = &self.identity;
        f.debug_struct("Principal")
            .field("issuer", &i.issuer)
            .field("subject", &i.subject)
            .field("kind", &i.kind)
            .field("auth_method", &self.auth_method)
            .field("client_id", &i.client_id)
            .field("scopes", &i.scopes)
            .field("claims", &i.claims.keys().collect::<Vec<_>>())
            .field("token_fingerprint", &i.token_fingerprint)
            .finish()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // claim values may be personal data: show their names only
        f.debug_struct("Identity")
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("kind", &self.kind)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("claims", &self.claims.keys().collect::<Vec<_>>())
            .field("token_fingerprint", &self.token_fingerprint)
            .finish()
    }
}

impl Principal {
    /// Starts a principal.
    pub fn builder(
        issuer: impl Into<String>,
        subject: impl Into<String>,
        kind: PrincipalKind,
        auth_method: AuthMethod,
    ) -> PrincipalBuilder {
        PrincipalBuilder {
            identity: Identity {
                issuer: issuer.into(),
                subject: subject.into(),
                kind,
                client_id: None,
                scopes: Vec::new(),
                claims: Map::new(),
                token_fingerprint: None,
            },
            auth_method,
        }
    }

    /// The same principal, authenticated by `auth_method` (e.g. a token validated by one layer
    /// and presented with a DPoP proof to another); shares the identity, copies nothing.
    pub fn with_auth_method(&self, auth_method: AuthMethod) -> Self {
        Self { identity: self.identity.clone(), auth_method }
    }

    /// The token issuer (`iss`).
    pub fn issuer(&self) -> &str {
        &self.identity.issuer
    }
    /// The subject (`sub`), unique within the issuer.
    pub fn subject(&self) -> &str {
        &self.identity.subject
    }
    /// What kind of party this is.
    pub fn kind(&self) -> PrincipalKind {
        self.identity.kind
    }
    /// How it authenticated.
    pub fn auth_method(&self) -> AuthMethod {
        self.auth_method
    }
    /// The OAuth client id (`client_id` / `azp`), when known.
    pub fn client_id(&self) -> Option<&str> {
        self.identity.client_id.as_deref()
    }
    /// Granted scopes.
    pub fn scopes(&self) -> &[String] {
        &self.identity.scopes
    }
    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.identity.scopes.iter().any(|s| s == scope)
    }
    /// Claims selected by configuration for downstream use.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.identity.claims
    }
    /// The fingerprint of the credential used.
    pub fn token_fingerprint(&self) -> Option<TokenFingerprint> {
        self.identity.token_fingerprint
    }
}

/// Builds a [`Principal`].
#[derive(Debug)]
#[must_use]
pub struct PrincipalBuilder {
    identity: Identity,
    auth_method: AuthMethod,
}

impl PrincipalBuilder {
    /// Sets the client id.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.identity.client_id = Some(client_id.into());
        self
    }
    /// Sets the granted scopes (duplicates are dropped).
    pub fn scopes<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        for s in scopes {
            let s = s.into();
            if !self.identity.scopes.contains(&s) {
                self.identity.scopes.push(s);
            }
        }
        self
    }
    /// Adds a selected claim.
    pub fn claim(mut self, name: impl Into<String>, value: Value) -> Self {
        self.identity.claims.insert(name.into(), value);
        self
    }
    /// Sets the credential fingerprint.
    pub fn token_fingerprint(mut self, fingerprint: TokenFingerprint) -> Self {
        self.identity.token_fingerprint = Some(fingerprint);
        self
    }
    /// Finishes the principal.
    pub fn build(self) -> Principal {
        Principal { identity: Arc::new(self.identity), auth_method: self.auth_method }
    }
}

/// Where auth layers also leave the principal for an outer layer that may never see the
/// response (audit: a call whose client went away before the answer is still recorded with who
/// made it). The outer layer inserts a slot into the request extensions; an auth layer that
/// authenticates the request fills it ([`PrincipalSlot::fill`]). Without an outer layer asking,
/// filling costs one extension lookup and nothing is kept.
#[derive(Clone, Default)]
pub struct PrincipalSlot(Arc<std::sync::Mutex<Option<Principal>>>);

impl fmt::Debug for PrincipalSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PrincipalSlot").field(&self.get()).finish()
    }
}

impl PrincipalSlot {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `principal` into the slot an outer layer left in `extensions`, if there is one
    /// (the last layer to authenticate the request wins: DPoP refines SSO's `bearer` to `dpop`).
    pub fn fill(extensions: &http::Extensions, principal: &Principal) {
        if let Some(slot) = extensions.get::<Self>() {
            slot.set(principal.clone());
        }
    }

    /// Replaces what the slot holds.
    pub fn set(&self, principal: Principal) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(principal);
    }

    /// The principal last put into the slot.
    pub fn get(&self) -> Option<Principal> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn builder_and_redacting_debug() {
        let p = Principal::builder("https://idp", "alice", PrincipalKind::User, AuthMethod::Dpop)
            .client_id("app")
            .scopes(["read", "write", "read"])
            .claim("email", json!("alice@example.com"))
            .token_fingerprint(TokenFingerprint::from_sha256(&[7u8; 32]))
            .build();
        assert!(p.has_scope("write"));
        assert_eq!(p.scopes().len(), 2);
        assert_eq!(p.client_id(), Some("app"));
        let dbg = format!("{p:?}");
        assert!(dbg.contains("email"));
        assert!(!dbg.contains("alice@example.com"), "{dbg}");
        assert_eq!(p.token_fingerprint().map(|f| f.to_string()).as_deref(), Some("BwcHBwcHBwcHBwcHBwcHBw"));
    }

    #[test]
    fn a_slot_is_filled_through_the_extensions_it_was_left_in() {
        let bearer = Principal::builder("https://idp", "alice", PrincipalKind::User, AuthMethod::Bearer).build();
        let mut extensions = http::Extensions::new();
        // nobody asked: filling keeps nothing
        PrincipalSlot::fill(&extensions, &bearer);
        assert!(extensions.get::<PrincipalSlot>().is_none());
        let slot = PrincipalSlot::new();
        assert_eq!(slot.get(), None);
        extensions.insert(slot.clone());
        PrincipalSlot::fill(&extensions, &bearer);
        assert_eq!(slot.get().map(|p| p.auth_method()), Some(AuthMethod::Bearer));
        // a later layer refines it; the holder of the slot sees the last one
        PrincipalSlot::fill(&extensions, &bearer.with_auth_method(AuthMethod::Dpop));
        assert_eq!(
            slot.get().map(|p| (p.subject().to_owned(), p.auth_method())),
            Some(("alice".into(), AuthMethod::Dpop))
        );
        assert!(format!("{slot:?}").contains("alice"));
    }
}
