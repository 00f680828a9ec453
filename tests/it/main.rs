//! The one integration-test harness of the workspace. Every peer it starts binds to 127.0.0.1
//! and is stopped when its test ends.

#![allow(clippy::unwrap_used)]

mod audit;
mod cli_conventions;
mod client_peers;
mod clients;
mod common;
mod config;
mod conformance;
mod cors;
mod demo;
mod deploy;
mod dpop;
mod dpop_e2e;
mod egress;
mod faults;
mod forwarded;
mod gateway;
mod ha;
mod hostile;
mod https_upstream;
mod id_jag;
mod in_process;
mod integrity;
mod negotiation;
mod oidc_peer;
mod operability;
mod otlp_outbound;
mod policy;
mod preauth;
mod propagation;
mod ratelimit;
mod routes;
mod runtime;
mod shutdown;
mod siem_export;
mod sso;
mod stdio;
mod stdio_modern;
mod stdio_spare;
mod token_exchange;
mod tools_cli;
mod traces;
mod wiring;
mod workload_identity;
