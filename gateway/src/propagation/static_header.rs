//! `static`: the gateway's own credential for an upstream that does not know users — one header
//! (e.g. `Authorization: Bearer <the gateway's API key>`) whose value comes from a secret
//! reference in the configuration. It says nothing about the caller.

use http::{HeaderName, HeaderValue};

use super::PropagationError;

/// One header added to every upstream request. `Debug` never shows the value.
#[derive(Clone)]
pub struct StaticHeader {
    name: HeaderName,
    value: HeaderValue,
}

impl std::fmt::Debug for StaticHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticHeader").field("name", &self.name).field("value", &"***").finish()
    }
}

/// Headers that frame the message or address the upstream: never set from configuration.
const FRAMING: &[&str] = &["host", "connection", "content-length", "transfer-encoding", "te", "upgrade"];

impl StaticHeader {
    /// The header `name: value`; the value is marked sensitive (HPACK never indexes it, and
    /// `Debug` of the header map hides it).
    pub fn new(name: &str, value: &str) -> Result<Self, PropagationError> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| PropagationError::Config(format!("static: {name:?} is not a header name")))?;
        if FRAMING.contains(&name.as_str()) {
            return Err(PropagationError::Config(format!("static: the header {name} cannot be set")));
        }
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| PropagationError::Config("static: the value is not a valid header value".into()))?;
        value.set_sensitive(true);
        Ok(Self { name, value })
    }

    /// The header.
    pub fn header(&self) -> (HeaderName, HeaderValue) {
        (self.name.clone(), self.value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_values_and_redaction() {
        let h = StaticHeader::new("X-Api-Key", "s3cret").expect("header");
        assert_eq!(h.header().0.as_str(), "x-api-key");
        assert!(h.header().1.is_sensitive());
        assert!(!format!("{h:?}").contains("s3cret"));
        assert!(StaticHeader::new("bad name", "v").is_err());
        assert!(StaticHeader::new("host", "v").is_err());
        assert!(StaticHeader::new("Content-Length", "1").is_err());
        assert!(StaticHeader::new("authorization", "a\nb").is_err());
    }
}
