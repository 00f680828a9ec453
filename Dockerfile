# syntax=docker/dockerfile:1
#
# The mcp-enterprise gateway as a container image.
#
#   docker build -t mcp-enterprise:0.1.0 .
#   docker run --read-only --user 65532:65532 \
#     -v ./mcp-enterprise.toml:/etc/mcp-enterprise/mcp-enterprise.toml:ro \
#     -v mcpe-audit:/var/lib/mcp-enterprise/audit \
#     -p 8787:8787 -p 9464:9464 mcp-enterprise:0.1.0
#
# The binary is built exactly as tests/it/deploy.rs builds it (the same cargo command, profile
# and features: BUILD_ARGS below), so the tests keep this file honest without a container engine.
# See docs/deployment.md.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- build ----------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
# aws-lc-rs (the one crypto stack) builds aws-lc with cmake and a C compiler
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang make perl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# BUILD_ARGS: keep in sync with tests/it/deploy.rs (DOCKER_BUILD_ARGS). The `dist` profile is
# `release` with fat LTO and one codegen unit: 7-19 % less gateway CPU per request than `release`
# (docs/performance.md, "Release profile"), for a longer build.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --profile dist -p mcp-enterprise --bin mcp-enterprise --no-default-features \
 && install -D -m 0755 target/dist/mcp-enterprise /out/mcp-enterprise

# ---- runtime --------------------------------------------------------------------------------
# distroless cc: glibc, libgcc, CA certificates, no shell, no package manager; nonroot = 65532
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/mcp-enterprise /usr/local/bin/mcp-enterprise
# configuration (read-only) and the audit trail (the one writable path) are volumes; the root
# file system can be mounted read-only: the gateway writes nothing else
VOLUME ["/var/lib/mcp-enterprise/audit"]
WORKDIR /var/lib/mcp-enterprise
USER 65532:65532
# 8787: MCP (listen.address); 9464: admin listener (/healthz, /readyz, /metrics; admin.address)
EXPOSE 8787 9464
ENTRYPOINT ["/usr/local/bin/mcp-enterprise"]
CMD ["serve", "--config", "/etc/mcp-enterprise/mcp-enterprise.toml"]
