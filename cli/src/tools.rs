//! `mcp-enterprise tools pin|diff|approve`: the lock file of an upstream's tool, prompt and
//! resource template definitions (the `integrity` section enforces it; docs/tool-integrity.md).
//!
//! The definitions are fetched from the live upstream of a route of a configuration document, with
//! that route's own upstream credential (`upstream.propagation`: a static header or client
//! credentials as configured; a signed assertion minted for the gateway itself, subject
//! `mcp-enterprise:tools`). `token_exchange` needs a caller's token and cannot be used here.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use mcp_enterprise_config::{PackConfig, compose};
use mcp_enterprise_core::{AuthMethod, Principal, PrincipalKind};
use mcp_enterprise_gateway::Propagation;
use mcp_enterprise_gateway::catalog::{UpstreamClient, fetch_listing_via};
use mcp_enterprise_integrity::{Change, ChangeKind, DefinitionKind, LockFile};
use serde_json::{Value, json};

/// The subject the gateway pins as (a signed assertion names it).
pub const PIN_SUBJECT: &str = "mcp-enterprise:tools";

/// The list method of a kind.
fn list_method(kind: DefinitionKind) -> &'static str {
    match kind {
        DefinitionKind::Prompt => "prompts/list",
        DefinitionKind::ResourceTemplate => "resources/templates/list",
        _ => "tools/list",
    }
}

/// The route of a document: the top level (`None`), a route's `resource` URL, or `routes[N]`.
fn route_document(config: &PackConfig, route: Option<&str>) -> anyhow::Result<PackConfig> {
    let mut documents = config.route_documents();
    let Some(wanted) = route else { return Ok(documents.swap_remove(0)) };
    if let Some(index) = wanted.strip_prefix("routes[").and_then(|r| r.strip_suffix(']')) {
        let index: usize = index.parse().with_context(|| format!("--route {wanted}: not an index"))?;
        return documents
            .into_iter()
            .nth(index + 1)
            .with_context(|| format!("--route {wanted}: the document has {} route(s)", config.routes.len()));
    }
    documents.into_iter().find(|d| d.resource == wanted).with_context(|| {
        format!("--route {wanted}: no route serves that resource (give its `resource` URL or routes[N])")
    })
}

/// The definitions the route's upstream offers now, pinned.
pub async fn live(files: &[PathBuf], route: Option<&str>) -> anyhow::Result<LockFile> {
    let loaded = crate::commands::loader(files).load().map_err(|e| anyhow::anyhow!("{e}"))?;
    let document = route_document(loaded.config(), route)?;
    let url = &document.upstream.url;
    if document.upstream.command.is_some() {
        anyhow::bail!(
            "`tools pin` fetches the tools over HTTP; a stdio upstream (`upstream.command`) has no URL to fetch them from"
        );
    }
    // the gateway's own way out: the egress proxy, the upstream's and the IdPs' TLS settings
    let egress = compose::egress(&document).map_err(|e| anyhow::anyhow!("{e}"))?;
    let idp_tls = compose::idp_tls(&document).map_err(|e| anyhow::anyhow!("{e}"))?;
    let upstream_tls = compose::upstream_tls(&document.upstream).map_err(|e| anyhow::anyhow!("{e}"))?;
    let client = UpstreamClient::new(&egress, &upstream_tls).context("upstream.tls")?;
    let propagation =
        Propagation::from_config_outbound(&document.upstream.propagation, &document.resource, url, &egress, &idp_tls)
            .context("upstream.propagation")?;
    let gateway =
        Principal::builder(&document.resource, PIN_SUBJECT, PrincipalKind::ServiceClient, AuthMethod::Bearer).build();
    let credential = propagation
        .credential(Some(&gateway), None, &http::HeaderMap::new())
        .await
        .with_context(|| format!("the upstream credential of mode {}", propagation.mode()))?;
    let mut lock = LockFile::new();
    for kind in DefinitionKind::ALL {
        let method = list_method(kind);
        if let Some(result) =
            fetch_listing_via(&client, url, method, &credential).await.map_err(|e| anyhow::anyhow!("{url}: {e}"))?
        {
            lock.pin_listing(kind, &result);
        }
    }
    Ok(lock)
}

