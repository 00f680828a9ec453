//! `WWW-Authenticate` challenges (RFC 6750 §3, RFC 9449 §7.1, RFC 9728 §5.1).

use http::HeaderValue;

/// The authentication scheme of a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// `Bearer`.
    Bearer,
    /// `DPoP`.
    Dpop,
}

/// OAuth error codes a resource server returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthErrorCode {
    /// `invalid_request`.
    InvalidRequest,
    /// `invalid_token`.
    InvalidToken,
    /// `insufficient_scope`.
    InsufficientScope,
    /// `invalid_dpop_proof`.
    InvalidDpopProof,
    /// `use_dpop_nonce`.
    UseDpopNonce,
}

impl AuthErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
        }
    }
}

/// One challenge. Values are quoted and escaped; characters a parameter may not carry are dropped
/// (`error_description` keeps only the RFC 6750 character set, scope tokens that are not valid are
/// left out).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Challenge {
    scheme: Scheme,
    params: Vec<(&'static str, String)>,
}

impl Challenge {
    /// A `Bearer` challenge.
    pub fn bearer() -> Self {
        Self { scheme: Scheme::Bearer, params: Vec::new() }
    }

    /// A `DPoP` challenge.
    pub fn dpop() -> Self {
        Self { scheme: Scheme::Dpop, params: Vec::new() }
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    fn set(mut self, name: &'static str, value: String) -> Self {
        self.params.retain(|(n, _)| *n != name);
        self.params.push((name, value));
        self
    }

    /// `realm`.
    pub fn realm(self, realm: &str) -> Self {
        self.set("realm", visible(realm))
    }

    /// `resource_metadata`: the URL of the RFC 9728 metadata document.
    pub fn resource_metadata(self, url: &str) -> Self {
        self.set("resource_metadata", visible(url))
    }

    /// `scope`: space-separated scopes (all in one challenge). Invalid scope tokens are left out.
    pub fn scope<I, T>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let scopes: Vec<String> =
            scopes.into_iter().filter(|s| is_scope_token(s.as_ref())).map(|s| s.as_ref().to_owned()).collect();
        if scopes.is_empty() { self } else { self.set("scope", scopes.join(" ")) }
    }

    /// `error`.
    pub fn error(self, code: AuthErrorCode) -> Self {
        self.set("error", code.as_str().to_owned())
    }

    /// `error_description`: human-readable, restricted to RFC 6750's character set.
    pub fn error_description(self, text: &str) -> Self {
        let clean: String =
            text.chars().filter(|c| matches!(*c as u32, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e)).collect();
        self.set("error_description", clean)
    }

    /// `algs` (DPoP): the accepted proof algorithms, space-separated.
    pub fn algs<I, T>(self, algs: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let algs: Vec<String> =
            algs.into_iter().filter(|a| is_token(a.as_ref())).map(|a| a.as_ref().to_owned()).collect();
        if algs.is_empty() { self } else { self.set("algs", algs.join(" ")) }
    }

    /// The challenge as text, e.g. `Bearer resource_metadata="…", error="invalid_token"`.
    pub fn to_text(&self) -> String {
        let mut out = String::from(match self.scheme {
            Scheme::Bearer => "Bearer",
            Scheme::Dpop => "DPoP",
        });
        for (i, (name, value)) in self.params.iter().enumerate() {
            out.push_str(if i == 0 { " " } else { ", " });
            out.push_str(name);
            out.push_str("=\"");
            for c in value.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        out
    }

    /// The challenge as a header value.
    pub fn to_header_value(&self) -> HeaderValue {
        // every character was restricted to visible ASCII and space above
        HeaderValue::from_str(&self.to_text()).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

/// Several challenges in one `WWW-Authenticate` value (e.g. `Bearer …, DPoP …`).
pub fn header_value(challenges: &[Challenge]) -> HeaderValue {
    let text = challenges.iter().map(Challenge::to_text).collect::<Vec<_>>().join(", ");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

fn visible(value: &str) -> String {
    value.chars().filter(|c| matches!(*c as u32, 0x20..=0x7e)).collect()
}

/// RFC 6749 scope-token: `1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_all_params() {
        let c = Challenge::bearer()
            .resource_metadata("https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
            .scope(["tools:read", "bad scope", "tools:write"])
            .error(AuthErrorCode::InsufficientScope)
            .error_description("needs \"write\" \\ more: é\n");
        assert_eq!(
            c.to_text(),
            "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", \
             scope=\"tools:read tools:write\", error=\"insufficient_scope\", error_description=\"needs write  more: \""
        );
        assert!(c.to_header_value().to_str().is_ok());
    }

    #[test]
    fn dpop_and_combined() {
        let d = Challenge::dpop().algs(["ES256", "EdDSA", "bad alg"]).error(AuthErrorCode::UseDpopNonce);
        assert_eq!(d.to_text(), "DPoP algs=\"ES256 EdDSA\", error=\"use_dpop_nonce\"");
        let v = header_value(&[Challenge::bearer().realm("a\"b"), d]);
        assert_eq!(
            v.to_str().expect("ascii"),
            "Bearer realm=\"a\\\"b\", DPoP algs=\"ES256 EdDSA\", error=\"use_dpop_nonce\""
        );
        // setting a parameter twice keeps the last value only
        assert_eq!(
            Challenge::bearer().error(AuthErrorCode::InvalidToken).error(AuthErrorCode::InvalidRequest).to_text(),
            "Bearer error=\"invalid_request\""
        );
        assert_eq!(Challenge::bearer().to_text(), "Bearer");
    }
}
