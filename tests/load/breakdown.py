#!/usr/bin/env python3
"""Where a gateway's CPU per request goes, from a folded profile (`flamegraph.sh --folded`).

Every sample is charged to one owner and one kind:
- owner: the innermost frame (from the leaf up) of a layer crate (`mcp_enterprise_audit`, `_dpop`,
  `_sso`, `_policy`, `_integrity`, `_workload_identity`, core's inspection and negotiation, the
  gateway's rate limit) or of the proxy; else the thread (the audit writer, tokio's I/O driver and
  scheduler, hyper's server side: "transport and runtime").
- kind: the leaf frame: signature maths (aws-lc P-256/P-384/Ed25519/RSA), SHA-2/HMAC, the kernel
  (a sample under a system call or an interrupt), the allocator and memcpy, the rest.

Usage: breakdown.py FOLDED CPU_US_PER_REQUEST  (prints a Markdown table, µs per request)
"""

import re
import sys
from collections import defaultdict

OWNERS = [
    ("audit", re.compile(r"mcp_enterprise_audit")),
    ("dpop", re.compile(r"mcp_enterprise_dpop|mcp_enterprise_core::dpop")),
    ("sso", re.compile(r"mcp_enterprise_sso")),
    ("policy", re.compile(r"mcp_enterprise_policy")),
    ("integrity", re.compile(r"mcp_enterprise_integrity")),
    ("workload identity", re.compile(r"mcp_enterprise_workload_identity")),
    ("rate limit", re.compile(r"mcp_enterprise_gateway::ratelimit|mcp_enterprise_core::limiter")),
    ("core: inspection, negotiation, pre-auth", re.compile(r"mcp_enterprise_core")),
    ("proxy: upstream call (hyper client)", re.compile(r"mcp_enterprise_gateway::proxy")),
]
KINDS = [
    ("signature maths", re.compile(
        r"nistz256|ecp_|ec_GFp|beeu_mod|[eE][dD]25519|x25519|fiat_|p384_|bn_mul|bn_sqr|bn_mod|BN_|ECDSA|"
        r"ecdsa_|ec_point|ec_scalar|ec_felem|ec_simple|ge_p[23]|ge_double|sc_reduce|sc_muladd|rsaz_|RSA_")),
    ("SHA-2/HMAC", re.compile(r"sha256|sha512|SHA256|SHA512|HMAC|hmac_")),
    ("allocator, memcpy", re.compile(r"^_?mi_|^mi_|malloc|^free$|__rust_(alloc|dealloc|realloc)|memmove|memcpy|memcmp|memset")),
]
KERNEL = re.compile(r"entry_SYSCALL|do_syscall_64|asm_(common_interrupt|sysvec|exc)|irqentry|ret_from_fork|syscall_exit")
COLUMNS = ["signature maths", "SHA-2/HMAC", "allocator, memcpy", "kernel", "other"]


def classify(frames):
    thread = frames[0]
    owner = None
    for frame in reversed(frames):
        owner = next((name for name, rx in OWNERS if rx.search(frame)), None)
        if owner:
            break
    if owner is None:
        owner = "audit" if "audit" in thread else "transport and runtime"
    if any(KERNEL.search(f) for f in frames):
        kind = "kernel"
    else:
        leaf = frames[-1]
        kind = next((name for name, rx in KINDS if rx.search(leaf)), "other")
    return owner, kind


def main():
    folded, cpu = sys.argv[1], float(sys.argv[2])
    table = defaultdict(lambda: defaultdict(int))
    total = 0
    with open(folded, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            owner, kind = classify(stack.split(";"))
            table[owner][kind] += int(count)
            total += int(count)
    if total == 0:
        sys.exit("no samples")
    us = lambda n: n / total * cpu
    print("| owner | µs / request | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for owner, kinds in sorted(table.items(), key=lambda kv: -sum(kv[1].values())):
        cells = " | ".join(f"{us(kinds[k]):.1f}" for k in COLUMNS)
        print(f"| {owner} | {us(sum(kinds.values())):.1f} | {cells} |")
    sums = " | ".join(f"{us(sum(t[k] for t in table.values())):.1f}" for k in COLUMNS)
    print(f"| **all** | **{cpu:.1f}** | {sums} |")


if __name__ == "__main__":
    main()
