//! [`PreAuthLimitError`]: why the pre-authentication limit refused a request.

use std::time::Duration;

/// Why the pre-authentication limit refused a request (in the response extensions, next to the
/// [`Denial`](crate::Denial)). Never names the address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PreAuthLimitError {
    /// The client's address sent more than its share.
    #[error("too many requests from this client address; retry after {} s", super::retry_after_secs(*.retry_after))]
    Exceeded {
        /// When a request from that address conforms again.
        retry_after: Duration,
    },
    /// Every slot of the address table holds an active address.
    #[error("too many client addresses are active; cannot track another one right now")]
    Full,
}
