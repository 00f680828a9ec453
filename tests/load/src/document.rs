//! The configuration document each gateway stack runs (`mcp-enterprise serve --config`).

use std::path::Path;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::{ISSUER, Stack};

/// The TOML document of `stack`: the gateway at `url` (listening on `127.0.0.1:port`) in front of
/// `upstream`, tokens from [`ISSUER`] signed by `idp_jwk`, the audit trail (when on) and the policy
/// file (when on) in `dir`.
pub(crate) fn gateway_toml(
    stack: Stack,
    url: &str,
    upstream: &str,
    port: u16,
    idp_jwk: &Value,
    dir: &Path,
) -> anyhow::Result<String> {
    let trail = dir.join(format!("trail-{port}"));
    let mut doc = json!({
        "version": 1,
        "resource": url,
        "upstream": {"url": upstream},
        // the pre-authentication limit is on by default (100/s per address): wrk's one address
        // gets a rate it never reaches, so its check is measured but never refuses
        "listen": {"address": format!("127.0.0.1:{port}"),
                   "pre_auth_limit": {"requests_per_sec": 1_000_000, "burst": 1_000_000}},
    });
    if stack == Stack::BareNoPreAuth {
        doc["listen"]["pre_auth_limit"] = json!({"insecure_disabled": true});
    }
    let (sso, dpop, audit) = match stack {
        Stack::Direct | Stack::Bare | Stack::BareNoPreAuth | Stack::BareCredHeaders => (false, false, false),
        Stack::Metrics => {
            // a free port of its own
            doc["admin"] = json!({"address": "127.0.0.1:0"});
            (false, false, false)
        }
        Stack::Sso | Stack::SsoNoCache | Stack::SsoDistinct | Stack::SsoList | Stack::SsoPolicyList => {
            (true, false, false)
        }
        Stack::SsoDpop | Stack::SsoDpopDistinct => (true, true, false),
        Stack::Audit => (false, false, true),
        Stack::FullPack | Stack::FullPackEdDsa => (true, true, true),
        Stack::BearerPack | Stack::BearerPackNoCache | Stack::BearerPackDistinct => (true, false, true),
        Stack::BearerPackTraced | Stack::BearerPackTracedSampled => {
            let endpoint = crate::COLLECTOR.get().map_or("http://127.0.0.1:9/v1/traces", String::as_str);
            let ratio = if stack == Stack::BearerPackTraced { 1.0 } else { 0.01 };
            doc["traces"] = json!({"endpoint": endpoint, "sampling_ratio": ratio});
            (true, false, true)
        }
        Stack::FullPackPropagation => {
            doc["upstream"]["propagation"] = json!({"mode": "signed_assertion"});
            (true, true, true)
        }
    };
    if sso {
        doc["sso"] = json!({"issuers": [{"issuer": ISSUER, "audiences": [url], "jwks": {"keys": [idp_jwk]}}],
            "token_cache_capacity": stack.token_cache_capacity()});
    }
    if matches!(stack, Stack::SsoPolicyList | Stack::BearerPack | Stack::BearerPackNoCache | Stack::BearerPackDistinct)
        || stack.name().starts_with("BearerPackTraced")
    {
        // one permit for the measured call; lists are filtered (the default)
        let policy = dir.join(format!("policy-{port}.cedar"));
        std::fs::write(
            &policy,
            "@id(\"load-echo\")\npermit(principal, action == Mcp::Action::\"tools/call\", resource == Mcp::Tool::\"echo\");\n",
        )?;
        doc["policy"] = json!({"policy_files": [policy]});
    }
    if dpop {
        // dpop.origin comes from `resource`
        // wrk cycles through a fixed set of proofs, so the replay check (on by default) would refuse
        // them after the first round: measured off here, and on its own in the dpop bench
        doc["dpop"] = json!({"accept_bearer": true, "insecure_no_replay_check": true});
    }
    if audit {
        doc["audit"] = json!({"directory": trail, "fsync": "interval", "fsync_interval_ms": 10});
    }
    toml::to_string(&doc).context("the gateway's configuration as TOML")
}

#[cfg(test)]
mod tests {
    use mcp_enterprise_config::{Format, Loader};
    use mcp_enterprise_dpop::{ClientKeyAlg, DpopSigner};

    use super::*;

    #[test]
    fn every_stack_document_passes_config_check() -> anyhow::Result<()> {
        let idp = DpopSigner::generate(ClientKeyAlg::Es256)?;
        let dir = tempfile::tempdir()?;
        let traced = [Stack::BearerPackTraced, Stack::BearerPackTracedSampled];
        for stack in Stack::GATEWAYS.into_iter().chain(Stack::COST).chain(traced) {
            let text = gateway_toml(
                stack,
                "http://127.0.0.1:9/mcp",
                "http://127.0.0.1:8/mcp",
                9,
                idp.public_jwk(),
                dir.path(),
            )?;
            let loaded = Loader::new()
                .env(Vec::<(String, String)>::new())
                .text("load.toml", Format::Toml, &text)
                .load()
                .map_err(|e| anyhow::anyhow!("{stack:?}:\n{e}\n{text}"))?;
            let config = loaded.config();
            assert_eq!(
                config.sso.is_some(),
                !matches!(
                    stack,
                    Stack::Bare | Stack::BareNoPreAuth | Stack::BareCredHeaders | Stack::Metrics | Stack::Audit
                ),
                "{stack:?}"
            );
            assert_eq!(config.admin.is_some(), stack == Stack::Metrics, "{stack:?}");
            assert_eq!(
                config.audit.is_some(),
                matches!(stack, Stack::Audit)
                    || stack.name().starts_with("FullPack")
                    || stack.name().starts_with("BearerPack"),
                "{stack:?}"
            );
            assert_eq!(
                config.policy.is_some(),
                stack.name().contains("Policy") || stack.name().starts_with("BearerPack")
            );
        }
        Ok(())
    }
}
