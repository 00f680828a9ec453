//! The configuration document end to end: every error class located exactly, environment
//! precedence, secrets never shown, the checked-in schema and reference current, client formats
//! round-tripping, every example passing `config check`, the server card served, and reloads —
//! in process and by SIGHUP to a child gateway — under load without a failed request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use mcp_enterprise::commands;
use mcp_enterprise_audit::verify::verify_dir;
use mcp_enterprise_audit::{CheckpointSigner, CheckpointVerifier, trail_files};
use mcp_enterprise_config::clients::{ClientEntry, ClientFormat, import_document};
use mcp_enterprise_config::{ConfigError, DiagnosticKind, Format, Loader, REDACTED};
use mcp_enterprise_gateway::configured::{ConfiguredError, ConfiguredGateway};
use serde_json::{Value, json};

use crate::common::{self, call, demo_upstream, modern};

const NONCE_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

/// The diagnostics of a document that must not load, as `location: path: expected …, found …`.
fn errors(loader: Loader) -> Vec<String> {
    match loader.load() {
        Ok(loaded) => panic!("expected errors, loaded {loaded:?}"),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

fn has(errors: &[String], needle: &str) -> bool {
    errors.iter().any(|e| e.contains(needle))
}

#[test]
fn every_error_class_is_reported_at_once_with_its_exact_location() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = write(dir.path(), "a-file", "not a directory");
    let toml = write(
        dir.path(),
        "mcp.toml",
        &format!(
            r#"version = 1
resource = "https://mcp.example.com/mcp"

[upstream]
url = "htp://127.0.0.1:8081/mcp"

[listen]
adress = "127.0.0.1:8787"

[[sso.issuers]]
issuer = "https://idp.example.com"
leeway_secs = "sixty"
jwks_uri = "idp.example.com/keys"

[sso.scopes]
rules = [{{ method = "tools/call" }}]

[dpop]
accept_bearer = true
static_validator = {{ issuer = "https://idp.example.com", audiences = [], jwks = {{ keys = [] }} }}

[audit]
directory = "{}/trail"
fsync = "sometimes"
hmac_key_file = "${{file:missing-hmac.key}}"
"#,
            blocker.display()
        ),
    );
    let e = errors(Loader::new().file(&toml).env(no_env()));
    let t = toml.display();
    let expect = [
        // wrong scheme: a bad URL
        format!(
            "{t}:5:7: upstream.url: expected an absolute http(s) URL (scheme http or https), found the string \"htp://127.0.0.1:8081/mcp\""
        ),
        // unknown key, with the key it probably meant
        format!("{t}:8:1: listen.adress: expected a known key, like `address`, found the unknown key `adress`"),
        // wrong type
        format!("{t}:12:15: sso.issuers[0].leeway_secs: expected an unsigned integer, found the string \"sixty\""),
        format!(
            "{t}:13:12: sso.issuers[0].jwks_uri: expected an absolute http(s) URL (with a scheme, like https://), found the string \"idp.example.com/keys\""
        ),
        // a missing key: at the table that lacks it
        format!(
            "{t}:16:10: sso.scopes.rules[0].scopes: expected a list of strings, found no `scopes` in `sso.scopes.rules[0]`"
        ),
        // an enum name
        format!(
            "{t}:24:9: audit.fsync: expected one of `every_record`, `interval`, `os`, found the string \"sometimes\""
        ),
        // an unresolvable secret reference
        format!(
            "{t}:25:17: audit.hmac_key_file: expected a readable file {}, found entity not found",
            dir.path().join("missing-hmac.key").display()
        ),
        // unusable: the audit directory cannot be created
        format!(
            "{t}:23:13: audit.directory: expected a directory the gateway can create and write, found \"{}/trail\": {} is not a directory",
            blocker.display(),
            blocker.display()
        ),
    ];
    for line in &expect {
        assert!(e.contains(line), "missing:\n  {line}\nin:\n  {}", e.join("\n  "));
    }
    assert_eq!(e.len(), expect.len(), "{}", e.join("\n"));

    // impossible combinations (YAML), and a conflict with an inherited setting
    let yaml = write(
        dir.path(),
        "mcp.yaml",
        "version: 1\nresource: https://mcp.example.com/mcp\nupstream:\n  url: http://127.0.0.1:8081/mcp\n\
         listen:\n  address: 0.0.0.0:8787\n  insecure_listen_any: false\ndpop:\n  nonce:\n    mode: required\n\
         workload_identity:\n  resource: https://other.example.com/mcp\n  issuers: []\n",
    );
    let e = errors(Loader::new().file(&yaml).env(no_env()));
    let y = yaml.display();
    let expect = [
        format!(
            "{y}:8:1: dpop: expected a token validator for DPoP-bound tokens: an `sso` section (its issuers judge the tokens), a `workload_identity.authorization_server` (its own tokens) or `dpop.static_validator`, found a dpop section with neither"
        ),
        format!("{y}:9:3: dpop.nonce.keys: expected at least one nonce key for nonce mode \"required\""),
        format!(
            "{y}:12:13: workload_identity.resource: expected the top-level resource \"https://mcp.example.com/mcp\""
        ),
        format!(
            "{y}:11:1: workload_identity: expected `direct` (workload JWTs as bearer tokens) and/or `authorization_server`"
        ),
    ];
    for line in &expect {
        assert!(has(&e, line), "missing:\n  {line}\nin:\n  {}", e.join("\n  "));
    }
    assert_eq!(e.len(), expect.len(), "{}", e.join("\n"));
    let kinds: Vec<DiagnosticKind> =
        Loader::new().file(&yaml).env(no_env()).load().unwrap_err().diagnostics().iter().map(|d| d.kind).collect();
    assert!(kinds.iter().all(|k| *k == DiagnosticKind::Conflict), "{kinds:?}");

    // the listen address with no authentication at all
    let open = write(
        dir.path(),
        "open.json",
        "{\"version\": 1, \"resource\": \"http://127.0.0.1:8787/mcp\",\n \"upstream\": {\"url\": \"http://127.0.0.1:1/mcp\"},\n \"listen\": {\"address\": \"0.0.0.0:8787\"}}\n",
    );
    let e = errors(Loader::new().file(&open).env(no_env()));
    assert!(
        has(
            &e,
            &format!(
                "{}:3:24: listen.address: expected a loopback address, or an authentication section",
                open.display()
            )
        ),
        "{e:?}"
    );

    // syntax errors: the parser's position, one per file
    let broken_toml = write(dir.path(), "broken.toml", "version = 1\nresource = \"https://x\n");
    let broken_json = write(dir.path(), "broken.json", "{\n  \"version\": 1,\n}\n");
    let e = errors(Loader::new().file(&broken_toml).file(&broken_json).env(no_env()));
    assert!(
        has(
            &e,
            &format!(
                "{}:2:22: (document): expected a valid TOML document whose top level is a table, found invalid basic string",
                broken_toml.display()
            )
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            &format!(
                "{}:3:1: (document): expected a valid JSON document whose top level is a table, found trailing comma",
                broken_json.display()
            )
        ),
        "{e:?}"
    );
    let unknown_ext = write(dir.path(), "mcp.ini", "x");
    assert!(has(&errors(Loader::new().file(&unknown_ext)), "expected a .toml, .yaml, .yml or .json file"));
}

#[test]
fn the_environment_overrides_every_file_and_is_named_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(
        dir.path(),
        "base.toml",
        "version = 1\nresource = \"http://127.0.0.1:8787/mcp\"\n[upstream]\nurl = \"http://127.0.0.1:1/mcp\"\n\
         [listen]\naddress = \"127.0.0.1:1000\"\nallowed_hosts = [\"a.example\"]\n[core]\nmax_body_bytes = 1000\n",
    );
    let overlay =
        write(dir.path(), "overlay.yaml", "listen:\n  address: 127.0.0.1:2000\ncore:\n  legacy_session_capacity: 7\n");
    let load = |env: &[(&str, &str)]| {
        Loader::new().file(&base).file(&overlay).env(env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).load()
    };
    // files merge in order: later files win, keys they do not name stay
    let c = load(&[]).unwrap();
    assert_eq!(c.config().listen.address, "127.0.0.1:2000");
    assert_eq!(c.config().listen.allowed_hosts, ["a.example"]);
    assert_eq!((c.config().core.max_body_bytes, c.config().core.legacy_session_capacity), (1000, 7));
    // the environment wins over both; `__` nests, values are typed by the schema
    let c = load(&[
        ("MCPE_LISTEN__ADDRESS", "127.0.0.1:3000"),
        ("MCPE_CORE__MAX_BODY_BYTES", "2048"),
        ("MCPE_LISTEN__ALLOWED_HOSTS", "[b.example, c.example]"),
        ("MCPE_CORE__VENDOR_PREFIX", "com.acme"),
        ("MCPE_AUDIT_LOAD_REQUESTS", "5"), // not configuration: no `__`, not a top-level key
    ])
    .unwrap();
    assert_eq!(c.config().listen.address, "127.0.0.1:3000");
    assert_eq!(c.config().core.max_body_bytes, 2048);
    assert_eq!(c.config().listen.allowed_hosts, ["b.example", "c.example"]);
    assert_eq!(c.config().core.vendor_prefix, "com.acme");
    assert_eq!(c.env_overrides().len(), 4);
    // a number where a string belongs is taken as written
    let c = load(&[("MCPE_CLIENT__NAME", "12345")]).unwrap();
    assert_eq!(c.config().client.as_ref().and_then(|c| c.name.as_deref()), Some("12345"));
    // errors name the variable
    let e = load(&[("MCPE_CORE__MAX_BODY_BYTES", "lots"), ("MCPE_CORE__MAX_BODY_BYTS", "1")]).unwrap_err();
    let e: Vec<String> = e.diagnostics().iter().map(ToString::to_string).collect();
    assert!(e.contains(&"environment variable MCPE_CORE__MAX_BODY_BYTES: core.max_body_bytes: expected an unsigned integer, found the string \"lots\"".to_owned()), "{e:?}");
    assert!(
        has(
            &e,
            "environment variable MCPE_CORE__MAX_BODY_BYTS: core.max_body_byts: expected a known key, like `max_body_bytes`"
        ),
        "{e:?}"
    );
}

