//! Instructions per request, counted by callgrind: a measure of the gateway's own work that does
//! not depend on what else the machine is doing (wrk, the upstream and the gateway share two
//! cores, so CPU time per request under load also carries cache and scheduling effects).
//!
//! Each stack runs under `valgrind --tool=callgrind`; after a warm-up the counters are zeroed
//! (`callgrind_control -z`), a fixed number of requests is sent one after the other over one
//! keep-alive connection, and the counters are dumped (`callgrind_control -d`). One ES256
//! verification is counted the same way (this binary's `--es256-verify`), so the DPoP row has its
//! crypto floor measured under the same instrumentation.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
};

use crate::{Keys, Opts, Stack};

/// Requests counted per stack (after [`WARM_UP`] uncounted ones).
const REQUESTS: usize = 1000;
const WARM_UP: usize = 100;
/// ES256 verifications counted for the floor.
const VERIFIES: usize = 200;

/// One stack's count.
pub(crate) struct Count {
    pub(crate) stack: Stack,
    pub(crate) per_request: f64,
}

/// Whether callgrind is available here.
pub(crate) fn available() -> bool {
    Command::new("callgrind_control").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
        && Command::new("valgrind").arg("--version").stdout(Stdio::null()).status().is_ok()
}

/// The callgrind command line a measured process runs under; dumps land in `dir`.
fn valgrind(dir: &Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--quiet".into(),
        format!("--callgrind-out-file={}/callgrind.%p", dir.display()),
    ]
}

/// Counts instructions per request for each stack (JSON responses).
pub(crate) fn measure(opts: &Opts, dir: &Path, keys: &Keys, stacks: &[Stack]) -> anyhow::Result<Vec<Count>> {
    let (_up, upstream) = crate::upstream(opts, true)?;
    let mut counts = Vec::new();
    for &stack in stacks {
        let measured = dir.join(format!("callgrind-{stack:?}"));
        std::fs::create_dir_all(&measured)?;
        let (gw, url) = crate::gateway_under(opts, dir, stack, &upstream, keys, &valgrind(&measured))?;
        let sets = crate::headers_for(stack, keys, &url)?;
        let mut client = Client::connect(&url)?;
        // the stack's own request: the list rows send their list method
        let (method, name) = stack.call();
        let body = crate::call_body(method);
        let send = |client: &mut Client, i: usize| -> anyhow::Result<()> {
            let extra = if sets.is_empty() { &[][..] } else { &sets[i % sets.len()][..] };
            let status = client.post(method, name, extra, &body)?;
            if status != 200 {
                bail!("{} answered {status} under callgrind", stack.label());
            }
            Ok(())
        };
        for i in 0..WARM_UP {
            send(&mut client, i)?;
        }
        let pid = gw.0.id().to_string();
        control(&["-z", &pid])?;
        for i in WARM_UP..WARM_UP + REQUESTS {
            send(&mut client, i)?;
        }
        control(&["-d", &pid])?;
        drop(client);
        drop(gw);
        let total = dumped_instructions(&measured)?;
        counts.push(Count { stack, per_request: total / REQUESTS as f64 });
    }
    Ok(counts)
}

/// Instructions of one ES256 verification (the proof's), counted under callgrind.
pub(crate) fn es256_verify(opts: &Opts, dir: &Path) -> anyhow::Result<f64> {
    let measured = dir.join("callgrind-es256");
    std::fs::create_dir_all(&measured)?;
    let exe = opts.bins.join("mcp-enterprise-load");
    let mut args = valgrind(&measured);
    args.extend(["--collect-atstart=no".into(), "--toggle-collect=*verify_loop*".into()]);
    let status = Command::new(&args[0])
        .args(&args[1..])
        .arg(exe)
        .args(["--es256-verify", &VERIFIES.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running valgrind")?;
    if !status.success() {
        bail!("the ES256 count under callgrind failed: {status}");
    }
    Ok(dumped_instructions(&measured)? / VERIFIES as f64)
}

/// `--es256-verify N`: N verifications of one ES256 signature (what callgrind counts).
pub(crate) fn verify_many(n: usize) -> anyhow::Result<()> {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("cannot generate a P-256 key"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
        .map_err(|_| anyhow::anyhow!("cannot load the P-256 key"))?;
    let message = b"eyJhbGciOiJFUzI1NiIsInR5cCI6ImRwb3Arand0In0.eyJodG0iOiJQT1NUIn0";
    let signature = pair.sign(&rng, message).map_err(|_| anyhow::anyhow!("cannot sign"))?;
    let public = pair.public_key().as_ref().to_vec();
    if verify_loop(n, &public, message, signature.as_ref()) != n {
        bail!("a verification failed");
    }
    Ok(())
}

/// The counted part: parse the public key and verify, `n` times (as a proof is checked).
#[inline(never)]
fn verify_loop(n: usize, public: &[u8], message: &[u8], signature: &[u8]) -> usize {
    (0..n)
        .filter(|_| {
            let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, std::hint::black_box(public));
            key.verify(message, std::hint::black_box(signature)).is_ok()
        })
        .count()
}

fn control(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("callgrind_control").args(args).output().context("running callgrind_control")?;
    if !out.status.success() {
        bail!("callgrind_control {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The instructions (`Ir`) in the dumps written to `dir` since the last zeroing: the explicit
/// dump (`.1`) when there is one, else the final dump at exit.
fn dumped_instructions(dir: &Path) -> anyhow::Result<f64> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?.filter_map(Result::ok).map(|e| e.path()).collect();
    files.sort();
    let explicit: Vec<_> = files.iter().filter(|p| p.extension().is_some_and(|e| e == "1")).collect();
    let file = explicit.first().copied().or(files.first()).context("callgrind wrote no dump")?;
    let text = std::fs::read_to_string(file)?;
    text.lines()
        .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("no instruction total in {}", file.display()))
}

/// A minimal HTTP/1.1 client on one keep-alive connection (so what is counted is the gateway's
/// work per request, not connection set-up).
struct Client {
    stream: BufReader<TcpStream>,
    host: String,
    path: String,
}

impl Client {
    fn connect(url: &str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("http://").context("an http:// URL")?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let stream = TcpStream::connect(host)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        stream.set_nodelay(true)?;
        Ok(Self { stream: BufReader::new(stream), host: host.to_owned(), path: path.to_owned() })
    }

    fn post(
        &mut self,
        method: &str,
        name: Option<&str>,
        extra: &[(String, String)],
        body: &str,
    ) -> anyhow::Result<u16> {
        let mut head = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             accept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\n\
             mcp-method: {method}\r\ncontent-length: {}\r\n",
            self.path,
            self.host,
            body.len()
        );
        if let Some(name) = name {
            head.push_str(&format!("mcp-name: {name}\r\n"));
        }
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(body);
        self.stream.get_mut().write_all(head.as_bytes())?;

        let mut line = String::new();
        self.stream.read_line(&mut line)?;
        let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("a status line")?;
        let (mut length, mut chunked) = (None, false);
        loop {
            line.clear();
            self.stream.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').context("a header line")?;
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = Some(value.trim().parse::<usize>()?),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
        if chunked {
            loop {
                line.clear();
                self.stream.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)?;
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
            }
        } else {
            let mut rest = vec![0; length.context("a response without length or chunking")?];
            self.stream.read_exact(&mut rest)?;
        }
        Ok(status)
    }
}
