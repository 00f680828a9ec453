//! Loading: files merged in order by figment, then `MCPE_` environment variables; secret
//! references resolved; every problem of every source reported at once.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::value::{Tag, Value as FValue};
use serde_json::{Map, Value};

use crate::checks::{Checker, origin_of};
use crate::error::{ConfigError, Diagnostic, DiagnosticKind, Location};
use crate::model::PackConfig;
use crate::path::KeyPath;
use crate::secret::{REDACTED, redact, resolve};
use crate::source::{EnvVar, FileProvider, FileSource, Format};
use crate::validate::{Problem, Validator};

/// Loads a document from files and the environment.
///
/// Files are merged in the order given (later files override earlier ones; tables merge key by
/// key, lists are replaced), then every `MCPE_` environment variable overrides its key:
/// `MCPE_AUDIT__DIRECTORY=/var/log/mcp` sets `audit.directory` (`__` separates nesting levels;
/// values use figment's syntax: `10`, `true`, `[a, b]`, `{k = "v"}`, anything else a string).
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct Loader {
    inputs: Vec<Input>,
    env: Option<Vec<(String, String)>>,
}

#[derive(Debug, Clone)]
enum Input {
    File(PathBuf),
    Text { name: PathBuf, format: Format, text: String },
}

impl Loader {
    /// A loader with no sources, reading the process environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file (format by extension: `.toml`, `.yaml`/`.yml`, `.json`).
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.inputs.push(Input::File(path.into()));
        self
    }

    /// Adds files, merged in this order.
    pub fn files<I: IntoIterator<Item = P>, P: Into<PathBuf>>(mut self, paths: I) -> Self {
        self.inputs.extend(paths.into_iter().map(|p| Input::File(p.into())));
        self
    }

    /// Adds a document held in memory; `name` stands for it in errors.
    pub fn text(mut self, name: &str, format: Format, text: &str) -> Self {
        self.inputs.push(Input::Text { name: PathBuf::from(name), format, text: text.to_owned() });
        self
    }

    /// Uses these variables instead of the process environment (for `MCPE_` overrides and
    /// `${env:…}` references).
    pub fn env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env = Some(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect());
        self
    }

    /// Loads, resolves and checks the document: every structural problem (unknown keys, wrong types,
    /// bad URLs, …), every unresolvable secret reference and every conflict, in one error.
    pub fn load(&self) -> Result<LoadedConfig, ConfigError> {
        if self.inputs.is_empty() {
            return Err(ConfigError::NoFiles);
        }
        let env: Vec<(String, String)> = match &self.env {
            Some(vars) => vars.clone(),
            None => {
                std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
            }
        };
        let mut diagnostics = Vec::new();
        let mut files = Vec::new();
        for input in &self.inputs {
            match read(input) {
                Ok(file) => files.push(file),
                Err(d) => diagnostics.push(*d),
            }
        }
        let mut figment = Figment::new();
        for file in &files {
            match file.parse() {
                Ok(dict) => figment = figment.merge(FileProvider { path: file.path.clone(), dict }),
                Err(d) => diagnostics.push(*d),
            }
        }
        if !diagnostics.is_empty() {
            // a half-read document would only produce misleading follow-up errors
            return Err(ConfigError::Invalid(diagnostics));
        }
        let mut env_vars: Vec<EnvVar> = env.iter().filter_map(|(k, v)| EnvVar::parse(k, v)).collect();
        env_vars.sort_by(|a, b| a.name.cmp(&b.name));
        for var in &env_vars {
            figment = figment.merge(var.clone());
        }
        let merged = figment.find_value("").map_err(|e| {
            ConfigError::Invalid(vec![Diagnostic::new(
                DiagnosticKind::Syntax,
                KeyPath::root(),
                "sources figment can merge",
                e.to_string(),
            )])
        })?;

        let lookup_env = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let mut ctx = Ctx {
            figment: &figment,
            files: &files,
            tags: HashMap::new(),
            secrets: BTreeSet::new(),
            problems: Vec::new(),
        };
        let mut doc = ctx.convert(&merged, &KeyPath::root(), &lookup_env);
        inherit(&mut doc, &mut ctx.secrets);
        crate::routes::inherit(&mut doc, &mut ctx.secrets, inherit);

        let env_raw: HashMap<KeyPath, String> = env_vars.iter().map(|v| (v.path.clone(), v.raw.clone())).collect();
        let schema = crate::schema::pack_schema();
        let unresolved: Vec<KeyPath> = ctx.problems.iter().map(|p| p.path.clone()).collect();
        let mut validator = Validator::new(&schema, &env_raw, &ctx.secrets).skipping(unresolved);
        validator.check(&schema, &mut doc, &KeyPath::root());
        let mut problems = std::mem::take(&mut ctx.problems);
        problems.append(&mut validator.problems);
        let broken: BTreeSet<KeyPath> = problems.iter().map(|p| p.path.clone()).collect();
        let mut checker = Checker::new(&doc, &ctx.secrets, &broken);
        checker.run();
        problems.append(&mut checker.problems);
        crate::routes::check(&doc, &ctx.secrets, &broken, &mut problems);

        let config = if problems.is_empty() {
            match serde_json::from_value::<PackConfig>(doc.clone()) {
                Ok(mut config) => {
                    config.secret_paths = crate::model::SecretPaths(std::sync::Arc::new(ctx.secrets.clone()));
                    Some(config)
                }
                Err(e) => {
                    problems.push(Problem {
                        kind: DiagnosticKind::InvalidValue,
                        path: KeyPath::root(),
                        expected: "a document of the schema".into(),
                        found: e.to_string(),
                        at_key: false,
                    });
                    None
                }
            }
        } else {
            None
        };
        let secret_values = secret_values(&doc, &ctx.secrets);
        let mut diagnostics: Vec<Diagnostic> = problems
            .into_iter()
            .map(|p| {
                let location = ctx.locate(&p.path, p.at_key);
                Diagnostic {
                    location,
                    path: p.path,
                    kind: p.kind,
                    expected: scrub(&p.expected, &secret_values),
                    found: scrub(&p.found, &secret_values),
                }
            })
            .collect();
        match config {
            Some(config) if diagnostics.is_empty() => Ok(LoadedConfig {
                config,
                secrets: ctx.secrets,
                sources: files.iter().map(|f| f.path.clone()).collect(),
                env: env_vars.iter().map(|v| v.name.clone()).collect(),
            }),
            _ => {
                diagnostics.sort_by_key(|d| order(&d.location, &files));
                Err(ConfigError::Invalid(diagnostics))
            }
        }
    }
}

