//! RFC 9449 DPoP proof checking shared by the resource-server layer (the `dpop` crate) and the
//! authorization server's token endpoint (the `workload-identity` crate, RFC 9449 §5): the proof
//! JWT's header, key, signature and claims ([`proof::validate`]), public JWKs and their RFC 7638
//! thumbprints ([`jwk`]), and `htu` normalisation ([`htu`]). Nonces, `jti` replay and the token
//! binding need state and stay with each caller.

pub mod htu;
pub mod jwk;
pub mod proof;

pub use jwk::{JwkError, ProofAlg, ProofKey, ReadyKey, jwk_thumbprint};
pub use proof::{Expect, ProofError, ValidProof, access_token_hash, validate};
