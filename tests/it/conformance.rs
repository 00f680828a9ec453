//! Transparency: the official MCP conformance suite, run against a real MCP server nobody here
//! wrote (`@modelcontextprotocol/server-everything`), first directly and then through the gateway.
//! Every `(scenario, check)` that is SUCCESS directly must be SUCCESS through the gateway.
//!
//! Many checks fail directly by design (the feature scenarios expect the suite's own fixture
//! tools, and server-everything speaks only the 2025-era protocol), so results are compared per
//! check from each run's `checks.json`, never by exit code. Both conformance releases run: the
//! stable 0.1.16 and the 0.2.0 prerelease (2026-07-28 scenarios, `wire-schema-valid` checks).
//!
//! Needs the npm peers: `npm ci --prefix tests/peers` (the test fails, with that hint, without
//! them). Set `MCP_TEST_KEEP_ARTIFACTS=1` to keep the logs and result files of a passing run; a
//! failing run always keeps them.

use std::net::SocketAddr;

use mcp_enterprise_gateway::Gateway;
use mcp_enterprise_tests::artifacts::Artifacts;
use mcp_enterprise_tests::conformance::{self, CheckStatus, ConformanceRun, Suite};
use mcp_enterprise_tests::peers::{Peers, ServerEverything};

/// Checks that must pass against server-everything directly, so that a broken peer or suite
/// install fails the test instead of making the comparison vacuous. Each covers a transport path
/// a proxy can break: the legacy handshake and session id, plain JSON-RPC round trips, SSE
/// responses (several at once), the standalone GET stream and the Host/Origin handling.
const DIRECT_ANCHORS: &[(Suite, &str, &str)] = &[
    (Suite::Stable, "server-initialize", "server-initialize"),
    (Suite::Stable, "ping", "ping"),
    (Suite::Stable, "tools-list", "tools-list"),
    (Suite::Stable, "tools-call-simple-text", "tools-call-simple-text"),
    (Suite::Stable, "resources-subscribe", "resources-subscribe"),
    (Suite::Stable, "server-sse-multiple-streams", "server-accepts-multiple-post-streams"),
    (Suite::Stable, "server-sse-multiple-streams", "server-sse-streams-functional"),
    (Suite::Stable, "dns-rebinding-protection", "localhost-host-valid-accepted"),
    (Suite::Next, "server-initialize", "server-session-id-visible-ascii"),
    (Suite::Next, "server-session-lifecycle", "server-session-initialized-accepted"),
    (Suite::Next, "server-session-lifecycle", "server-session-delete-accepted"),
    (Suite::Next, "tools-list", "wire-schema-valid"),
    (Suite::Next, "server-sse-multiple-streams", "server-sse-streams-functional"),
    (Suite::Next, "server-stateless", "sep-2575-http-server-unsupported-version-400"),
];

