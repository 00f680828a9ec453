//! Configuration loading (`mcp_enterprise_config::Loader`) on arbitrary text, read as TOML, as
//! YAML and as JSON. Seeds are the documents in `examples/configs`.
//!
//! Invariants: the loader returns an error or a value, never panics; an error lists at least one
//! diagnostic, each placed in the document it names at a line the document has; a loaded document
//! prints in every format, and (when it holds no secret) its printed JSON loads back to the same
//! effective configuration.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_enterprise_config::{Format, Loader, Location, REDACTED};

const NAME: &str = "fuzz.conf";

fn load(format: Format, text: &str) -> Result<mcp_enterprise_config::LoadedConfig, mcp_enterprise_config::ConfigError> {
    // no process environment: no MCPE_ overrides, no ${env:…} values from outside
    Loader::new().text(NAME, format, text).env([("HOME", "/nonexistent")]).load()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // YAML also ends a line at a lone CR; count line breaks the most generous way
    let lines = text.replace("\r\n", "\n").replace('\r', "\n").lines().count().max(1);
    for format in [Format::Toml, Format::Yaml, Format::Json] {
        match load(format, text) {
            Err(e) => {
                assert!(!e.to_string().is_empty());
                let diagnostics = e.diagnostics();
                assert!(!diagnostics.is_empty(), "an invalid document names its problems: {e}");
                for d in diagnostics {
                    if let Location::File { path, line, column } = &d.location {
                        assert_eq!(path.to_str(), Some(NAME));
                        if let Some(line) = line {
                            assert!((1..=lines + 1).contains(line), "{format:?}: line {line} of {lines}: {d}");
                        }
                        assert!(column.is_none_or(|c| c >= 1), "{d}");
                    }
                }
            }
            Ok(loaded) => {
                for out in [Format::Toml, Format::Yaml, Format::Json] {
                    loaded.print(out).unwrap_or_else(|e| panic!("{format:?} document does not print as {out:?}: {e}"));
                }
                let redacted = loaded.redacted();
                if !redacted.to_string().contains(REDACTED) {
                    let json = loaded.print(Format::Json).unwrap_or_default();
                    match load(Format::Json, &json) {
                        Ok(again) => assert_eq!(again.redacted(), redacted, "printed JSON loads differently"),
                        Err(e) => panic!("{format:?} document's printed JSON does not load: {e}\n{json}"),
                    }
                }
            }
        }
    }
});
