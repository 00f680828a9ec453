//! The pack's own cost, measured interleaved: every stack of [`Stack::COST`] and the bare gateway
//! run side by side and are measured in turn at 16 connections for a few rounds, each round also
//! timing the cryptographic floor (one ES256 and one Ed25519 verification, in this process, by CPU
//! time); the medians give each stack's gateway CPU per request next to the bare gateway and the
//! floor of the same run. CPU per request, not throughput, because the machine is shared.
//! Each round also measures the bare gateway paced (wrk's `delay()`) to the request rate of the
//! full pack and of the new-token stack: the transport costs more per request at a lower rate,
//! and that share is not the pack's work.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::bail;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
    UnparsedPublicKey,
};

use crate::{Keys, Opts, Stack, gateway, headers_for, upstream, wrk, wrk_script_for};

/// Distinct tokens of [`Stack::SsoDistinct`] and [`Stack::BearerPackDistinct`].
pub(crate) const DISTINCT_TOKENS: usize = 30_000;
/// Distinct DPoP-bound tokens of [`Stack::SsoDpopDistinct`].
pub(crate) const DPOP_TOKENS: usize = 10_000;
/// Rounds of the interleaved measurement.
const ROUNDS: usize = 3;
/// Verifications timed per floor measurement.
const FLOOR_VERIFIES: usize = 3000;

/// One stack's medians.
pub(crate) struct Row {
    pub(crate) stack: Stack,
    pub(crate) rps: f64,
    pub(crate) cpu_us: f64,
}

/// The bare gateway paced to another stack's request rate.
pub(crate) struct Paced {
    /// The stack whose rate it was paced to.
    pub(crate) to: Stack,
    pub(crate) rps: f64,
    pub(crate) cpu_us: f64,
}

/// Stacks the bare gateway is also measured at the request rate of: the transport's cost per
/// request grows as the rate falls (the load generator and the upstream sleep between requests,
/// so every write wakes one), and these stacks run at a third of the bare gateway's rate or less.
const PACED_TO: [Stack; 2] = [Stack::FullPack, Stack::SsoDpopDistinct];
/// Milliseconds each wrk connection waits before its next request when paced (wrk's `delay()`).
const PACE_DELAY_MS: u32 = 1;

/// The measured rows (the bare gateway first) and the floors (µs per verification).
pub(crate) struct Costs {
    pub(crate) rows: Vec<Row>,
    pub(crate) paced: Vec<Paced>,
    pub(crate) es256_us: f64,
    pub(crate) ed25519_us: f64,
    pub(crate) rounds: usize,
}

/// CPU time this thread has run, from the scheduler's nanosecond count.
fn thread_cpu_ns() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    Ok(text.split_whitespace().next().unwrap_or("0").parse()?)
}

/// µs of CPU per verification (key parse + verify, as a proof is checked): ES256, Ed25519.
fn floors() -> anyhow::Result<(f64, f64)> {
    let rng = SystemRandom::new();
    let message = b"eyJhbGciOiJFUzI1NiIsInR5cCI6ImRwb3Arand0In0.eyJodG0iOiJQT1NUIn0";
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("cannot generate a P-256 key"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
        .map_err(|_| anyhow::anyhow!("cannot load the P-256 key"))?;
    let es_sig = pair.sign(&rng, message).map_err(|_| anyhow::anyhow!("cannot sign"))?;
    let es_pub = pair.public_key().as_ref().to_vec();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| anyhow::anyhow!("cannot generate an Ed25519 key"))?;
    let ed = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| anyhow::anyhow!("cannot load the Ed25519 key"))?;
    let ed_sig = ed.sign(message);
    let ed_pub = ed.public_key().as_ref().to_vec();
    let time = |alg: &'static dyn aws_lc_rs::signature::VerificationAlgorithm, public: &[u8], sig: &[u8]| {
        let start = thread_cpu_ns()?;
        let ok = (0..FLOOR_VERIFIES)
            .filter(|_| {
                UnparsedPublicKey::new(alg, std::hint::black_box(public))
                    .verify(message, std::hint::black_box(sig))
                    .is_ok()
            })
            .count();
        if ok != FLOOR_VERIFIES {
            bail!("a floor verification failed");
        }
        Ok::<_, anyhow::Error>((thread_cpu_ns()? - start) as f64 / 1000.0 / FLOOR_VERIFIES as f64)
    };
    Ok((time(&ECDSA_P256_SHA256_FIXED, &es_pub, es_sig.as_ref())?, time(&ED25519, &ed_pub, ed_sig.as_ref())?))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the bare gateway and `stacks` side by side (JSON answers) and measures them in turn.