#[test]
fn secrets_and_their_references_never_appear_in_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = write(dir.path(), "redis-password", "file-secret-6f1c\n");
    let env =
        [("INTROSPECTION_SECRET", "env-secret-93ab"), ("NONCE", NONCE_KEY), ("UPSTREAM", "http://127.0.0.1:9/mcp")];
    let doc = format!(
        r#"version = 1
resource = "http://127.0.0.1:8787/mcp"
[upstream]
url = "${{env:UPSTREAM}}"
[[sso.issuers]]
issuer = "https://idp.example.com"
introspection = {{ client_id = "rs", client_secret = "${{env:INTROSPECTION_SECRET}}" }}
[dpop]
nonce = {{ mode = "required", keys = ["${{env:NONCE}}"] }}
[redis]
url = "redis://redis:6379"
password = "${{file:{}}}"
dpop_replay = {{}}
[client]
name = "x"
"#,
        secret_file.display()
    );
    let path = write(dir.path(), "mcp.toml", &doc);
    let loaded = Loader::new().file(&path).env(env).load().unwrap();
    // resolved for the layers
    assert_eq!(loaded.config().upstream.url, "http://127.0.0.1:9/mcp");
    let redis = loaded.config().redis.as_ref().unwrap();
    assert_eq!(redis.password.as_deref(), Some("file-secret-6f1c"));
    let forbidden = ["env-secret-93ab", "file-secret-6f1c", NONCE_KEY, "${env:", "${file:", "127.0.0.1:9/"];
    let mut outputs = vec![format!("{loaded:?}"), format!("{:?}", loaded.config()), loaded.redacted().to_string()];
    for format in [Format::Toml, Format::Yaml, Format::Json] {
        outputs.push(loaded.print(format).unwrap());
    }
    let mut printed = Vec::new();
    assert!(commands::print(Loader::new().file(&path).env(env), Format::Toml, &mut printed).unwrap());
    outputs.push(String::from_utf8(printed).unwrap());
    let entry = ClientEntry::from_config(loaded.config());
    for format in ClientFormat::ALL {
        outputs.push(entry.export(format).unwrap());
    }
    for out in &outputs {
        for secret in forbidden {
            assert!(!out.contains(secret), "{secret} appears in:\n{out}");
        }
    }
    assert!(outputs[3].contains(&format!("client_secret = \"{REDACTED}\"")), "{}", outputs[3]);
    assert!(
        outputs[3].contains(&format!("url = \"{REDACTED}\"")),
        "a value from a reference is secret: {}",
        outputs[3]
    );

    // errors about a secret value never show it either — ours, or a layer's that echoes values
    let bad = doc
        .replace("url = \"${env:UPSTREAM}\"", "url = \"${env:INTROSPECTION_SECRET}\"")
        .replace(
            "issuer = \"https://idp.example.com\"",
            "issuer = \"https://${env:INTROSPECTION_SECRET}.example.com\"\nalgorithms = [\"none\"]",
        )
        .replace("[client]", "[core]\nmax_body_bytes = \"${file:redis-password}\"\n[client]");
    let path = write(dir.path(), "bad.toml", &bad);
    let e = Loader::new().file(&path).env(env).load().unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(
            "upstream.url: expected an absolute http(s) URL (with a scheme, like https://), found a secret string"
        ),
        "{text}"
    );
    assert!(text.contains("core.max_body_bytes: expected an unsigned integer, found a secret string"), "{text}");
    // the SSO layer's own message names the issuer, whose value came from a reference
    assert!(text.contains(&format!("sso.issuers[0]: expected settings the SSO layer accepts, found issuer \"{REDACTED}\": unknown algorithm \"none\"")), "{text}");
    for secret in forbidden {
        assert!(!text.contains(secret), "{secret} appears in:\n{text}");
    }
    // an unresolvable reference names the variable, never a value
    let path = write(dir.path(), "unset.toml", &doc);
    let e = Loader::new().file(&path).env([("NONCE", NONCE_KEY)]).load().unwrap_err().to_string();
    assert!(e.contains("upstream.url: expected the environment variable UPSTREAM to be set, found it unset"), "{e}");
    assert!(!e.contains("file-secret-6f1c"), "{e}");
}