fn read(input: &Input) -> Result<FileSource, Box<Diagnostic>> {
    match input {
        Input::Text { name, format, text } => Ok(FileSource::new(name.clone(), *format, text.clone())),
        Input::File(path) => {
            let at = Location::File { path: path.clone(), line: None, column: None };
            let Some(format) = Format::from_path(path) else {
                return Err(Box::new(
                    Diagnostic::new(
                        DiagnosticKind::Syntax,
                        KeyPath::root(),
                        "a .toml, .yaml, .yml or .json file",
                        format!("the extension of {}", path.display()),
                    )
                    .at(at),
                ));
            };
            match std::fs::read_to_string(path) {
                Ok(text) => Ok(FileSource::new(path.clone(), format, text)),
                Err(e) => Err(Box::new(
                    Diagnostic::new(DiagnosticKind::Syntax, KeyPath::root(), "a readable UTF-8 file", e.to_string())
                        .at(at),
                )),
            }
        }
    }
}

/// Sort key: source order, then position; environment variables after files.
fn order(location: &Location, files: &[FileSource]) -> (usize, usize, usize, String) {
    match location {
        Location::File { path, line, column } => (
            files.iter().position(|f| &f.path == path).unwrap_or(0),
            line.unwrap_or(0),
            column.unwrap_or(0),
            String::new(),
        ),
        Location::Env { name } => (files.len(), 0, 0, name.clone()),
        Location::Missing => (files.len() + 1, 0, 0, String::new()),
    }
}