/// `tools pin`: writes the live definitions to `out`.
pub async fn pin(files: &[PathBuf], route: Option<&str>, out: &Path, stdout: &mut impl Write) -> anyhow::Result<()> {
    let lock = live(files, route).await?;
    lock.save(out).map_err(|e| anyhow::anyhow!("{e}"))?;
    writeln!(stdout, "pinned {} definition(s) to {}", lock.len(), out.display())?;
    Ok(())
}

/// How `tools diff` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// For people.
    Text,
    /// `{"drift": bool, "changes": [...]}` (the `Change` serialisation of the integrity crate).
    Json,
}

/// `tools diff`: `Ok(true)` when the live definitions are exactly the pinned ones.
pub async fn diff(
    files: &[PathBuf],
    route: Option<&str>,
    lock: &Path,
    output: Output,
    stdout: &mut impl Write,
) -> anyhow::Result<bool> {
    let pinned = LockFile::load(lock).map_err(|e| anyhow::anyhow!("{e}"))?;
    let changes = pinned.diff(&live(files, route).await?);
    match output {
        Output::Json => writeln!(stdout, "{}", json!({"drift": !changes.is_empty(), "changes": changes}))?,
        Output::Text if changes.is_empty() => {
            writeln!(stdout, "no drift: the upstream offers exactly what {} pins", lock.display())?
        }
        Output::Text => {
            for change in &changes {
                write_change(stdout, change)?;
            }
            writeln!(stdout, "{} definition(s) differ from {}", changes.len(), lock.display())?;
        }
    }
    Ok(changes.is_empty())
}

fn short(value: Option<&Value>) -> String {
    match value {
        None => "(absent)".to_owned(),
        Some(Value::String(s)) => format!("{s:?}"),
        Some(other) => other.to_string(),
    }
}

fn write_change(out: &mut impl Write, change: &Change) -> std::io::Result<()> {
    let what = format!("{} {:?}", change.kind.as_str(), change.name);
    match &change.change {
        ChangeKind::Added { .. } => writeln!(out, "{what}: new, not in the lock file"),
        ChangeKind::Removed { .. } => writeln!(out, "{what}: no longer offered by the upstream"),
        ChangeKind::Changed { old_digest, new_digest, fields } => {
            writeln!(out, "{what}: changed ({old_digest} -> {new_digest})")?;
            for field in fields {
                writeln!(out, "  {}: {} -> {}", field.pointer, short(field.old.as_ref()), short(field.new.as_ref()))?;
            }
            Ok(())
        }
        _ => writeln!(out, "{what}: differs"),
    }
}

/// `tools approve NAME…`: updates the lock file for the named definitions only (pins what the
/// upstream offers now, or drops a pin the upstream no longer offers).
pub async fn approve(
    files: &[PathBuf],
    route: Option<&str>,
    lock_path: &Path,
    names: &[String],
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    let mut lock = LockFile::load(lock_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let live = live(files, route).await?;
    for name in names {
        let mut found = false;
        for kind in DefinitionKind::ALL {
            match (live.get(kind, name), lock.get(kind, name).is_some()) {
                (Some(now), _) => {
                    lock.pin(kind, name.clone(), now.clone());
                    writeln!(stdout, "approved {} {name:?} ({})", kind.as_str(), now.digest)?;
                    found = true;
                }
                (None, true) => {
                    lock.pins_mut(kind).remove(name);
                    writeln!(stdout, "removed {} {name:?} (no longer offered)", kind.as_str())?;
                    found = true;
                }
                (None, false) => {}
            }
        }
        if !found {
            bail!("{name:?} is neither offered by the upstream nor pinned in {}", lock_path.display());
        }
    }
    lock.save(lock_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
