//! The ID-JAG grant (SEP-990) at the token endpoint: the minted token for the employee, every
//! refusal with its `invalid_grant` description, client authentication, discovery.

use super::*;
use crate::{EMA_EXTENSION_ID, GrantError, IdJagError, IdJagValidator, RegisteredClient};

const IDP: &str = "https://idp.example.com";
const CLIENT: &str = "mcp-client";
const SECRET: &str = "client-secret-1";

fn idp_policy(idp_key: &TestKey, clock: &ManualClock) -> TrustPolicy {
    let idp = TrustedIssuer::new(IDP, IssuerKeys::Static(json!({"keys": [idp_key.jwk("sig")]})))
        .rule(
            WorkloadRule::new("engineers", Pattern::any())
                .claim("/groups", Pattern::exact("engineering"))
                .and_then(|r| r.scopes(["mcp:tools", "mcp:read"]))
                .expect("rule"),
        )
        .rule(
            WorkloadRule::new("readers", Pattern::any())
                .scopes(["mcp:read"])
                .expect("rule")
                .resources(["https://second.example.com/mcp"]),
        )
        .forward_claim("groups");
    TrustPolicy::builder().issuer(idp).clock(Arc::new(clock.clone())).build().expect("policy")
}

fn id_jag_endpoint(keys: &Keys, idp_key: &TestKey, clock: &ManualClock) -> TokenEndpoint {
    let v = IdJagValidator::builder(idp_policy(idp_key, clock), AS)
        .resource(RESOURCE)
        .resource("https://second.example.com/mcp")
        .client(RegisteredClient::with_secret(CLIENT, SECRET))
        .client(RegisteredClient::with_secret("other-client", "other-secret"))
        .build()
        .expect("validator");
    TokenEndpoint::builder(grants(keys, clock))
        .id_jag(v)
        .access_token_ttl(Duration::from_secs(120))
        .build()
        .expect("endpoint")
}

fn jag_claims() -> Value {
    json!({
        "iss": IDP, "sub": "00u1alice", "aud": AS, "resource": RESOURCE, "client_id": CLIENT,
        "scope": "mcp:tools mcp:read", "email": "alice@example.com", "groups": ["engineering", "staff"],
        "iat": NOW, "exp": NOW + 300, "jti": jti(),
    })
}

fn sign_jag(key: &TestKey, claims: &Value) -> String {
    key.sign_raw(&json!({"alg": "ES256", "kid": key.kid, "typ": "oauth-id-jag+jwt"}), claims)
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
}

fn jag_request(assertion: &str, extra: &str, auth: Option<&str>) -> Request<Full<Bytes>> {
    let body = format!(
        "grant_type={}&assertion={assertion}{extra}",
        mcp_enterprise_core::jwks::form_encode(crate::JWT_BEARER_GRANT_TYPE)
    );
    let mut b = Request::post(TOKEN_URL).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, a);
    }
    b.body(Full::new(Bytes::from(body))).expect("request")
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json")
}

/// The refusal's body is `invalid_grant` with exactly `description`.
async fn refused(ep: &TokenEndpoint, assertion: &str, extra: &str, expected: IdJagError) {
    let res = send_to(ep, jag_request(assertion, extra, Some(&basic(CLIENT, SECRET)))).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body = json_of(&res);
    assert_eq!(body["error"], json!("invalid_grant"), "{body}");
    let description: String = format!("invalid ID-JAG: {expected}").chars().filter(|c| *c != '"').collect();
    assert_eq!(body["error_description"], json!(description));
    assert_eq!(res.extensions().get::<GrantError>(), Some(&GrantError::InvalidIdJag(expected)));
    assert!(!res.body().windows(20).any(|w| assertion.as_bytes().windows(20).any(|a| a == w)), "no echo");
}