/// Fills `sso.resource`, `workload_identity.resource` and `dpop.origin` from the top-level
/// `resource` when a section leaves them out (secret when it is).
fn inherit(doc: &mut Value, secrets: &mut BTreeSet<KeyPath>) {
    let Some(resource) = doc.get("resource").and_then(Value::as_str).map(str::to_owned) else { return };
    let secret = secrets.contains(&KeyPath::parse("resource"));
    let mut filled = Vec::new();
    for section in ["sso", "workload_identity"] {
        if let Some(Value::Object(map)) = doc.get_mut(section)
            && !map.contains_key("resource")
        {
            map.insert("resource".into(), Value::String(resource.clone()));
            filled.push(KeyPath::parse(section).key("resource"));
        }
    }
    if let (Some(Value::Object(map)), Some(origin)) = (doc.get_mut("dpop"), origin_of(&resource))
        && !map.contains_key("origin")
    {
        map.insert("origin".into(), Value::String(origin));
        filled.push(KeyPath::parse("dpop.origin"));
    }
    if secret {
        secrets.extend(filled);
    }
}

/// The resolved values of secret settings, to scrub from any message that might echo them.
fn secret_values(doc: &Value, secrets: &BTreeSet<KeyPath>) -> Vec<String> {
    let mut out = Vec::new();
    collect_strings(doc, &mut KeyPath::root(), &mut |path, s| {
        if s.len() >= 4 && (secrets.iter().any(|p| path.starts_with(p)) || crate::secret::is_schema_secret(path)) {
            out.push(s.to_owned());
        }
    });
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

fn collect_strings(value: &Value, at: &mut KeyPath, f: &mut dyn FnMut(&KeyPath, &str)) {
    match value {
        Value::String(s) => f(at, s),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_strings(v, &mut at.index(i), f);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                collect_strings(v, &mut at.key(k), f);
            }
        }
        _ => {}
    }
}

fn scrub(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |acc, s| acc.replace(s.as_str(), REDACTED))
}

/// Per-load state: provenance of every value and the secrets found.
struct Ctx<'a> {
    figment: &'a Figment,
    files: &'a [FileSource],
    tags: HashMap<KeyPath, Tag>,
    secrets: BTreeSet<KeyPath>,
    problems: Vec<Problem>,
}

enum Origin<'a> {
    File(&'a FileSource),
    Env(String),
}

