//! The `runtime` section: `worker_threads` sets the gateway's worker threads (as tokio counts
//! them), out-of-range values are refused at their file:line:key, and a reload that changes the
//! section is refused while the running configuration stays.

use http::StatusCode;
use mcp_enterprise_config::Loader;
use mcp_enterprise_gateway::configured::{ConfiguredError, ConfiguredGateway};
use mcp_enterprise_tests::gateway_process::GatewayProcess;
use serde_json::json;

use crate::common::{self, demo_upstream, modern};

fn config(upstream: &str, runtime: &str) -> String {
    format!(
        "version = 1\nresource = \"http://127.0.0.1/mcp\"\n[upstream]\nurl = \"{upstream}\"\n[listen]\n\
         address = \"127.0.0.1:0\"\n{runtime}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_sets_the_gateways_workers_and_it_serves() {
    let upstream = demo_upstream().await;
    let default = std::thread::available_parallelism().map_or(1, usize::from);
    // 3 and 1 both differ from this machine's default of one worker per CPU (2 in CI)
    for (section, workers) in
        [("[runtime]\nworker_threads = 3\n", 3), ("[runtime]\nworker_threads = 1\n", 1), ("", default)]
    {
        if section.is_empty() && std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut gw = GatewayProcess::start(dir.path(), &config(&upstream.url, section), "info").await.unwrap();
        let (status, _, body) = common::call(modern(gw.mcp_url(), 1, "tools/list", json!({}), json!({}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()), "{body}");
        // the count tokio's runtime reports for itself once it is built
        let log = gw.stderr();
        let line = log.lines().find(|l| l.contains("runtime started")).unwrap_or_else(|| panic!("{log}"));
        assert!(line.contains(&format!("worker_threads={workers}")), "{section:?}: {line}");
        assert!(gw.is_running());
    }
}

#[test]
fn out_of_range_worker_threads_are_refused_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    for value in ["0", "1025", "\"two\""] {
        let file = dir.path().join("mcp.toml");
        std::fs::write(&file, config("http://127.0.0.1:9/mcp", &format!("[runtime]\nworker_threads = {value}\n")))
            .unwrap();
        let errors: Vec<String> = match Loader::new().file(&file).env(Vec::<(String, String)>::new()).load() {
            Ok(_) => panic!("worker_threads = {value} loaded"),
            Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
        };
        let at = format!("{}:8:18: runtime.worker_threads", file.display());
        assert!(errors.iter().any(|e| e.starts_with(&at)), "{value}: {errors:?}");
    }
    let file = dir.path().join("unknown.toml");
    std::fs::write(&file, config("http://127.0.0.1:9/mcp", "[runtime]\nworkers = 2\n")).unwrap();
    let errors = Loader::new().file(&file).env(Vec::<(String, String)>::new()).load().unwrap_err();
    let errors: Vec<String> = errors.diagnostics().iter().map(ToString::to_string).collect();
    assert!(errors.iter().any(|e| e.contains("runtime.workers")), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changing_the_runtime_section_is_refused_and_the_gateway_keeps_serving() {
    let upstream = demo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mcp.toml");
    std::fs::write(&file, config(&upstream.url, "[runtime]\nworker_threads = 2\n")).unwrap();
    let gw = ConfiguredGateway::start(Loader::new().file(&file).env(Vec::<(String, String)>::new())).await.unwrap();
    for changed in ["[runtime]\nworker_threads = 1\n", ""] {
        std::fs::write(&file, config(&upstream.url, changed)).unwrap();
        match gw.reload() {
            Err(ConfiguredError::NeedsRestart { setting: "the runtime section", .. }) => {}
            other => panic!("{changed:?}: expected the reload refused, got {other:?}"),
        }
        let (status, _, body) = common::call(modern(&gw.mcp_url(), 1, "tools/list", json!({}), json!({}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // the same section again is no change
    std::fs::write(&file, config(&upstream.url, "[runtime]\nworker_threads = 2\n")).unwrap();
    gw.reload().unwrap();
    gw.shutdown().await;
}
