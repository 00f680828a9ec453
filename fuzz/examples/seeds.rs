//! Writes the seed corpora of the byte-input targets into `fuzz/corpus/<target>/`:
//! `cargo run --example seeds` (from `fuzz/`). Tokens and proofs are signed with the fixture keys
//! (deterministic Ed25519), so they are valid for the targets' layers. The structure-aware
//! targets' seeds are a sample of minimised fuzzer output, not written here.

use std::path::Path;

use mcp_enterprise_core::headers::encode_value;
use mcp_enterprise_fuzz::{
    RESOURCE, access_token, attacker, b64, client, idp, idp_jwks, proof, proof_claims, token_claims,
};
use serde_json::json;

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join(name), data)) {
        panic!("writing {target}/{name}: {e}");
    }
}

fn main() {
    let jkt = client().thumbprint();
    let bound = access_token(Some(&jkt));
    let unbound = access_token(None);

    // jwt: tokens, hostile headers, key sets
    write("jwt", "valid-bound", bound.as_bytes());
    write("jwt", "valid-unbound", unbound.as_bytes());
    let claims = token_claims(None);
    for (name, header) in [
        ("alg-none", json!({"alg": "none", "typ": "at+jwt"})),
        ("alg-hs256", json!({"alg": "HS256", "typ": "at+jwt"})),
        ("kid-traversal", json!({"alg": "EdDSA", "kid": "../../../../dev/null"})),
        ("jku-injection", json!({"alg": "EdDSA", "jku": "https://attacker.example/jwks", "jwk": attacker().jwk()})),
        ("crit", json!({"alg": "EdDSA", "crit": ["exp"], "exp": 1})),
    ] {
        write("jwt", name, idp().sign(&header, &claims).as_bytes());
    }
    write("jwt", "attacker-signed", attacker().sign(&json!({"alg": "EdDSA"}), &claims).as_bytes());
    write(
        "jwt",
        "unsigned",
        format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(claims.to_string().as_bytes())).as_bytes(),
    );
    write("jwt", "jwks", idp_jwks().to_string().as_bytes());
    let mut svid = idp().jwk().clone();
    svid["use"] = json!("jwt-svid");
    svid["kid"] = json!("k1");
    write("jwt", "spiffe-bundle", json!({"keys": [svid], "spiffe_refresh_hint": 300}).to_string().as_bytes());
    write(
        "jwt",
        "jwks-mixed",
        json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "RSA", "kid": "rsa", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"},
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}
        ]}).to_string().as_bytes(),
    );

    // dpop_proof: proofs for the bound token, hostile variants, and tokens
    write("dpop_proof", "valid-proof", proof(&bound, "seed-1").as_bytes());
    write("dpop_proof", "valid-token", bound.as_bytes());
    let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": client().jwk()});
    let mut with_nonce = proof_claims(&bound, "seed-2");
    with_nonce["nonce"] = json!("server-nonce");
    write("dpop_proof", "proof-nonce", client().sign(&header, &with_nonce).as_bytes());
    let mut get = proof_claims(&bound, "seed-3");
    get["htm"] = json!("GET");
    write("dpop_proof", "proof-wrong-htm", client().sign(&header, &get).as_bytes());
    let mut query = proof_claims(&bound, "seed-4");
    query["htu"] = json!(format!("{}?q=1#frag", RESOURCE.replace("mcp.example.com", "MCP.example.com:443")));
    write("dpop_proof", "proof-htu-variant", client().sign(&header, &query).as_bytes());
    let mut private = client().jwk().clone();
    private["d"] = json!(b64(&[9; 32]));
    let private_header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": private});
    write(
        "dpop_proof",
        "proof-private-jwk",
        client().sign(&private_header, &proof_claims(&bound, "seed-5")).as_bytes(),
    );
    write(
        "dpop_proof",
        "proof-alg-none",
        format!(
            "{}.{}.c2ln",
            b64(json!({"typ": "dpop+jwt", "alg": "none", "jwk": client().jwk()}).to_string().as_bytes()),
            b64(proof_claims(&bound, "seed-6").to_string().as_bytes())
        )
        .as_bytes(),
    );

    // inspect: both eras, headers and sentinels
    let legacy_init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"extensions":{"io.github.mcp-enterprise/audit":{}}},"clientInfo":{"name":"seed","version":"1.0"}}}"#;
    write("inspect", "legacy-initialize", format!("content-type: application/json\n\n{legacy_init}").as_bytes());
    write(
        "inspect",
        "legacy-tools-call",
        b"mcp-session-id: 3f2a\nmcp-protocol-version: 2025-11-25\n\n{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"hi\"}}}",
    );
    write("inspect", "legacy-notification", b"\n\n{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    write("inspect", "legacy-response", b"\n\n{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}");
    write("inspect", "batch", b"\n\n[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]");
    let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"seed","version":"1"},"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}"#;
    write(
        "inspect",
        "modern-tools-call",
        format!(
            "mcp-protocol-version: 2026-07-28\nmcp-method: tools/call\nmcp-name: echo\nmcp-param-text: hi\n\n\
             {{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"text\":\"hi\"}},{meta}}}}}"
        )
        .as_bytes(),
    );
    let name = "héllo wörld";
    write(
        "inspect",
        "modern-sentinel",
        format!(
            "mcp-protocol-version: 2026-07-28\nmcp-method: resources/read\nmcp-name: {}\nmcp-param-x: {}\n\n\
             {{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"resources/read\",\"params\":{{\"uri\":\"{name}\",{meta}}}}}",
            encode_value(name),
            encode_value(" padded ")
        )
        .as_bytes(),
    );
    write(
        "inspect",
        "modern-discover-chunked",
        format!(
            "mcp-protocol-version: 2026-07-28\nmcp-method: server/discover\n\n\
             {{\"jsonrpc\":\"2.0\",\"id\":4,\x00\"method\":\"server/discover\",\"params\":{{{meta}}}}}"
        )
        .as_bytes(),
    );
    write(
        "inspect",
        "modern-mismatch",
        format!(
            "mcp-protocol-version: 2026-07-28\nmcp-method: tools/list\n\n\
             {{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{{\"name\":\"x\",{meta}}}}}"
        )
        .as_bytes(),
    );

    // sse_rewrite: byte 0 = number of cuts, then u16 cuts, then the upstream body
    let answer = r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{},"extensions":{"io.modelcontextprotocol/ui":{}}},"serverInfo":{"name":"s","version":"1"}}}"#;
    let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":0.5}}"#;
    let streams = [
        ("sse-answer", format!("event: message\nid: 1\ndata: {answer}\n\n")),
        ("sse-progress-then-answer", format!("event: message\ndata: {progress}\n\n: keep-alive\n\nevent: message\ndata: {answer}\n\n")),
        ("sse-crlf-multiline", "data: {\"jsonrpc\":\"2.0\",\"id\":1,\r\ndata: \"result\":{\"capabilities\":{}}}\r\n\r\n".to_owned()),
        ("sse-other-id", "data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-1,\"message\":\"no\"}}\n\n".to_owned()),
        ("sse-incomplete", "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"res".to_owned()),
        ("json-answer", answer.to_owned()),
    ];
    for (name, stream) in streams {
        let mut plain = vec![0u8];
        plain.extend_from_slice(stream.as_bytes());
        write("sse_rewrite", name, &plain);
        let mut cut = vec![3u8];
        for c in [1u16, 20, 60] {
            cut.extend_from_slice(&c.to_be_bytes());
        }
        cut.extend_from_slice(stream.as_bytes());
        write("sse_rewrite", &format!("{name}-cut"), &cut);
    }

    // config: the example documents
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/configs");
    let Ok(entries) = std::fs::read_dir(&examples) else { panic!("reading {}", examples.display()) };
    for entry in entries.flatten() {
        let path = entry.path();
        if matches!(path.extension().and_then(|e| e.to_str()), Some("toml" | "yaml" | "json"))
            && let (Some(name), Ok(text)) = (path.file_name().and_then(|n| n.to_str()), std::fs::read(&path))
        {
            write("config", name, &text);
        }
    }
}