#[tokio::test]
async fn an_id_jag_becomes_an_access_token_for_the_employee() {
    let (keys, clock, idp) = (keys(), ManualClock::at(NOW), ec_key("idp-1"));
    let ep = id_jag_endpoint(&keys, &idp, &clock);
    let a = sign_jag(&idp, &jag_claims());
    let res = send_to(&ep, jag_request(&a, "&scope=mcp%3Atools", Some(&basic(CLIENT, SECRET)))).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", String::from_utf8_lossy(res.body()));
    let body = json_of(&res);
    assert_eq!(body["scope"], json!("mcp:tools"));
    let token = body["access_token"].as_str().expect("token").to_owned();
    let c = claims_of(&token);
    assert_eq!(
        (c["iss"].as_str(), c["sub"].as_str(), c["aud"].as_str()),
        (Some(AS), Some("00u1alice"), Some(RESOURCE))
    );
    assert_eq!((c["client_id"].as_str(), c["idp"].as_str()), (Some(CLIENT), Some(IDP)));
    assert_eq!((c["email"].as_str(), &c["groups"]), (Some("alice@example.com"), &json!(["engineering", "staff"])));
    assert!(c.get("resource").is_none() && c.get("cnf").is_none());

    // the layer sees the employee and the client
    let layer =
        WorkloadIdentityLayer::builder(RESOURCE).accept_issued_tokens(ep.issued_tokens()).build().expect("layer");
    let res = call_layer(&layer, Some(&format!("Bearer {token}"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let p = json_of(&res);
    assert_eq!((p["subject"].as_str(), p["kind"].as_str()), (Some("00u1alice"), Some("User")));
    assert_eq!(p["client_id"], json!(CLIENT));
    assert_eq!(p["claims"]["email"], json!("alice@example.com"));
    assert_eq!(p["claims"]["idp"], json!(IDP));

    // client_secret_post; no scope requested: the ID-JAG's scopes the rule allows
    let b = sign_jag(&idp, &jag_claims());
    let res = send_to(&ep, jag_request(&b, &format!("&client_id={CLIENT}&client_secret={SECRET}"), None)).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", String::from_utf8_lossy(res.body()));
    assert_eq!(json_of(&res)["scope"], json!("mcp:tools mcp:read"));

    // a user outside `engineering` gets only what the `readers` rule allows: another resource
    let mut reader = jag_claims();
    reader["groups"] = json!(["sales"]);
    refused(&ep, &sign_jag(&idp, &reader), "", IdJagError::ResourceNotAllowed).await;
    reader["jti"] = json!(jti());
    reader["resource"] = json!("https://second.example.com/mcp");
    let res = send_to(&ep, jag_request(&sign_jag(&idp, &reader), "", Some(&basic(CLIENT, SECRET)))).await;
    assert_eq!(json_of(&res)["scope"], json!("mcp:read"));
}

#[tokio::test]
async fn every_refusal_is_invalid_grant_with_its_reason() {
    let (keys, clock, idp) = (keys(), ManualClock::at(NOW), ec_key("idp-1"));
    let ep = id_jag_endpoint(&keys, &idp, &clock);
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut c = jag_claims();
        f(&mut c);
        sign_jag(&idp, &c)
    };
    // wrong typ
    let plain = idp.sign_raw(&json!({"alg": "ES256", "kid": "idp-1", "typ": "JWT"}), &jag_claims());
    refused(&ep, &plain, "", IdJagError::WrongType("JWT".into())).await;
    refused(
        &ep,
        &edit(&|c| c["iss"] = json!("https://evil.example.com")),
        "",
        IdJagError::Jwt(JwtError::UntrustedIssuer),
    )
    .await;
    refused(&ep, &edit(&|c| c["aud"] = json!(TOKEN_URL)), "", IdJagError::WrongAudience).await;
    refused(&ep, &edit(&|c| c["aud"] = json!(RESOURCE)), "", IdJagError::WrongAudience).await;
    refused(&ep, &edit(&|c| c["resource"] = json!("https://unknown.example.com/mcp")), "", IdJagError::UnknownResource)
        .await;
    refused(&ep, &edit(&|c| drop(c.as_object_mut().map(|o| o.remove("resource")))), "", IdJagError::MissingResource)
        .await;
    refused(&ep, &edit(&|_| {}), "&resource=https%3A%2F%2Fsecond.example.com%2Fmcp", IdJagError::ResourceMismatch)
        .await;
    refused(&ep, &edit(&|c| c["client_id"] = json!("other-client")), "", IdJagError::ClientMismatch).await;
    refused(&ep, &edit(&|c| drop(c.as_object_mut().map(|o| o.remove("client_id")))), "", IdJagError::MissingClientId)
        .await;
    refused(
        &ep,
        &edit(&|c| (c["iat"] = json!(NOW - 400), c["exp"] = json!(NOW - 100)).1),
        "",
        IdJagError::Jwt(JwtError::Expired),
    )
    .await;
    refused(
        &ep,
        &edit(&|c| c["exp"] = json!(NOW + 301)),
        "",
        IdJagError::Jwt(JwtError::TooLongLived { lifetime: 301, max: 300 }),
    )
    .await;
    refused(&ep, &edit(&|_| {}), "&scope=mcp%3Aadmin", IdJagError::ScopeNotInIdJag("mcp:admin".into())).await;
    refused(
        &ep,
        &edit(&|c| c["scope"] = json!("mcp:tools mcp:admin")),
        "&scope=mcp%3Aadmin",
        IdJagError::ScopeNotAllowed("mcp:admin".into()),
    )
    .await;
    refused(
        &ep,
        &edit(&|c| drop(c.as_object_mut().map(|o| o.remove("sub")))),
        "",
        IdJagError::Jwt(JwtError::MissingSubject),
    )
    .await;
    // alg none and HS256
    let none = format!(
        "{}.{}.AAAA",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "oauth-id-jag+jwt"}).to_string()),
        URL_SAFE_NO_PAD.encode(jag_claims().to_string())
    );
    refused(&ep, &none, "", IdJagError::Jwt(JwtError::DisallowedAlgorithm("none".into()))).await;
    // the unsecured form (empty signature) is not even a JWS
    let unsecured = none.trim_end_matches("AAAA");
    refused(&ep, unsecured, "", IdJagError::Jwt(JwtError::Malformed("empty JWS part"))).await;
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            typ: Some("oauth-id-jag+jwt".into()),
            kid: Some("idp-1".into()),
            ..jsonwebtoken::Header::new(Algorithm::HS256)
        },
        &jag_claims(),
        &EncodingKey::from_secret(idp.x.as_bytes()),
    )
    .expect("hs256");
    refused(&ep, &hs, "", IdJagError::Jwt(JwtError::DisallowedAlgorithm("HS256".into()))).await;
    // a foreign key under the IdP's published kid
    let foreign = ec_key("idp-1");
    refused(&ep, &sign_jag(&foreign, &jag_claims()), "", IdJagError::Jwt(JwtError::BadSignature)).await;
    // replay: the same jti twice (scoped by iss and sub)
    let once = sign_jag(&idp, &jag_claims());
    let res = send_to(&ep, jag_request(&once, "", Some(&basic(CLIENT, SECRET)))).await;
    assert_eq!(res.status(), StatusCode::OK);
    refused(&ep, &once, "", IdJagError::Replayed).await;
    // a refused ID-JAG does not consume its jti
    let c = jag_claims();
    let good = sign_jag(&idp, &c);
    refused(&ep, &good, "&scope=mcp%3Aadmin", IdJagError::ScopeNotInIdJag("mcp:admin".into())).await;
    assert_eq!(send_to(&ep, jag_request(&good, "", Some(&basic(CLIENT, SECRET)))).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn client_authentication_is_required_and_checked() {
    let (keys, clock, idp) = (keys(), ManualClock::at(NOW), ec_key("idp-1"));
    let ep = id_jag_endpoint(&keys, &idp, &clock);
    let a = sign_jag(&idp, &jag_claims());
    for (extra, auth, code, description) in [
        ("", None, "invalid_client", "client authentication failed: the client must authenticate (client secret)"),
        (
            "",
            Some(basic(CLIENT, "wrong")),
            "invalid_client",
            "client authentication failed: unknown client or wrong secret",
        ),
        (
            "",
            Some(basic("nobody", SECRET)),
            "invalid_client",
            "client authentication failed: unknown client or wrong secret",
        ),
        (
            "",
            Some("Bearer x".to_owned()),
            "invalid_client",
            "client authentication failed: only Basic client authentication is supported",
        ),
        (
            "&client_secret=x",
            Some(basic(CLIENT, SECRET)),
            "invalid_request",
            "invalid request: more than one client authentication method",
        ),
        ("&client_secret=x", None, "invalid_request", "invalid request: client_secret without client_id"),
    ] {
        let res = send_to(&ep, jag_request(&a, extra, auth.as_deref())).await;
        let body = json_of(&res);
        assert_eq!((body["error"].as_str(), body["error_description"].as_str()), (Some(code), Some(description)));
        if code == "invalid_client" {
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Basic realm=\"token\"");
        }
    }
    // none of these consumed the ID-JAG
    assert_eq!(send_to(&ep, jag_request(&a, "", Some(&basic(CLIENT, SECRET)))).await.status(), StatusCode::OK);
    // the workload grant still works beside it (no client authentication, a workload JWT)
    let w = keys.k8s.sign(&k8s(TOKEN_URL, "payments", "agent"));
    assert_eq!(send_to(&ep, grant_request(&w, "")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn discovery_advertises_the_id_jag_profile() {
    let (keys, clock, idp) = (keys(), ManualClock::at(NOW), ec_key("idp-1"));
    let ep = id_jag_endpoint(&keys, &idp, &clock);
    let m = ep.metadata();
    assert_eq!(m["grant_types_supported"], json!([crate::JWT_BEARER_GRANT_TYPE]));
    assert_eq!(m["authorization_grant_profiles_supported"], json!(["urn:ietf:params:oauth:grant-profile:id-jag"]));
    assert_eq!(
        m["token_endpoint_auth_methods_supported"],
        json!(["none", "client_secret_basic", "client_secret_post", "private_key_jwt"])
    );
    let set = ep.add_extensions(mcp_enterprise_core::ExtensionSet::builder()).expect("ids").build();
    assert_eq!(set.advertised().get(EMA_EXTENSION_ID), Some(&json!({})));
    // without ID-JAGs: none of it
    let plain = endpoint(&keys, &clock);
    assert!(plain.metadata().get("authorization_grant_profiles_supported").is_none());
}

#[tokio::test]
async fn bad_setups_are_refused() {
    let (clock, idp) = (ManualClock::at(NOW), ec_key("idp-1"));
    let e = IdJagValidator::builder(idp_policy(&idp, &clock), AS).resource(RESOURCE).build().expect_err("no client");
    assert!(e.to_string().contains("registered client"), "{e}");
    let e = IdJagValidator::builder(idp_policy(&idp, &clock), AS)
        .client(RegisteredClient::with_secret(CLIENT, SECRET))
        .build()
        .expect_err("no resource");
    assert!(e.to_string().contains("resource"), "{e}");
    let e = IdJagValidator::builder(idp_policy(&idp, &clock), AS)
        .resource(RESOURCE)
        .client(RegisteredClient::with_secret(CLIENT, SECRET))
        .max_assertion_lifetime(Duration::from_secs(7200))
        .build()
        .expect_err("too long");
    assert!(e.to_string().contains("max_lifetime"), "{e}");
    let sub_forward =
        TrustedIssuer::new(IDP, IssuerKeys::Static(json!({"keys": [idp.jwk("sig")]}))).forward_claim("sub");
    let p = TrustPolicy::builder().issuer(sub_forward).build().expect("policy");
    let e = IdJagValidator::builder(p, AS)
        .resource(RESOURCE)
        .client(RegisteredClient::with_secret(CLIENT, SECRET))
        .build()
        .expect_err("reserved claim");
    assert!(e.to_string().contains("\"sub\""), "{e}");
}

/// Client ID Metadata Document settings: prefixes must be https URLs ending in '/' after the
/// host (so a prefix fixes the host); sizes and cache bounds are checked; a plain-http
/// `jwks_uri` is refused unless loopback is allowed.
#[test]
fn client_id_metadata_document_settings_are_checked() {
    use crate::ClientIdMetadataDocuments;
    use mcp_enterprise_core::jwks::HttpClient;

    let clock: Arc<dyn mcp_enterprise_core::clock::Clock> = Arc::new(ManualClock::at(NOW));
    let http = HttpClient::new(Duration::from_secs(1)).expect("valid");
    let docs = |p: &[&str]| {
        ClientIdMetadataDocuments::new(p.iter().map(|s| s.to_string()).collect(), http.clone(), clock.clone())
    };
    for bad in [
        &[][..],
        &["http://clients.example/"],
        &["https://clients.example"],
        &["https://clients.example.com"],
        &["not a url/"],
    ] {
        assert!(docs(bad).is_err(), "{bad:?}");
    }
    let ok = docs(&["https://clients.example/", "https://apps.example/mcp/"]).expect("valid");
    assert!(ok.max_bytes(100).is_err());
    let ok = docs(&["https://clients.example/"]).expect("valid");
    assert!(ok.cache(Duration::ZERO, 10).is_err());
    let ok = docs(&["https://clients.example/"]).expect("valid");
    assert!(ok.cache(Duration::from_secs(60), 0).is_err());
    let ok = docs(&["https://clients.example/"]).expect("valid").max_bytes(4096).expect("valid");
    assert!(ok.cache(Duration::from_secs(60), 10).is_ok());
    let e = RegisteredClient::with_jwks_uri("c", "http://keys.example/jwks.json", http.clone(), clock.clone(), false)
        .expect_err("plain http");
    assert!(e.to_string().contains("jwks_uri"), "{e}");
    assert!(RegisteredClient::with_jwks_uri("c", "http://127.0.0.1:1/jwks.json", http, clock, true).is_ok());
}
