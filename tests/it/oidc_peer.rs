//! The OpenID provider harness (`mcp_enterprise_tests::oidc`) against the real npm
//! `oidc-provider`: discovery, RFC 9068 JWT access tokens, opaque tokens and introspection,
//! revocation, expiry, DPoP, path issuers, key rotation by restart, and "IdP down". The SSO tests
//! build on these guarantees, so they are checked here on their own.
//!
//! Needs the npm peers: `npm ci --prefix tests/peers` (the tests fail, with that hint, without
//! them).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use mcp_enterprise_tests::oidc::{
    DEFAULT_JWT_RESOURCE, DEFAULT_OPAQUE_RESOURCE, DPOP_CLIENT, INTROSPECTION_CLIENT, JWT_CLIENT, OPAQUE_CLIENT,
    OidcClient, OidcOptions, OidcProvider, PathDiscovery, SigningAlg, SigningKey, decode_jws,
};
use mcp_enterprise_tests::peers::Peers;
use serde_json::json;

async fn provider(options: OidcOptions) -> (Peers, OidcProvider) {
    let peers = Peers::require();
    let provider = OidcProvider::start(&peers, options).await.unwrap();
    (peers, provider)
}

/// The `kid`s published at the JWKS endpoint.
async fn published_kids(provider: &OidcProvider) -> BTreeSet<String> {
    let jwks = provider.get(&provider.jwks_uri()).await.unwrap().ok_json().unwrap();
    let keys = jwks["keys"].as_array().unwrap_or_else(|| panic!("JWKS without keys: {jwks}"));
    for key in keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(key.get(private).is_none(), "the JWKS leaks private member {private}: {key}");
        }
    }
    keys.iter().map(|key| key["kid"].as_str().unwrap().to_owned()).collect()
}

