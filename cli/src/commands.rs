//! The `mcp-enterprise config …` commands, as functions writing to a given output (the binary
//! passes stdout; tests pass a buffer). Each returns `Ok(false)` for "exit code 1".

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use mcp_enterprise_config::clients::{ClientEntry, ClientFormat, import_document};
use mcp_enterprise_config::schema::{reference_markdown, schema_text, update_reference};
use mcp_enterprise_config::{ConfigError, Diagnostic, Format, LoadedConfig, Loader, Location};
use serde_json::json;

use crate::output::Output;

/// `config check FILE…`: every problem of the merged document (with the `MCPE_` environment), or a
/// summary of what it enables. `Ok(false)` when it has problems.
pub fn check(loader: Loader, out: &mut impl Write) -> anyhow::Result<bool> {
    check_output(loader, Output::Text, out)
}

/// `config check [--output json] FILE…`: [`check`], or its JSON document (docs/cli.md).
pub fn check_output(loader: Loader, output: Output, out: &mut impl Write) -> anyhow::Result<bool> {
    if output == Output::Json {
        let loaded = loader.load();
        let redis = loaded.as_ref().ok().map(check_redis);
        let (ok, mut document) = check_json(loaded);
        match redis {
            Some(Err(e)) => {
                document["valid"] = json!(false);
                document["error"] = json!(e);
            }
            Some(Ok(Some(note))) => document["redis"] = json!(note),
            _ => {}
        }
        writeln!(out, "{document}")?;
        return Ok(ok && document["valid"] == json!(true));
    }
    match loader.load() {
        Ok(loaded) => match check_redis(&loaded) {
            Ok(note) => {
                writeln!(out, "OK: {}", summary(&loaded))?;
                if let Some(note) = note {
                    writeln!(out, "{note}")?;
                }
                Ok(true)
            }
            Err(e) => {
                writeln!(out, "{e}")?;
                Ok(false)
            }
        },
        Err(e) => {
            writeln!(out, "{e}")?;
            Ok(false)
        }
    }
}

/// The `redis` section's connection, tried once: `Err` when Redis refuses the credentials or the
/// certificate does not verify (a configuration mistake); a note when it is fine, or cannot be
/// reached from where the check runs (then not checked).
fn check_redis(loaded: &LoadedConfig) -> Result<Option<String>, String> {
    let client = match mcp_enterprise_config::compose::redis_client(loaded.config()) {
        Ok(Some(client)) => client,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let target = client.target().to_owned();
    let result = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        Ok::<_, String>(runtime.block_on(client.check()))
    })
    .join()
    .map_err(|_| "redis: the connection check panicked".to_owned())??;
    match result {
        Ok(()) => Ok(Some(format!("redis: {target} accepted the credentials and certificate"))),
        Err(e) if e.is_setup() => Err(format!("redis (redis.username / redis.password / redis.ca_file): {e}")),
        Err(e) => Ok(Some(format!("redis: not checked, unreachable from here ({e})"))),
    }
}

/// The JSON document of `config check --output json`: `(valid, document)`.
pub fn check_json(result: Result<LoadedConfig, ConfigError>) -> (bool, serde_json::Value) {
    match result {
        Ok(loaded) => (
            true,
            json!({
                "valid": true,
                "files": loaded.sources().iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                "env_overrides": loaded.env_overrides().len(),
                "summary": summary(&loaded),
                "diagnostics": [],
            }),
        ),
        Err(e) => {
            let diagnostics: Vec<serde_json::Value> = e.diagnostics().iter().map(diagnostic_json).collect();
            let error = if diagnostics.is_empty() { Some(e.to_string()) } else { None };
            (false, json!({ "valid": false, "diagnostics": diagnostics, "error": error }))
        }
    }
}