pub(crate) fn measure(opts: &Opts, dir: &Path, keys: &Keys, stacks: &[Stack]) -> anyhow::Result<Costs> {
    let (_up, upstream_url) = upstream(opts, true)?;
    let mut running = Vec::new();
    for stack in std::iter::once(Stack::Bare).chain(stacks.iter().copied().filter(|s| *s != Stack::Bare)) {
        let (gw, url) = gateway(opts, dir, stack, &upstream_url, keys)?;
        eprintln!("cost: {} ready, minting its credentials", stack.label());
        let script = wrk_script_for(dir, &format!("cost-{stack:?}"), &headers_for(stack, keys, &url)?, stack.call())?;
        // warm-up: caches, connections; every distinct token seen once
        let _ = wrk(&url, &script, 16, 2, None)?;
        running.push((stack, gw, url, script, Vec::new(), Vec::new()));
    }
    let (mut es, mut ed) = (Vec::new(), Vec::new());
    // the bare gateway's script, each connection waiting PACE_DELAY_MS before every request
    let paced_script = dir.join("cost-bare-paced.lua");
    let mut text = std::fs::read_to_string(&running[0].3)?;
    text.push_str(&format!("delay = function() return {PACE_DELAY_MS} end\n"));
    std::fs::write(&paced_script, text)?;
    let mut paced: Vec<(Stack, Vec<f64>, Vec<f64>)> = Vec::new();
    for round in 0..ROUNDS {
        let (e, d) = floors()?;
        eprintln!("cost round {round}: floor ES256 {e:.1} µs, Ed25519 {d:.1} µs");
        es.push(e);
        ed.push(d);
        // each round starts one stack further on: no stack is always the one measured right after
        // the floor (the harness's own busy loop) or always last
        let n = running.len();
        for k in 0..n {
            let (stack, gw, url, script, cpus, rpss) = &mut running[(round + k) % n];
            let r = wrk(url, script, 16, opts.duration, Some(gw.0.id()))?;
            if r.errors > 0 {
                bail!("{}: {} errors of {} requests", stack.label(), r.errors, r.requests);
            }
            let cpu = r.cpu_us_per_req.unwrap_or(f64::NAN);
            eprintln!("cost round {round} {:<75} {:>8.0} req/s cpu {cpu:>6.1} µs/req", stack.label(), r.rps);
            cpus.push(cpu);
            rpss.push(r.rps);
        }
        for to in PACED_TO {
            let Some(target) = running.iter().find(|r| r.0 == to).and_then(|r| r.5.last().copied()) else { continue };
            let (_, gw, url, _, _, _) = &running[0];
            // a rate per connection from a short probe, then as many connections as the target needs
            let probe = wrk(url, &paced_script, 16, 1, None)?;
            let conns = ((16.0 * target / probe.rps.max(1.0)).round() as u32).clamp(1, 256);
            let r = wrk(url, &paced_script, conns, opts.duration, Some(gw.0.id()))?;
            if r.errors > 0 {
                bail!("bare gateway paced: {} errors of {} requests", r.errors, r.requests);
            }
            let cpu = r.cpu_us_per_req.unwrap_or(f64::NAN);
            eprintln!(
                "cost round {round} bare gateway paced to {:<57} {:>8.0} req/s cpu {cpu:>6.1} µs/req ({conns} connections)",
                to.label(),
                r.rps
            );
            match paced.iter_mut().find(|p| p.0 == to) {
                Some((_, cpus, rpss)) => {
                    cpus.push(cpu);
                    rpss.push(r.rps);
                }
                None => paced.push((to, vec![cpu], vec![r.rps])),
            }
        }
    }
    let paced =
        paced.into_iter().map(|(to, cpus, rpss)| Paced { to, rps: median(rpss), cpu_us: median(cpus) }).collect();
    let rows = running
        .into_iter()
        .map(|(stack, _gw, _, _, cpus, rpss)| Row { stack, rps: median(rpss), cpu_us: median(cpus) })
        .collect();
    Ok(Costs { rows, paced, es256_us: median(es), ed25519_us: median(ed), rounds: ROUNDS })
}