fn kids(keys: &[&SigningKey]) -> BTreeSet<String> {
    keys.iter().map(|key| key.kid().to_owned()).collect()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn discovery_documents_name_the_issuer() {
    let (_peers, provider) = provider(OidcOptions::default()).await;
    let issuer = provider.issuer().to_owned();
    assert_eq!(issuer, format!("http://127.0.0.1:{}", provider.port()));
    assert_eq!(provider.oauth_metadata_url(), format!("{issuer}/.well-known/oauth-authorization-server"));

    for url in [provider.openid_configuration_url(), provider.oauth_metadata_url()] {
        let metadata = provider.get(&url).await.unwrap().ok_json().unwrap();
        assert_eq!(metadata["issuer"], json!(issuer), "{url}: {metadata}");
        assert_eq!(metadata["token_endpoint"], json!(provider.token_endpoint()), "{url}");
        assert_eq!(metadata["jwks_uri"], json!(provider.jwks_uri()), "{url}");
        assert_eq!(metadata["introspection_endpoint"], json!(provider.introspection_endpoint()), "{url}");
        assert_eq!(metadata["revocation_endpoint"], json!(provider.revocation_endpoint()), "{url}");
        let grants = metadata["grant_types_supported"].as_array().unwrap();
        assert!(grants.contains(&json!("client_credentials")), "{url}: {metadata}");
        let auth_methods = metadata["token_endpoint_auth_methods_supported"].as_array().unwrap();
        assert!(auth_methods.contains(&json!("client_secret_basic")), "{url}: {metadata}");
        let dpop_algs = metadata["dpop_signing_alg_values_supported"].as_array().unwrap();
        assert!(dpop_algs.contains(&json!("ES256")), "{url}: {metadata}");
        let scopes = metadata["scopes_supported"].as_array().unwrap();
        for scope in ["mcp:tools", "mcp:tools:read", "mcp:admin"] {
            assert!(scopes.contains(&json!(scope)), "{url}: {metadata}");
        }
    }
    assert_eq!(published_kids(&provider).await, kids(&[provider.signing_key()]));
}

#[tokio::test]
async fn jwt_access_token_follows_rfc_9068() {
    let (_peers, provider) = provider(OidcOptions::default()).await;
    let before = now();
    let token = provider
        .client_credentials_token(JWT_CLIENT, Some(DEFAULT_JWT_RESOURCE), Some("mcp:tools mcp:admin not:offered"))
        .await
        .unwrap();
    let (header, claims) = decode_jws(&token).unwrap();

    assert_eq!(header["typ"], json!("at+jwt"), "{header}");
    assert_eq!(header["alg"], json!("ES256"), "{header}");
    assert_eq!(header["kid"], json!(provider.signing_key().kid()), "{header}");
    assert!(published_kids(&provider).await.contains(provider.signing_key().kid()));

    assert_eq!(claims["iss"], json!(provider.issuer()), "{claims}");
    assert_eq!(claims["aud"], json!(DEFAULT_JWT_RESOURCE), "{claims}");
    assert_eq!(claims["client_id"], json!(JWT_CLIENT.id), "{claims}");
    assert_eq!(claims["sub"], json!(JWT_CLIENT.id), "{claims}");
    // Scopes the resource does not offer are dropped, not refused.
    assert_eq!(claims["scope"], json!("mcp:tools mcp:admin"), "{claims}");
    assert!(claims["jti"].as_str().is_some_and(|jti| !jti.is_empty()), "{claims}");
    let iat = claims["iat"].as_u64().unwrap();
    assert!(iat + 5 >= before && iat <= now() + 5, "iat {iat} is not now ({before}): {claims}");
    assert_eq!(claims["exp"].as_u64().unwrap() - iat, 300, "{claims}");
    assert!(claims.get("cnf").is_none(), "a Bearer token is not sender-constrained: {claims}");

    // The provider refuses to introspect its JWTs.
    let refused = provider
        .post_form(&provider.introspection_endpoint(), Some(INTROSPECTION_CLIENT), &[("token", &token)], &[])
        .await
        .unwrap();
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert_eq!(refused.json["error"], json!("unsupported_token_type"), "{}", refused.text);
}

#[tokio::test]
async fn signing_alg_follows_the_first_key() {
    let peers = Peers::require();
    let keys =
        SigningKey::generate_many(&peers, &[SigningAlg::Rs256, SigningAlg::EdDsa, SigningAlg::Es256]).await.unwrap();
    assert_eq!(keys.iter().map(SigningKey::alg).collect::<Vec<_>>(), ["RS256", "EdDSA", "ES256"]);
    for first in 0..2 {
        let mut ordered = keys.clone();
        ordered.swap(0, first);
        let provider =
            OidcProvider::start(&peers, OidcOptions { keys: ordered.clone(), ..Default::default() }).await.unwrap();
        let token = provider.client_credentials_token(JWT_CLIENT, Some(DEFAULT_JWT_RESOURCE), None).await.unwrap();
        let (header, claims) = decode_jws(&token).unwrap();
        assert_eq!(header["alg"], json!(ordered[0].alg()), "{header}");
        assert_eq!(header["kid"], json!(ordered[0].kid()), "{header}");
        assert!(claims.get("scope").is_none(), "no scope requested, none granted: {claims}");
        assert_eq!(published_kids(&provider).await, kids(&ordered.iter().collect::<Vec<_>>()));
    }
}

#[tokio::test]
async fn opaque_tokens_introspect_until_revoked() {
    let (_peers, provider) = provider(OidcOptions::default()).await;
    let token = provider
        .client_credentials_token(OPAQUE_CLIENT, Some(DEFAULT_OPAQUE_RESOURCE), Some("mcp:tools:read"))
        .await
        .unwrap();
    assert!(decode_jws(&token).is_err(), "expected an opaque token, got a JWS: {token}");

    let introspection = provider.introspect(&token).await.unwrap();
    assert_eq!(introspection["active"], json!(true), "{introspection}");
    assert_eq!(introspection["aud"], json!(DEFAULT_OPAQUE_RESOURCE), "{introspection}");
    assert_eq!(introspection["iss"], json!(provider.issuer()), "{introspection}");
    assert_eq!(introspection["client_id"], json!(OPAQUE_CLIENT.id), "{introspection}");
    assert_eq!(introspection["scope"], json!("mcp:tools:read"), "{introspection}");
    assert_eq!(introspection["token_type"], json!("Bearer"), "{introspection}");
    assert!(introspection["exp"].as_u64().unwrap() > now(), "{introspection}");

    for garbage in ["garbage", &format!("{token}x")] {
        let introspection = provider.introspect(garbage).await.unwrap();
        assert_eq!(introspection, json!({ "active": false }), "{garbage}");
    }
    // Anything shaped like a JWS is refused outright, whether the provider issued it or not.
    let jws_shaped = provider
        .post_form(
            &provider.introspection_endpoint(),
            Some(INTROSPECTION_CLIENT),
            &[("token", "eyJhbGciOiJub25lIn0.e30.")],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(jws_shaped.status, StatusCode::BAD_REQUEST, "{}", jws_shaped.text);
    assert_eq!(jws_shaped.json["error"], json!("unsupported_token_type"), "{}", jws_shaped.text);

    // Only authenticated clients may introspect.
    let anonymous =
        provider.post_form(&provider.introspection_endpoint(), None, &[("token", token.as_str())], &[]).await.unwrap();
    assert_eq!(anonymous.status, StatusCode::BAD_REQUEST, "{}", anonymous.text);
    assert_eq!(anonymous.json["error"], json!("invalid_request"), "{}", anonymous.text);

    provider.revoke(OPAQUE_CLIENT, &token).await.unwrap();
    assert_eq!(provider.introspect(&token).await.unwrap(), json!({ "active": false }));
}

#[tokio::test]
async fn token_requests_are_checked() {
    let (_peers, provider) = provider(OidcOptions::default()).await;
    let unknown = provider.client_credentials(JWT_CLIENT, Some("https://unknown.test/mcp"), None, None).await.unwrap();
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.text);
    assert_eq!(unknown.json["error"], json!("invalid_target"), "{}", unknown.text);

    let wrong_secret = provider
        .post_form(
            &provider.token_endpoint(),
            Some(OidcClient { id: JWT_CLIENT.id, secret: "wrong" }),
            &[("grant_type", "client_credentials")],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(wrong_secret.status, StatusCode::UNAUTHORIZED, "{}", wrong_secret.text);
    assert_eq!(wrong_secret.json["error"], json!("invalid_client"), "{}", wrong_secret.text);

    // The resource server's client gets no tokens.
    let rs = provider.client_credentials(INTROSPECTION_CLIENT, Some(DEFAULT_JWT_RESOURCE), None, None).await.unwrap();
    assert_eq!(rs.status, StatusCode::BAD_REQUEST, "{}", rs.text);
    assert_eq!(rs.json["error"], json!("invalid_request"), "{}", rs.text);
    assert_eq!(rs.json["error_description"], json!("requested grant type is not allowed for this client"));

    // With any_resource_as_jwt, an unknown resource gets a JWT with that audience.
    let mut provider = provider;
    provider.restart_with(OidcOptions { any_resource_as_jwt: true, ..Default::default() }).await.unwrap();
    let token = provider.client_credentials_token(JWT_CLIENT, Some("https://elsewhere.test/mcp"), None).await.unwrap();
    assert_eq!(decode_jws(&token).unwrap().1["aud"], json!("https://elsewhere.test/mcp"));
}

#[tokio::test]
async fn short_lived_tokens_expire() {
    let options = OidcOptions { access_token_ttl: Duration::from_secs(1), ..Default::default() };
    let (_peers, provider) = provider(options).await;
    let jwt = provider.client_credentials_token(JWT_CLIENT, Some(DEFAULT_JWT_RESOURCE), None).await.unwrap();
    let claims = decode_jws(&jwt).unwrap().1;
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 1, "{claims}");

    let requested = now();
    let opaque = provider.client_credentials_token(OPAQUE_CLIENT, Some(DEFAULT_OPAQUE_RESOURCE), None).await.unwrap();
    let introspection = provider.introspect(&opaque).await.unwrap();
    // On a loaded machine the 1-second token may already have expired before the first
    // introspection; then it must really be past its lifetime. Otherwise wait for its `exp`.
    let exp = match introspection["exp"].as_u64() {
        Some(exp) => {
            assert_eq!(introspection["active"], json!(true), "{introspection}");
            exp
        }
        None => {
            assert_eq!(introspection, json!({ "active": false }));
            assert!(now() > requested, "inactive before its lifetime could have passed");
            requested + 1
        }
    };
    // `exp` is in whole seconds; the token is expired once the clock passes it.
    while now() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(provider.introspect(&opaque).await.unwrap(), json!({ "active": false }));
}

#[tokio::test]
async fn dpop_client_gets_bound_tokens_with_a_jose_proof() {
    let (peers, provider) = provider(OidcOptions::default()).await;

    let without_proof = provider.client_credentials(DPOP_CLIENT, Some(DEFAULT_JWT_RESOURCE), None, None).await.unwrap();
    assert_eq!(without_proof.status, StatusCode::BAD_REQUEST, "{}", without_proof.text);

    // A proof signed by jose-cli: this also checks the JOSE helper against an independent verifier.
    let holder = SigningKey::generate(&peers, SigningAlg::Es256).await.unwrap();
    let mut jwk = holder.public_jwk();
    for member in ["kid", "alg", "use"] {
        jwk.as_object_mut().unwrap().remove(member);
    }
    let header = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": jwk });
    let claims = json!({
        "jti": format!("proof-{}", now()),
        "htm": "POST",
        "htu": provider.token_endpoint(),
        "iat": now(),
    });
    let proof = holder.sign_claims(&peers, &header, &claims).await.unwrap();
    assert_eq!(decode_jws(&proof).unwrap(), (header.clone(), claims));

    let response = provider
        .client_credentials(DPOP_CLIENT, Some(DEFAULT_JWT_RESOURCE), Some("mcp:tools"), Some(&proof))
        .await
        .unwrap();
    let body = response.ok_json().unwrap();
    assert_eq!(body["token_type"], json!("DPoP"), "{body}");
    let claims = decode_jws(body["access_token"].as_str().unwrap()).unwrap().1;
    // jose's kid is the RFC 7638 thumbprint, which is what cnf.jkt holds.
    assert_eq!(claims["cnf"], json!({ "jkt": holder.kid() }), "{claims}");
    assert_eq!(claims["client_id"], json!(DPOP_CLIENT.id), "{claims}");

    // The same proof again is a replay.
    let replay =
        provider.client_credentials(DPOP_CLIENT, Some(DEFAULT_JWT_RESOURCE), None, Some(&proof)).await.unwrap();
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{}", replay.text);

    // With nonces required, a proof without one is answered with `use_dpop_nonce` and a nonce.
    let mut provider = provider;
    provider.restart_with(OidcOptions { dpop_require_nonce: true, ..Default::default() }).await.unwrap();
    let proof_claims = |jti: &str, nonce: Option<&str>| {
        let mut claims = json!({ "jti": jti, "htm": "POST", "htu": provider.token_endpoint(), "iat": now() });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        claims
    };
    let proof = holder.sign_claims(&peers, &header, &proof_claims("nonce-1", None)).await.unwrap();
    let challenge =
        provider.client_credentials(DPOP_CLIENT, Some(DEFAULT_JWT_RESOURCE), None, Some(&proof)).await.unwrap();
    assert_eq!(challenge.status, StatusCode::BAD_REQUEST, "{}", challenge.text);
    assert_eq!(challenge.json["error"], json!("use_dpop_nonce"), "{}", challenge.text);
    let nonce = challenge.headers.get("dpop-nonce").and_then(|value| value.to_str().ok()).unwrap().to_owned();
    let proof = holder.sign_claims(&peers, &header, &proof_claims("nonce-2", Some(&nonce))).await.unwrap();
    let response =
        provider.client_credentials(DPOP_CLIENT, Some(DEFAULT_JWT_RESOURCE), None, Some(&proof)).await.unwrap();
    assert_eq!(response.ok_json().unwrap()["token_type"], json!("DPoP"));
}

#[tokio::test]
async fn path_issuer_uses_path_insertion() {
    let options = OidcOptions {
        issuer_path: Some("/tenant-a".to_owned()),
        path_discovery: PathDiscovery::InsertionOnly,
        ..Default::default()
    };
    let (_peers, mut provider) = provider(options).await;
    let issuer = provider.issuer().to_owned();
    assert_eq!(issuer, format!("http://127.0.0.1:{}/tenant-a", provider.port()));
    let root = format!("http://127.0.0.1:{}", provider.port());

    for well_known in ["oauth-authorization-server", "openid-configuration"] {
        let inserted = format!("{root}/.well-known/{well_known}/tenant-a");
        let metadata = provider.get(&inserted).await.unwrap().ok_json().unwrap();
        assert_eq!(metadata["issuer"], json!(issuer), "{inserted}");
        assert_eq!(metadata["token_endpoint"], json!(format!("{issuer}/token")), "{inserted}");
        assert_eq!(metadata["jwks_uri"], json!(format!("{issuer}/jwks")), "{inserted}");
        for missing in [format!("{issuer}/.well-known/{well_known}"), format!("{root}/.well-known/{well_known}")] {
            assert_eq!(provider.get(&missing).await.unwrap().status, StatusCode::NOT_FOUND, "{missing}");
        }
    }
    assert_eq!(provider.oauth_metadata_url(), format!("{root}/.well-known/oauth-authorization-server/tenant-a"));

    let token = provider.client_credentials_token(JWT_CLIENT, Some(DEFAULT_JWT_RESOURCE), None).await.unwrap();
    assert_eq!(decode_jws(&token).unwrap().1["iss"], json!(issuer));
    assert_eq!(published_kids(&provider).await, kids(&[provider.signing_key()]));

    // OpenID appending only.
    let options = OidcOptions {
        issuer_path: Some("/tenant-a".to_owned()),
        path_discovery: PathDiscovery::AppendOnly,
        ..Default::default()
    };
    provider.restart_with(options).await.unwrap();
    let appended = provider.openid_configuration_url();
    assert_eq!(appended, format!("{issuer}/.well-known/openid-configuration"));
    assert_eq!(provider.get(&appended).await.unwrap().ok_json().unwrap()["issuer"], json!(issuer));
    assert_eq!(provider.get(&provider.oauth_metadata_url()).await.unwrap().status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn key_rotation_by_restart() {
    let (peers, mut provider) = provider(OidcOptions::default()).await;
    let issuer = provider.issuer().to_owned();
    let old = provider.signing_key().clone();
    let before = provider.client_credentials_token(JWT_CLIENT, Some(DEFAULT_JWT_RESOURCE), None).await.unwrap();
    assert_eq!(decode_jws(&before).unwrap().0["kid"], json!(old.kid()));

    // Phase 1: the new key signs, the old one is still published.
    let new = SigningKey::generate(&peers, SigningAlg::Es256).await.unwrap();
    assert_ne!(new.kid(), old.kid());
    provider.restart_with_keys(vec![new.clone(), old.clone()]).await.unwrap();
    assert_eq!(provider.issuer(), issuer, "a restart keeps the port");
    assert_eq!(published_kids(&provider).await, kids(&[&new, &old]));
    let during = provider.client_credentials_token(JWT_CLIENT, Some(DEFAULT_JWT_RESOURCE), None).await.unwrap();
    assert_eq!(decode_jws(&during).unwrap().0["kid"], json!(new.kid()));

    // Phase 2: the old key is retired.
    provider.restart_with_keys(vec![new.clone()]).await.unwrap();
    assert_eq!(published_kids(&provider).await, kids(&[&new]));
}

#[tokio::test]
async fn stopped_provider_refuses_connections_until_restarted() {
    let (_peers, mut provider) = provider(OidcOptions::default()).await;
    let opaque = provider.client_credentials_token(OPAQUE_CLIENT, Some(DEFAULT_OPAQUE_RESOURCE), None).await.unwrap();
    assert!(provider.is_running());

    provider.stop().unwrap();
    assert!(!provider.is_running());
    assert!(tokio::net::TcpStream::connect(provider.addr()).await.is_err(), "the port still accepts connections");
    assert!(provider.get(&provider.jwks_uri()).await.is_err());

    provider.restart().await.unwrap();
    assert!(provider.is_running());
    assert_eq!(published_kids(&provider).await, kids(&[provider.signing_key()]));
    // State lives in the provider's memory: tokens issued before the restart are forgotten.
    assert_eq!(provider.introspect(&opaque).await.unwrap(), json!({ "active": false }));
}