/// The fewest SUCCESS checks a direct run may have. Observed with the pinned versions
/// (tests/peers/package-lock.json): 13 for stable, 55 for next (aggregated per check id).
fn min_direct_successes(suite: Suite) -> usize {
    match suite {
        Suite::Stable => 12,
        _ => 50,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_is_transparent_to_the_conformance_suite() {
    let peers = Peers::require();
    let artifacts = Artifacts::new_in(env!("CARGO_TARGET_TMPDIR"), "conformance-").expect("create artifacts dir");
    let mut upstream =
        ServerEverything::start(&peers, artifacts.path()).await.expect("start server-everything on loopback");
    let upstream_url = upstream.mcp_url();

    // 1. Directly against server-everything.
    let direct = run_suites(&peers, &upstream_url, artifacts.path(), "direct").await;
    let mut problems = Vec::new();
    for run in &direct {
        problems.extend(direct_health(run));
    }
    upstream.check_running().expect("server-everything survived the direct runs");
    assert!(
        problems.is_empty(),
        "the direct runs against server-everything are not healthy, so nothing can be compared \
         (peer or suite broken?):\n{}\n\n{}",
        problems.join("\n"),
        direct.iter().map(describe).collect::<Vec<_>>().join("\n\n"),
    );

    // 2. The same, through the gateway.
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("loopback address");
    let gateway = Gateway::builder()
        .upstream(&upstream_url)
        .expect("upstream URL accepted")
        .listen(listen)
        .build()
        .expect("gateway configuration");
    let running = gateway.spawn().await.expect("gateway binds on loopback");
    let gateway_url = running.mcp_url();
    let proxied = run_suites(&peers, &gateway_url, artifacts.path(), "gateway").await;
    running.shutdown().await;
    upstream.check_running().expect("server-everything survived the runs through the gateway");

    // 3. Compare.
    let mut report = String::new();
    let mut regressions = 0;
    for (d, p) in direct.iter().zip(&proxied) {
        assert_eq!(d.suite, p.suite);
        let found = conformance::regressions(&d.results, &p.results);
        let others = conformance::other_differences(&d.results, &p.results);
        println!(
            "[{}] direct {:.1?}: {}\n[{}] gateway {:.1?}: {}",
            d.suite,
            d.elapsed,
            d.results.summary(),
            p.suite,
            p.elapsed,
            p.results.summary()
        );
        if !others.is_empty() {
            println!(
                "[{}] other differences (informational):\n{}",
                d.suite,
                conformance::render_table(&["scenario", "check", "direct", "via gateway"], &others)
            );
        }
        if !found.is_empty() || p.timed_out {
            regressions += found.len();
            report.push_str(&format!(
                "\n== conformance {} ({}): {} check(s) pass directly but not through the gateway{}\n{}\
                 direct results: {}\ngateway results: {} (CLI output: {})\n",
                d.suite,
                d.suite.package(),
                found.len(),
                if p.timed_out { "; the gateway run TIMED OUT" } else { "" },
                conformance::regression_table(&found),
                d.results_dir.display(),
                p.results_dir.display(),
                p.log.display(),
            ));
        }
    }
    drop(upstream);
    if !report.is_empty() {
        let kept = artifacts.keep();
        panic!(
            "the gateway is not transparent: {regressions} conformance check(s) regressed.\n{report}\n\
             upstream {upstream_url}, gateway {gateway_url}; artifacts kept in {}",
            kept.display()
        );
    }
}

/// Runs every suite against `url`, one after the other, into `artifacts/<label>-<suite>`.
async fn run_suites(peers: &Peers, url: &str, artifacts: &std::path::Path, label: &str) -> Vec<ConformanceRun> {
    let mut runs = Vec::new();
    for suite in Suite::ALL {
        let out = artifacts.join(format!("{label}-{suite}"));
        let run = conformance::run(peers, suite, url, &out)
            .await
            .unwrap_or_else(|err| panic!("conformance {suite} against {url} ({label}) could not run: {err}"));
        runs.push(run);
    }
    runs
}

/// Why a direct run cannot serve as the baseline (empty when it can).
fn direct_health(run: &ConformanceRun) -> Vec<String> {
    let mut problems = Vec::new();
    if run.timed_out {
        problems.push(format!("[{}] the run timed out after {:?}", run.suite, run.elapsed));
    }
    let successes = run.results.count(&CheckStatus::Success);
    let min = min_direct_successes(run.suite);
    if successes < min {
        problems.push(format!("[{}] only {successes} SUCCESS checks, expected at least {min}", run.suite));
    }
    for (suite, scenario, check) in DIRECT_ANCHORS {
        if *suite == run.suite && !run.results.passed(scenario, check) {
            let status = run
                .results
                .checks
                .get(&((*scenario).to_owned(), (*check).to_owned()))
                .map_or_else(|| "MISSING".to_owned(), |o| format!("{} {}", o.status(), o.short_message(120)));
            problems.push(format!("[{}] anchor check {scenario}/{check} did not pass: {status}", run.suite));
        }
    }
    problems
}

fn describe(run: &ConformanceRun) -> String {
    format!(
        "== conformance {} against {} ({:.1?}, exit {:?}): {}\nCLI output: {}\n{}",
        run.suite,
        run.url,
        run.elapsed,
        run.exit_code,
        run.results.summary(),
        run.log.display(),
        run.results.table()
    )
}