/// The section of the report: the table and each target's check.
pub(crate) fn section(s: &mut String, c: &Costs, duration: u64) -> anyhow::Result<()> {
    let cpu = |stack| c.rows.iter().find(|r| r.stack == stack).map(|r| r.cpu_us);
    let rps = |stack| c.rows.iter().find(|r| r.stack == stack).map(|r| r.rps);
    let bare = cpu(Stack::Bare).unwrap_or(f64::NAN);
    writeln!(s, "\n## The pack's own cost (interleaved, gateway CPU per request)\n")?;
    writeln!(
        s,
        "JSON answers, 16 connections. The bare gateway and each stack below run side by side and are measured in \
         turn, {} rounds of {duration} s; each round also times the cryptographic floor in the harness itself (key \
         parse + verify, CPU time): ES256 {:.1} µs, Ed25519 {:.1} µs per verification (medians). CPU µs/req is the \
         gateway process's user + system time over the requests it served (median of the rounds) — robust to \
         the other load on a shared machine, unlike throughput.\n",
        c.rounds, c.es256_us, c.ed25519_us
    )?;
    writeln!(s, "| stack | req/s | CPU µs/req | − bare gateway |")?;
    writeln!(s, "|---|---|---|---|")?;
    for r in &c.rows {
        let added = if r.stack == Stack::Bare { String::new() } else { format!("{:+.1}", r.cpu_us - bare) };
        writeln!(s, "| {} | {:.0} | {:.1} | {added} |", r.stack.label(), r.rps, r.cpu_us)?;
    }
    for p in &c.paced {
        writeln!(
            s,
            "| gateway, no layers, paced to the rate of: {} (wrk `delay()` {PACE_DELAY_MS} ms) | {:.0} | {:.1} | {:+.1} |",
            p.to.label(),
            p.rps,
            p.cpu_us,
            p.cpu_us - bare
        )?;
    }
    writeln!(s)?;
    let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
    let paced = |stack| c.paced.iter().find(|p| p.to == stack).map(|p| p.cpu_us);
    if let Some(pack) = cpu(Stack::FullPack) {
        let own = pack - bare - c.es256_us;
        writeln!(
            s,
            "- **Pack's own cost** (sso + dpop ES256 + audit fsync 10 ms, token cached): {pack:.1} − {bare:.1} (bare) − \
             {:.1} (one ES256 proof verification) = **{own:.1} µs** per request (target ≤ 15 µs: {}).",
            c.es256_us,
            verdict(own <= 15.0)
        )?;
    }
    // the same, against the bare gateway served the same request bytes (the credentials' headers
    // present, no layers): the pack's own cost without the transport of those headers — an extra
    // statement, the formula above stays the target's
    let same_bytes = cpu(Stack::BareCredHeaders);
    if let (Some(pack), Some(bytes)) = (cpu(Stack::FullPack), same_bytes) {
        let own = pack - bytes - c.es256_us;
        writeln!(
            s,
            "- Pack's own cost against the bare gateway served the same request bytes (credentials headers present, \
             no layers): {pack:.1} − {bytes:.1} − {:.1} = **{own:.1} µs** per request (the headers' transport: \
             {:+.1} µs of the bare gateway).",
            c.es256_us,
            bytes - bare
        )?;
    }
    // the same at the same request rate: the transport's share that grows as the rate falls is
    // the bare gateway's too — an extra statement, the formula above stays the target's
    if let (Some(pack), Some(at_rate)) = (cpu(Stack::FullPack), paced(Stack::FullPack)) {
        let own = pack - at_rate - c.es256_us;
        writeln!(
            s,
            "- Pack's own cost against the bare gateway at the pack's request rate: {pack:.1} − {at_rate:.1} − {:.1} = \
             **{own:.1} µs** per request (at that rate the bare gateway costs {:+.1} µs per request more than at its own).",
            c.es256_us,
            at_rate - bare
        )?;
    }
    if let Some(pack) = cpu(Stack::FullPackEdDsa) {
        let own = pack - bare - c.ed25519_us;
        writeln!(
            s,
            "- Pack's own cost with Ed25519 proofs: {pack:.1} − {bare:.1} − {:.1} = **{own:.1} µs** per request.",
            c.ed25519_us
        )?;
    }
    if let (Some(b), Some(p)) = (rps(Stack::Bare), rps(Stack::FullPackEdDsa)) {
        writeln!(
            s,
            "- Full pack with Ed25519 proofs / bare gateway throughput (same rounds): {:.0} % (target ≥ 70 %: {}).",
            p / b * 100.0,
            verdict(p / b >= 0.7)
        )?;
    }
    for (distinct, off, one, what) in [
        (Stack::SsoDistinct, Stack::SsoNoCache, Stack::Sso, "sso"),
        (Stack::BearerPackDistinct, Stack::BearerPackNoCache, Stack::BearerPack, "sso + policy + audit"),
    ] {
        if let (Some(d), Some(o), Some(h)) = (cpu(distinct), cpu(off), cpu(one)) {
            writeln!(
                s,
                "- {what}: {} distinct tokens, three times what the cache holds (the cache full) {d:.1} µs vs \
                 cache off {o:.1} µs: {:+.1} µs (target ≤ +2 µs: {}); one cached token {h:.1} µs.",
                DISTINCT_TOKENS,
                d - o,
                verdict(d - o <= 2.0)
            )?;
        }
    }
    if let (Some(list), Some(policy)) = (cpu(Stack::SsoList), cpu(Stack::SsoPolicyList)) {
        writeln!(
            s,
            "- Empty list (`resources/templates/list`): sso + policy {policy:.1} µs vs sso alone {list:.1} µs: {:+.1} µs \
             (target ≤ +5 µs: {}).",
            policy - list,
            verdict(policy - list <= 5.0)
        )?;
    }
    if let Some(d) = cpu(Stack::SsoDpopDistinct) {
        let floor = 2.0 * c.es256_us;
        writeln!(
            s,
            "- sso + dpop with a new token every request: {d:.1} − {bare:.1} (bare) = {:.1} µs vs the two ES256 \
             verifications it must do ({floor:.1} µs): {:.2}× (target ≤ 1.15×: {}).",
            d - bare,
            (d - bare) / floor,
            verdict((d - bare) / floor <= 1.15)
        )?;
        if let Some(bytes) = same_bytes {
            writeln!(
                s,
                "- The same against the bare gateway served the same request bytes: {d:.1} − {bytes:.1} = {:.1} µs: \
                 {:.2}×.",
                d - bytes,
                (d - bytes) / floor
            )?;
        }
        if let Some(at_rate) = paced(Stack::SsoDpopDistinct) {
            writeln!(
                s,
                "- The same against the bare gateway at this stack's request rate: {d:.1} − {at_rate:.1} = {:.1} µs: \
                 {:.2}×.",
                d - at_rate,
                (d - at_rate) / floor
            )?;
        }
    }
    Ok(())
}
