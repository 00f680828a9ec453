//! Claims → [`Principal`]: subject, client, scopes, groups, roles and tenant by configurable claim
//! paths.

use mcp_enterprise_core::{AuthMethod, Principal, PrincipalKind, TokenFingerprint};
use serde_json::{Map, Value};

/// Where the principal's parts are found in the claims. Paths are dotted (`realm_access.roles`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// Claims holding scopes: a space-separated string (`scope`) or an array (`scp`); first found wins.
    pub scope: Vec<String>,
    /// Claims holding the client id; first found wins.
    pub client_id: Vec<String>,
    /// Groups claim path.
    pub groups: Option<String>,
    /// Roles claim path.
    pub roles: Option<String>,
    /// Tenant claim path.
    pub tenant: Option<String>,
    /// Other claims copied into the principal as they are.
    pub forward: Vec<String>,
    /// Subjects with these prefixes are workloads (e.g. `spiffe://`).
    pub workload_subject_prefixes: Vec<String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            scope: vec!["scope".into(), "scp".into()],
            client_id: vec!["client_id".into(), "azp".into()],
            groups: Some("groups".into()),
            roles: Some("roles".into()),
            tenant: None,
            forward: Vec::new(),
            workload_subject_prefixes: vec!["spiffe://".into(), "system:serviceaccount:".into()],
        }
    }
}

/// Follows a dotted path into a JSON object.
pub(crate) fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    // a claim whose name itself contains dots (e.g. a URL-named claim) wins over the path reading
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut current = claims.get(parts.next()?)?;
    for part in parts {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// Scopes from a `scope` string or a `scp` array (or a string).
pub(crate) fn scopes_of(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// Where a token's claims came from: a JWT must carry `sub` (RFC 9068); an introspection
/// response may omit it (RFC 7662), and then names the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenForm {
    Jwt,
    Introspected,
}

impl ClaimMapping {
    /// Builds the principal for validated claims.
    pub(crate) fn principal(
        &self,
        issuer: &str,
        claims: &Map<String, Value>,
        fingerprint: TokenFingerprint,
        form: TokenForm,
    ) -> Option<Principal> {
        let client_id = self.client_id.iter().find_map(|p| lookup(claims, p)).and_then(Value::as_str);
        // RFC 7662 makes `sub` optional: a client-credentials token without one is the client itself
        // an empty subject names nobody: refused like a missing one (principal-keyed policies, limits
        // and audit records need a real identity)
        let subject = claims.get("sub").and_then(Value::as_str).or(if form == TokenForm::Introspected {
            client_id
        } else {
            None
        })?;
        if subject.is_empty() {
            return None;
        }
        let scopes = self.scope.iter().find_map(|p| lookup(claims, p)).map(scopes_of).unwrap_or_default();
        let kind = if self.workload_subject_prefixes.iter().any(|p| subject.starts_with(p.as_str())) {
            PrincipalKind::Workload
        } else if client_id == Some(subject) {
            PrincipalKind::ServiceClient
        } else {
            PrincipalKind::User
        };
        let mut builder =
            Principal::builder(issuer, subject, kind, AuthMethod::Bearer).scopes(scopes).token_fingerprint(fingerprint);
        if let Some(client_id) = client_id {
            builder = builder.client_id(client_id);
        }
        for (name, path) in [("groups", &self.groups), ("roles", &self.roles), ("tenant", &self.tenant)] {
            if let Some(value) = path.as_deref().and_then(|p| lookup(claims, p)) {
                builder = builder.claim(name, value.clone());
            }
        }
        for name in &self.forward {
            if let Some(value) = lookup(claims, name) {
                builder = builder.claim(name.clone(), value.clone());
            }
        }
        Some(builder.build())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn user_with_groups_roles_and_tenant() {
        let mapping = ClaimMapping {
            roles: Some("realm_access.roles".into()),
            tenant: Some("tid".into()),
            forward: vec!["email".into()],
            ..ClaimMapping::default()
        };
        let claims = map(json!({"sub": "alice", "azp": "app", "scope": "a b  c", "groups": ["eng"],
            "realm_access": {"roles": ["admin"]}, "tid": "t1", "email": "a@x"}));
        let p = mapping
            .principal("https://idp", &claims, TokenFingerprint::from_sha256(&[0; 32]), TokenForm::Jwt)
            .expect("principal");
        assert_eq!(p.kind(), PrincipalKind::User);
        assert_eq!(p.client_id(), Some("app"));
        assert_eq!(p.scopes(), ["a", "b", "c"]);
        assert_eq!(p.claims()["groups"], json!(["eng"]));
        assert_eq!(p.claims()["roles"], json!(["admin"]));
        assert_eq!(p.claims()["tenant"], json!("t1"));
        assert_eq!(p.claims()["email"], json!("a@x"));
    }

    #[test]
    fn service_clients_and_workloads() {
        let m = ClaimMapping::default();
        let fp = TokenFingerprint::from_sha256(&[0; 32]);
        let c = m
            .principal("i", &map(json!({"sub": "svc", "client_id": "svc", "scp": ["x"]})), fp, TokenForm::Jwt)
            .expect("p");
        assert_eq!(c.kind(), PrincipalKind::ServiceClient);
        assert_eq!(c.scopes(), ["x"]);
        let w =
            m.principal("i", &map(json!({"sub": "spiffe://example.org/ns/a/sa/b"})), fp, TokenForm::Jwt).expect("p");
        assert_eq!(w.kind(), PrincipalKind::Workload);
        assert!(m.principal("i", &map(json!({"sub": 7})), fp, TokenForm::Jwt).is_none());
        assert!(m.principal("i", &map(json!({"sub": ""})), fp, TokenForm::Jwt).is_none(), "an empty subject");
        assert!(
            m.principal("i", &map(json!({"client_id": ""})), fp, TokenForm::Introspected).is_none(),
            "an empty client as subject"
        );
        // no `sub`: a JWT is refused, an introspected client-credentials token is the client
        let cc = map(json!({"client_id": "svc", "scope": "x"}));
        assert!(m.principal("i", &cc, fp, TokenForm::Jwt).is_none());
        let c = m.principal("i", &cc, fp, TokenForm::Introspected).expect("p");
        assert_eq!((c.subject(), c.kind()), ("svc", PrincipalKind::ServiceClient));
        assert!(m.principal("i", &map(json!({"scope": "x"})), fp, TokenForm::Introspected).is_none());
    }
}