fn diagnostic_json(d: &Diagnostic) -> serde_json::Value {
    let (file, line, column, env) = match &d.location {
        Location::File { path, line, column } => (Some(path.display().to_string()), *line, *column, None),
        Location::Env { name } => (None, None, None, Some(name.clone())),
        _ => (None, None, None, None),
    };
    json!({
        "file": file,
        "line": line,
        "column": column,
        "env": env,
        "key": d.path.to_string(),
        "kind": snake_case(&format!("{:?}", d.kind)),
        "expected": d.expected,
        "found": d.found,
        "message": d.to_string(),
    })
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// An I/O error (exit code 2) for a file that cannot be opened, before it is read as configuration
/// (where it would be one more diagnostic, exit code 1).
pub fn readable(files: &[PathBuf]) -> anyhow::Result<()> {
    for file in files {
        std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    }
    Ok(())
}

fn summary(loaded: &LoadedConfig) -> String {
    let c = loaded.config();
    let sections: Vec<&str> = [
        ("sso", c.sso.is_some()),
        ("dpop", c.dpop.is_some()),
        ("workload_identity", c.workload_identity.is_some()),
        ("audit", c.audit.is_some()),
        ("policy", c.policy.is_some()),
        ("integrity", c.integrity.is_some()),
        ("rate_limits", !c.rate_limits.is_empty()),
        ("server_card", c.server_card.is_some()),
        ("client", c.client.is_some()),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| *name)
    .collect();
    let files: Vec<String> = loaded.sources().iter().map(|p| p.display().to_string()).collect();
    let env = match loaded.env_overrides().len() {
        0 => String::new(),
        n => format!(" + {n} environment override{}", if n == 1 { "" } else { "s" }),
    };
    let routes: String = c.routes.iter().map(|r| format!("; route {} → {}", r.resource, r.upstream.target())).collect();
    let propagation = match serde_json::to_value(c.upstream.propagation.mode) {
        Ok(serde_json::Value::String(mode)) if mode != "none" => format!(" (propagation: {mode})"),
        _ => String::new(),
    };
    format!(
        "{}{env}: {} → {}{propagation} on {}; sections: {}{routes}",
        files.join(", "),
        c.resource,
        c.upstream.target(),
        c.listen.address,
        if sections.is_empty() { "none".to_owned() } else { sections.join(", ") }
    )
}

/// `config print FILE…`: the effective document (defaults filled in, environment applied), secrets
/// redacted.
pub fn print(loader: Loader, format: Format, out: &mut impl Write) -> anyhow::Result<bool> {
    match loader.load() {
        Ok(loaded) => {
            let text = loaded.print(format).map_err(anyhow::Error::msg)?;
            write!(out, "{text}")?;
            Ok(true)
        }
        Err(e) => {
            writeln!(out, "{e}")?;
            Ok(false)
        }
    }
}

/// `config schema`: the JSON Schema; with a docs directory, rewrites `config.schema.json` and the
/// reference block of `configuration.md` there instead.
pub fn schema(update_docs: Option<&Path>, out: &mut impl Write) -> anyhow::Result<bool> {
    let Some(dir) = update_docs else {
        write!(out, "{}", schema_text())?;
        return Ok(true);
    };
    let schema_file = dir.join("config.schema.json");
    std::fs::write(&schema_file, schema_text()).with_context(|| format!("writing {}", schema_file.display()))?;
    let doc_file = dir.join("configuration.md");
    let doc = std::fs::read_to_string(&doc_file).with_context(|| format!("reading {}", doc_file.display()))?;
    let updated =
        update_reference(&doc).with_context(|| format!("{}: the reference markers are missing", doc_file.display()))?;
    std::fs::write(&doc_file, updated).with_context(|| format!("writing {}", doc_file.display()))?;
    writeln!(out, "wrote {} and the reference of {}", schema_file.display(), doc_file.display())?;
    Ok(true)
}

/// The key reference table (what `--update-docs` puts in `configuration.md`).
pub fn reference(out: &mut impl Write) -> anyhow::Result<bool> {
    write!(out, "{}", reference_markdown())?;
    Ok(true)
}

/// `config init`: the commented starter document, to `out_file` (never overwritten) or `out`.
pub fn init(out_file: Option<&Path>, out: &mut impl Write) -> anyhow::Result<bool> {
    let text = mcp_enterprise_config::init::starter();
    match out_file {
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .with_context(|| format!("creating {} (an existing file is never overwritten)", path.display()))?;
            file.write_all(text.as_bytes())?;
            writeln!(out, "wrote {}; check it with: mcp-enterprise config check {}", path.display(), path.display())?;
        }
        None => write!(out, "{text}")?,
    }
    Ok(true)
}

/// `config export --client FORMAT FILE…`: the connection entry for one MCP client.
pub fn export(loader: Loader, format: ClientFormat, out: &mut impl Write) -> anyhow::Result<bool> {
    match loader.load() {
        Ok(loaded) => {
            let entry = ClientEntry::from_config(loaded.config());
            write!(out, "{}", entry.export(format)?)?;
            Ok(true)
        }
        Err(e) => {
            writeln!(out, "{e}")?;
            Ok(false)
        }
    }
}

/// `config import --client FORMAT CLIENT_FILE`: a document of ours (TOML) for a client's entry.
pub fn import(
    format: ClientFormat,
    file: &Path,
    name: Option<&str>,
    upstream: &str,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let entry = ClientEntry::import(format, &text, name)?;
    let document = import_document(&entry, upstream);
    // only what the import says; every other section keeps its defaults
    let minimal = serde_json::json!({
        "version": document.version,
        "resource": document.resource,
        "upstream": document.upstream,
        "client": document.client,
    });
    let body = toml::to_string_pretty(&strip_nulls(minimal))?;
    write!(
        out,
        "# Imported from {} ({format}). Set upstream.url to the MCP server the gateway fronts.\n{body}",
        file.display()
    )?;
    Ok(true)
}

fn strip_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect(),
        ),
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// A loader for these files (process environment).
pub fn loader(files: &[PathBuf]) -> Loader {
    Loader::new().files(files.iter().cloned())
}