#[test]
fn the_checked_in_schema_and_reference_are_current() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let regenerate = "regenerate them with: cargo run --bin mcp-enterprise -- config schema --update-docs docs";
    let schema = std::fs::read_to_string(docs.join("config.schema.json")).unwrap_or_default();
    assert!(
        schema == mcp_enterprise_config::schema::schema_text(),
        "docs/config.schema.json is stale (the configuration types changed); {regenerate}"
    );
    let reference = std::fs::read_to_string(docs.join("configuration.md")).unwrap_or_default();
    assert!(
        mcp_enterprise_config::schema::update_reference(&reference).as_deref() == Some(reference.as_str()),
        "the key reference in docs/configuration.md is stale or its markers are missing; {regenerate}"
    );
    // the schema is the types': a document the schema calls valid loads
    let value: Value = serde_json::from_str(&schema).unwrap();
    assert_eq!(value["$defs"]["AuditConfig"]["additionalProperties"], json!(false));
    assert_eq!(value["properties"]["sso"]["anyOf"][0]["$ref"], "#/$defs/SsoConfig");
}

fn example_env(dir: &Path) -> Vec<(String, String)> {
    let key = dir.join("audit-key.pem");
    std::fs::write(&key, CheckpointSigner::generate_pem().unwrap()).unwrap();
    let hmac = dir.join("audit-hmac.key");
    std::fs::write(&hmac, [7u8; 32]).unwrap();
    [
        ("KEYCLOAK_INTROSPECTION_SECRET", "kc-secret".to_owned()),
        ("ACME_AGENT_CLIENT_SECRET", "agent-secret".to_owned()),
        ("MCP_DPOP_NONCE_KEY", NONCE_KEY.to_owned()),
        ("REDIS_PASSWORD", "redis-secret".to_owned()),
        (
            "VENDOR_CA_FILE",
            crate::common::tls::TestCa::new("vendor CA").write(dir, "vendor-ca.pem").display().to_string(),
        ),
        ("PROXY_CREDENTIALS", "svc-mcp:proxy-secret".to_owned()),
        ("EVERYTHING_API_KEY", "everything-secret".to_owned()),
        ("MCPE_AUDIT__DIRECTORY", dir.join("trail").display().to_string()),
        ("MCPE_AUDIT__SIGNING_KEY_FILE", key.display().to_string()),
        ("MCPE_AUDIT__HMAC_KEY_FILE", hmac.display().to_string()),
        (
            "MCP_TOOLS_LOCK",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/configs/tools.lock").display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/configs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| Format::from_path(p).is_some())
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_passes_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let env = example_env(dir.path());
    let files = examples();
    let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for expected in [
        "okta-sso.toml",
        "entra-sso.yaml",
        "keycloak-sso.json",
        "dpop-required.toml",
        "kubernetes-workload-identity.yaml",
        "enterprise-managed-authorization.toml",
        "audit-compliance.toml",
        "rate-limits.toml",
        "remote-https.toml",
        "stdio-server-everything.toml",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    for file in &files {
        let mut out = Vec::new();
        let ok = commands::check(Loader::new().file(file).env(env.clone()), &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(ok, "{}:\n{out}", file.display());
        assert!(out.starts_with("OK: "), "{out}");
    }
    // and `config check` fails (exit code 1) without what a deployment provides
    let keycloak = files.iter().find(|f| f.ends_with("keycloak-sso.json")).unwrap();
    let mut out = Vec::new();
    assert!(!commands::check(Loader::new().file(keycloak).env(no_env()), &mut out).unwrap());
    assert!(String::from_utf8(out).unwrap().contains("KEYCLOAK_INTROSPECTION_SECRET to be set"));
}

#[test]
fn every_client_format_round_trips_export_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let env = example_env(dir.path());
    for file in examples() {
        let loaded = Loader::new().file(&file).env(env.clone()).load().unwrap();
        let entry = ClientEntry::from_config(loaded.config());
        for format in ClientFormat::ALL {
            let text = entry.export(format).unwrap();
            let imported = ClientEntry::import(format, &text, None).unwrap();
            assert_eq!(imported, entry.carried_by(format), "{} as {format}:\n{text}", file.display());
            // our document, from the import, passes the check and exports the same entry again
            let ours = import_document(&imported, "http://127.0.0.1:8081/mcp");
            let toml = toml_of(&ours);
            let again = Loader::new().text("imported.toml", Format::Toml, &toml).env(no_env()).load().unwrap();
            let reexported = ClientEntry::from_config(again.config()).export(format).unwrap();
            assert_eq!(reexported, text, "{} as {format} → ours → {format}", file.display());
        }
    }
    // what each format carries
    let okta = Loader::new()
        .file(examples().iter().find(|f| f.ends_with("okta-sso.toml")).unwrap())
        .env(no_env())
        .load()
        .unwrap();
    let entry = ClientEntry::from_config(okta.config());
    assert_eq!(entry.name, "acme-tools");
    assert_eq!(entry.client_id.as_deref(), Some("0oa9mcpclient0example"));
    assert_eq!(entry.title.as_deref(), Some("Acme tools"), "from the server card");
    let vscode: Value = serde_json::from_str(&entry.export(ClientFormat::VsCode).unwrap()).unwrap();
    assert_eq!(
        vscode["servers"]["acme-tools"],
        json!({"type": "http", "url": "https://mcp.acme.example/mcp", "oauth": {"clientId": "0oa9mcpclient0example"}})
    );
    let codex = entry.export(ClientFormat::Codex).unwrap();
    assert!(codex.contains("scopes = [\n    \"mcp:tools\",\n    \"offline_access\",\n]"), "{codex}");
    // import through the CLI: a document of ours for the client's entry
    let client_file = write(dir.path(), "mcp.json", &entry.export(ClientFormat::McpJson).unwrap());
    let mut out = Vec::new();
    assert!(
        commands::import(ClientFormat::McpJson, &client_file, None, "http://127.0.0.1:9000/mcp", &mut out).unwrap()
    );
    let ours = write(dir.path(), "ours.toml", &String::from_utf8(out).unwrap());
    let loaded = Loader::new().file(&ours).env(no_env()).load().unwrap();
    assert_eq!(loaded.config().upstream.url, "http://127.0.0.1:9000/mcp");
    assert_eq!(ClientEntry::from_config(loaded.config()), entry.carried_by(ClientFormat::McpJson));
}

fn toml_of(config: &mcp_enterprise_config::PackConfig) -> String {
    let loaded_json = serde_json::to_value(config).unwrap();
    let stripped = strip_nulls(loaded_json);
    toml_edit_string(&stripped)
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// TOML text of a JSON document, through `config print`'s own path (load a JSON document, print TOML).
fn toml_edit_string(value: &Value) -> String {
    let loaded = Loader::new().text("doc.json", Format::Json, &value.to_string()).env(no_env()).load().unwrap();
    loaded.print(Format::Toml).unwrap()
}

fn card_config(upstream: &str, description: &str, extra: &str) -> String {
    format!(
        r#"version = 1
resource = "http://127.0.0.1:8787/mcp"
[upstream]
url = "{upstream}"
[listen]
address = "127.0.0.1:0"
[server_card]
name = "com.example/reloading"
version = "1.0.0"
description = "{description}"
max_age_secs = 60
[client]
headers = [{{ name = "X-Team-Key", env = "TEAM_KEY", description = "team key" }}, {{ name = "X-Tenant", value = "acme" }}]
{extra}
# last, so the lines above keep their numbers: the load of the reload tests comes from one
# address, far beyond the default per-address limit
[listen.pre_auth_limit]
requests_per_sec = 1000000
burst = 1000000
"#
    )
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = common::client().request(req.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let (parts, body) = res.into_parts();
    (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
}

async fn card_description(card_url: &str) -> String {
    let (status, _, body) = get(card_url, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let card: Value = serde_json::from_slice(&body).unwrap();
    card["description"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_server_card_and_ai_catalog_are_served_for_discovery() {
    let upstream = demo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "mcp.toml", &card_config(&upstream.url, "Tools for the card test", ""));
    let gw = ConfiguredGateway::start(Loader::new().file(&file).env(no_env())).await.unwrap();
    let base = format!("http://{}", gw.running().local_addr());
    let card_url = format!("{}/server-card", gw.mcp_url());

    let (status, headers, body) =
        get(&card_url, &[("accept", "application/mcp-server-card+json"), ("origin", "https://elsewhere.example")])
            .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/mcp-server-card+json");
    assert_eq!(headers["access-control-allow-origin"], "*", "any origin may read the card");
    assert_eq!(headers["access-control-allow-methods"], "GET");
    assert_eq!(headers["access-control-allow-headers"], "Content-Type, If-None-Match");
    assert_eq!(headers["access-control-expose-headers"], "ETag");
    assert_eq!(headers["cache-control"], "public, max-age=60");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let card: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(card["$schema"], "https://static.modelcontextprotocol.io/schemas/v1/server-card.schema.json");
    assert_eq!(card["name"], "com.example/reloading");
    assert_eq!(card["remotes"][0]["type"], "streamable-http");
    assert_eq!(card["remotes"][0]["url"], "http://127.0.0.1:8787/mcp");
    assert_eq!(card["remotes"][0]["supportedProtocolVersions"], json!(["2025-11-25", "2026-07-28"]));
    assert_eq!(
        card["remotes"][0]["headers"],
        json!([{"name": "X-Team-Key", "isRequired": true, "isSecret": true, "description": "team key"},
               {"name": "X-Tenant", "isRequired": true, "isSecret": false, "value": "acme"}])
    );
    assert!(
        !body.windows(upstream.url.len()).any(|w| w == upstream.url.as_bytes()),
        "no internal topology in the card"
    );
    // the extensions listed are exactly the ones server/discover advertises
    let (_, _, discover) = call(modern(&gw.mcp_url(), 1, "server/discover", json!({}), json!({}))).await;
    let advertised = &discover["result"]["capabilities"]["extensions"];
    assert!(advertised.get("io.github.mcp-enterprise/gateway").is_some(), "{discover}");
    assert_eq!(&card["_meta"]["io.github.mcp-enterprise/extensions"], advertised, "{card}");

    // revalidation: 304 without a body; a changed tag gets the document
    let (status, headers, body) = get(&card_url, &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(headers["etag"], etag.as_str());
    assert_eq!(get(&card_url, &[("if-none-match", "\"other\"")]).await.0, StatusCode::OK);
    // CORS preflight
    let preflight = Request::options(&card_url)
        .header("origin", "https://elsewhere.example")
        .header("access-control-request-method", "GET")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = common::client().request(preflight).await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    // the DNS-rebinding defence still applies to the Host
    let (status, _, _) = get(&card_url, &[("host", "evil.example")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, headers, body) = get(&format!("{base}/.well-known/ai-catalog.json"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/ai-catalog+json");
    assert_eq!(headers["access-control-allow-origin"], "*");
    let catalog: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        catalog["entries"][0],
        json!({"identifier": "urn:air:127.0.0.1:reloading", "displayName": "com.example/reloading",
               "type": "application/mcp-server-card+json", "url": "http://127.0.0.1:8787/mcp/server-card"})
    );
    gw.shutdown().await;
}

/// Calls `echo` (and every 10th worker a 1-second streaming tool) until `stop`; counts answers and
/// failures. Every answer is checked: status 200 and the tool's result.
fn start_load(
    url: String,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<()>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (ok2, failed2) = (ok.clone(), failed.clone());
    let task = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for w in 0..workers {
            let (url, stop, ok, failed) = (url.clone(), stop.clone(), ok2.clone(), failed2.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let (params, expect) = if w % 10 == 0 {
                        (
                            json!({"name": "stream_progress", "arguments": {"steps": 5, "interval_ms": 200}}),
                            "done after 5 steps".to_owned(),
                        )
                    } else {
                        let text = format!("{w}-{i}");
                        (json!({"name": "echo", "arguments": {"text": text}}), text)
                    };
                    let req = modern(&url, i as i64, "tools/call", params, json!({}));
                    let res = common::client().request(req).await;
                    let good = match res {
                        Ok(res) if res.status() == StatusCode::OK => {
                            let (parts, body) = res.into_parts();
                            match body.collect().await {
                                Ok(bytes) => {
                                    let msg = common::parse_message(&parts.headers, &bytes.to_bytes());
                                    msg["result"]["content"][0]["text"].as_str().is_some_and(|t| t.contains(&expect))
                                }
                                Err(_) => false,
                            }
                        }
                        _ => false,
                    };
                    if good {
                        ok.fetch_add(1, Ordering::Relaxed)
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed)
                    };
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    (task, ok, failed)
}

/// A streaming call (progress events 200 ms apart) that is in flight once this returns; the task
/// yields the final result's text and how many progress events arrived.
async fn in_flight_stream(url: &str, steps: u32) -> tokio::task::JoinHandle<(String, usize)> {
    let mut req = modern(
        url,
        1,
        "tools/call",
        json!({"name": "stream_progress", "arguments": {"steps": steps, "interval_ms": 200}}),
        json!({}),
    );
    let mut body: Value = serde_json::from_slice(&req.body_mut().collect().await.unwrap().to_bytes()).unwrap();
    body["params"]["_meta"]["progressToken"] = json!("in-flight");
    *req.body_mut() = Full::new(Bytes::from(body.to_string()));
    req.headers_mut().remove("content-length");
    let res = common::send(req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut reader = common::SseReader::new(res);
    let (_, first) = reader.next().await.expect("the first progress event");
    assert_eq!(first["method"], "notifications/progress", "{first}");
    tokio::spawn(async move {
        let mut progress = 1;
        while let Some((_, msg)) = reader.next().await {
            if msg["method"] == "notifications/progress" {
                progress += 1;
            } else if msg.get("id").is_some() {
                return (msg["result"]["content"][0]["text"].as_str().unwrap_or_default().to_owned(), progress);
            }
        }
        (String::new(), progress)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_keep_every_request_and_one_audit_trail() {
    let upstream = demo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let pem = CheckpointSigner::generate_pem().unwrap();
    let key = write(dir.path(), "audit-key.pem", &pem);
    let trail = dir.path().join("trail");
    let audit = format!("[audit]\ndirectory = \"{}\"\nsigning_key_file = \"{}\"\n", trail.display(), key.display());
    let file = dir.path().join("mcp.toml");
    std::fs::write(&file, card_config(&upstream.url, "first", &audit)).unwrap();
    let gw = ConfiguredGateway::start(Loader::new().file(&file).env(no_env())).await.unwrap();
    let card_url = format!("{}/server-card", gw.mcp_url());
    assert_eq!(card_description(&card_url).await, "first");

    let stop = Arc::new(AtomicBool::new(false));
    let (load, ok, failed) = start_load(gw.mcp_url(), 20, stop.clone());
    let wait_for_more = |n: usize| {
        let ok = ok.clone();
        async move {
            let target = ok.load(Ordering::Relaxed) + n;
            assert!(
                common::eventually(Duration::from_secs(60), || ok.load(Ordering::Relaxed) >= target).await,
                "load stalled"
            );
        }
    };
    wait_for_more(50).await;
    // a good document: applied for new requests, while a stream started before goes on
    let stream = in_flight_stream(&gw.mcp_url(), 10).await;
    for round in 0..3 {
        std::fs::write(&file, card_config(&upstream.url, &format!("reloaded {round}"), &audit)).unwrap();
        gw.reload().unwrap();
        assert_eq!(card_description(&card_url).await, format!("reloaded {round}"));
        wait_for_more(50).await;
    }
    let streamed = stream.await.unwrap();
    assert_eq!(streamed, ("done after 10 steps".to_owned(), 10), "the stream in flight across the reloads completed");
    // a bad document: rejected with its errors, the running configuration stays
    std::fs::write(&file, card_config("htp://nowhere", "bad", &audit).replace("[listen]", "[listen]\nport = 1"))
        .unwrap();
    match gw.reload() {
        Err(ConfiguredError::Config(ConfigError::Invalid(d))) => {
            let text: Vec<String> = d.iter().map(ToString::to_string).collect();
            assert!(has(&text, &format!("{}:4:7: upstream.url", file.display())), "{text:?}");
            assert!(has(&text, &format!("{}:6:1: listen.port", file.display())), "{text:?}");
        }
        other => panic!("expected the document to be rejected, got {other:?}"),
    }
    assert_eq!(card_description(&card_url).await, "reloaded 2");
    wait_for_more(50).await;
    // settings that need a restart: rejected, the running configuration stays
    std::fs::write(
        &file,
        card_config(&upstream.url, "audit changed", &audit.replace("[audit]", "[audit]\nfsync = \"os\"")),
    )
    .unwrap();
    assert!(matches!(gw.reload(), Err(ConfiguredError::NeedsRestart { setting: "the audit section", .. })));
    std::fs::write(&file, card_config(&upstream.url, "listen changed", &audit).replace("127.0.0.1:0", "127.0.0.1:1"))
        .unwrap();
    assert!(matches!(gw.reload(), Err(ConfiguredError::NeedsRestart { setting: "listen.address", .. })));
    assert_eq!(card_description(&card_url).await, "reloaded 2");
    wait_for_more(50).await;

    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} of {} requests failed across the reloads", ok + failed);
    gw.shutdown().await;

    // one writer, one chain: every call across every reload is in the trail, which verifies
    let verifier = CheckpointVerifier::from_public_key(
        CheckpointSigner::from_pkcs8(pem.as_bytes()).unwrap().public_key().as_bytes(),
    )
    .unwrap();
    let report = verify_dir(&trail, Some(&verifier), false).unwrap();
    assert!(report.is_ok(), "{report}");
    let calls = trail_files(&trail)
        .unwrap()
        .iter()
        .flat_map(|f| std::fs::read_to_string(f).unwrap().lines().map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .filter(|r| r["jsonrpc"]["method"] == "tools/call")
        .count();
    assert_eq!(calls, ok + 1, "every answered call (and the stream) recorded once");
}

/// Run by `sighup_reloads_a_child_gateway_under_load` in a child process: a gateway serving the
/// configuration in `MCP_TEST_CONFIG_CHILD_DIR/mcp.toml`, reloading on SIGHUP, logging to stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by sighup_reloads_a_child_gateway_under_load"]
async fn config_sighup_child() {
    let dir = PathBuf::from(std::env::var("MCP_TEST_CONFIG_CHILD_DIR").expect("run by the SIGHUP test"));
    let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).try_init();
    let gw = ConfiguredGateway::start(Loader::new().file(dir.join("mcp.toml"))).await.unwrap();
    std::fs::write(dir.join("url.tmp"), gw.mcp_url()).unwrap();
    std::fs::rename(dir.join("url.tmp"), dir.join("url")).unwrap();
    gw.run_until_stopped().await.unwrap();
    std::fs::write(dir.join("stopped"), "").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_child_gateway_under_load() {
    let upstream = demo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mcp.toml");
    std::fs::write(&file, card_config(&upstream.url, "before SIGHUP", "")).unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["config::config_sighup_child", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
        .env("MCP_TEST_CONFIG_CHILD_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap().to_string();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    };
    let url_file = dir.path().join("url");
    assert!(common::eventually(Duration::from_secs(60), || url_file.exists()).await, "the child gateway did not start");
    let url = std::fs::read_to_string(&url_file).unwrap();
    let card_url = format!("{url}/server-card");
    assert_eq!(card_description(&card_url).await, "before SIGHUP");
    let log = || std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();

    let stop = Arc::new(AtomicBool::new(false));
    let (load, ok, failed) = start_load(url.clone(), 20, stop.clone());
    assert!(common::eventually(Duration::from_secs(60), || ok.load(Ordering::Relaxed) >= 50).await);

    // a good file: SIGHUP applies it; a stream started before it goes on
    let stream = in_flight_stream(&url, 15).await;
    std::fs::write(&file, card_config(&upstream.url, "after SIGHUP", "")).unwrap();
    signal("HUP");
    let mut applied = false;
    for _ in 0..600 {
        if card_description(&card_url).await == "after SIGHUP" {
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(applied, "SIGHUP did not apply the new file; log:\n{}", log());
    assert!(
        common::eventually(Duration::from_secs(10), || log().contains("configuration reloaded")).await,
        "{}",
        log()
    );
    let streamed = stream.await.unwrap();
    assert_eq!(streamed, ("done after 15 steps".to_owned(), 15), "the stream in flight across SIGHUP completed");
    let seen = ok.load(Ordering::Relaxed);
    assert!(common::eventually(Duration::from_secs(60), || ok.load(Ordering::Relaxed) >= seen + 50).await);

    // a bad file: SIGHUP rejects it (logged with its location), the old configuration keeps serving
    std::fs::write(
        &file,
        card_config(&upstream.url, "never served", "").replace("[server_card]", "[server_card]\ncolour = \"blue\""),
    )
    .unwrap();
    signal("HUP");
    let needle = format!("{}:8:1: server_card.colour: expected", file.display());
    assert!(common::eventually(Duration::from_secs(30), || log().contains(&needle)).await, "log:\n{}", log());
    assert!(log().contains("configuration reload rejected; the running configuration stays"), "{}", log());
    assert_eq!(card_description(&card_url).await, "after SIGHUP");
    let seen = ok.load(Ordering::Relaxed);
    assert!(common::eventually(Duration::from_secs(60), || ok.load(Ordering::Relaxed) >= seen + 50).await);

    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} of {} requests failed across the SIGHUP reloads", ok + failed);
    // SIGTERM: a clean stop
    signal("TERM");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("the child stops").unwrap();
    assert!(status.success(), "{status:?}\n{}", log());
    assert!(dir.path().join("stopped").exists());
}

#[test]
fn config_init_check_and_print_commands() {
    let dir = tempfile::tempdir().unwrap();
    let starter = dir.path().join("mcp-enterprise.toml");
    let mut out = Vec::new();
    assert!(commands::init(Some(&starter), &mut out).unwrap());
    assert!(commands::init(Some(&starter), &mut Vec::new()).is_err(), "never overwrites");
    let mut out = Vec::new();
    assert!(
        commands::check(Loader::new().file(&starter).env(no_env()), &mut out).unwrap(),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let text = std::fs::read_to_string(&starter).unwrap();
    assert!(
        text.lines().filter(|l| l.starts_with("# [")).count() >= 6,
        "every section is shown, commented out:\n{text}"
    );
    // print: the effective document, loadable again to the same configuration
    for format in [Format::Toml, Format::Yaml, Format::Json] {
        let mut out = Vec::new();
        assert!(
            commands::print(
                Loader::new().file(&starter).env([("MCPE_CORE__MAX_BODY_BYTES", "1234")]),
                format,
                &mut out
            )
            .unwrap()
        );
        let printed = String::from_utf8(out).unwrap();
        let again = Loader::new().text("printed", format, &printed).env(no_env()).load().unwrap();
        assert_eq!(again.config().core.max_body_bytes, 1234, "{printed}");
        assert_eq!(
            again.config(),
            Loader::new().file(&starter).env([("MCPE_CORE__MAX_BODY_BYTES", "1234")]).load().unwrap().config()
        );
    }
    // schema: the same text as checked in
    let mut out = Vec::new();
    assert!(commands::schema(None, &mut out).unwrap());
    assert_eq!(String::from_utf8(out).unwrap(), mcp_enterprise_config::schema::schema_text());
}
