//! Validation of one DPoP proof (RFC 9449 §4.3): core's [`mcp_enterprise_core::dpop::proof`],
//! its refusals as [`DpopError`]s; the service checks the nonce, replay and binding.

use mcp_enterprise_core::dpop::jwk::ProofAlg;
pub use mcp_enterprise_core::dpop::proof::access_token_hash;
pub(crate) use mcp_enterprise_core::dpop::proof::{Expect, HEADER_CACHE_CAPACITY, HeaderCache, ValidProof, sha256};

use crate::error::DpopError;

/// Checks one proof (see [`mcp_enterprise_core::dpop::proof::validate`]).
pub(crate) fn validate(
    proof: &str,
    allowed: &[ProofAlg],
    e: &Expect<'_>,
    cache: Option<&HeaderCache>,
) -> Result<ValidProof, DpopError> {
    mcp_enterprise_core::dpop::proof::validate(proof, allowed, e, cache)
        .map_err(|e| DpopError::InvalidProof(e.reason()))
}