impl<'a> Ctx<'a> {
    fn origin(&self, tag: Tag) -> Option<Origin<'a>> {
        let metadata = self.figment.get_metadata(tag)?;
        match metadata.source.as_ref()? {
            figment::Source::File(path) => self.files.iter().find(|f| &f.path == path).map(Origin::File),
            figment::Source::Custom(name) => Some(Origin::Env(name.clone())),
            _ => None,
        }
    }

    /// Converts figment's merged value to JSON, recording where each value came from and
    /// resolving secret references.
    fn convert(&mut self, value: &FValue, path: &KeyPath, env: &dyn Fn(&str) -> Option<String>) -> Value {
        self.tags.insert(path.clone(), value.tag());
        match value {
            FValue::String(tag, s) => {
                let base_dir = match self.origin(*tag) {
                    Some(Origin::File(f)) => f.path.parent().map(Path::to_path_buf),
                    _ => None,
                };
                match resolve(s, base_dir.as_deref(), env) {
                    Ok(None) => Value::String(s.clone()),
                    Ok(Some(resolved)) => {
                        if resolved.secret {
                            self.secrets.insert(path.clone());
                        }
                        Value::String(resolved.text)
                    }
                    Err(e) => {
                        self.secrets.insert(path.clone());
                        self.problems.push(Problem {
                            kind: DiagnosticKind::Reference,
                            path: path.clone(),
                            expected: e.expected,
                            found: e.found,
                            at_key: false,
                        });
                        Value::String(String::new())
                    }
                }
            }
            FValue::Char(_, c) => Value::String(c.to_string()),
            FValue::Bool(_, b) => Value::Bool(*b),
            FValue::Num(_, n) => {
                if let Some(u) = n.to_u128().and_then(|u| u64::try_from(u).ok()) {
                    Value::from(u)
                } else if let Some(i) = n.to_i128().and_then(|i| i64::try_from(i).ok()) {
                    Value::from(i)
                } else {
                    n.to_f64().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number)
                }
            }
            FValue::Empty(..) => Value::Null,
            FValue::Dict(_, dict) => {
                let mut map = Map::new();
                for (k, v) in dict {
                    map.insert(k.clone(), self.convert(v, &path.key(k), env));
                }
                Value::Object(map)
            }
            FValue::Array(_, items) => {
                Value::Array(items.iter().enumerate().map(|(i, v)| self.convert(v, &path.index(i), env)).collect())
            }
        }
    }

    /// Where the setting at `path` is: the environment variable that set it, or its position in the
    /// last file that names it (the nearest enclosing key when no file names it).
    fn locate(&self, path: &KeyPath, at_key: bool) -> Location {
        let mut tagged = path.clone();
        while !self.tags.contains_key(&tagged) && !tagged.is_root() {
            tagged = tagged.parent();
        }
        if let Some(Origin::Env(name)) = self.tags.get(&tagged).and_then(|t| self.origin(*t))
            && (&tagged == path || !self.files.iter().any(|f| f.index().contains(path)))
        {
            return Location::Env { name };
        }
        if let Some(file) = self.files.iter().rev().find(|f| f.index().contains(path)) {
            return file.location(path, at_key);
        }
        // not in any file: the file holding the deepest enclosing key
        let mut ancestor = path.parent();
        loop {
            if let Some(file) = self.files.iter().rev().find(|f| f.index().contains(&ancestor)) {
                return file.location(&ancestor, true);
            }
            if ancestor.is_root() {
                break;
            }
            ancestor = ancestor.parent();
        }
        match self.files.last() {
            Some(f) => Location::File { path: f.path.clone(), line: None, column: None },
            None => Location::Missing,
        }
    }
}

/// A document that passed every check.
#[derive(Clone)]
pub struct LoadedConfig {
    config: PackConfig,
    secrets: BTreeSet<KeyPath>,
    sources: Vec<PathBuf>,
    env: Vec<String>,
}

impl std::fmt::Debug for LoadedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedConfig")
            .field("config", &self.redacted())
            .field("sources", &self.sources)
            .field("env", &self.env)
            .finish()
    }
}

impl LoadedConfig {
    /// The configuration (secrets resolved: never print it; use [`redacted`](Self::redacted)).
    pub fn config(&self) -> &PackConfig {
        &self.config
    }

    /// The files it came from, in merge order.
    pub fn sources(&self) -> &[PathBuf] {
        &self.sources
    }

    /// The `MCPE_` environment variables that overrode them.
    pub fn env_overrides(&self) -> &[String] {
        &self.env
    }

    /// Whether the setting at `path` came from a secret reference or is marked secret.
    pub fn is_secret(&self, path: &KeyPath) -> bool {
        self.secrets.iter().any(|s| path.starts_with(s)) || crate::secret::is_schema_secret(path)
    }

    /// The effective document (defaults filled in) with every secret replaced by `<redacted>`.
    pub fn redacted(&self) -> Value {
        let value = serde_json::to_value(&self.config).unwrap_or(Value::Null);
        strip_nulls(redact(value, &self.secrets))
    }

    /// The effective document, secrets redacted, in `format`.
    pub fn print(&self, format: Format) -> Result<String, String> {
        let value = self.redacted();
        match format {
            Format::Json => serde_json::to_string_pretty(&value).map(|s| s + "\n").map_err(|e| e.to_string()),
            Format::Yaml => serde_yaml::to_string(&value).map_err(|e| e.to_string()),
            Format::Toml => toml::to_string_pretty(&value).map_err(|e| e.to_string()),
        }
    }
}

fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}
