use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt};

use super::*;
use crate::clock::ManualClock;
use crate::{ClientAddress, Denial};

fn from(addr: &str) -> Request<()> {
    let mut req = Request::post("/mcp").body(()).expect("valid in this test");
    req.extensions_mut().insert(ClientAddress::direct(addr.parse::<SocketAddr>().expect("valid in this test")));
    req
}

/// The layer around a service counting the calls it receives.
fn service(
    layer: &PreAuthLimitLayer,
) -> (
    impl tower::Service<Request<()>, Response = Response<Bytes>, Error = std::convert::Infallible> + Clone,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let inner = tower::service_fn(move |_req: Request<()>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, std::convert::Infallible>(Response::new(Bytes::from_static(b"ok"))) }
    });
    (layer.layer(inner), calls)
}

#[tokio::test]
async fn an_address_over_its_burst_is_refused_with_429_and_others_go_on() {
    let clock = ManualClock::at(1_800_000_000);
    let layer = PreAuthLimitLayer::new(2, 3).expect("valid in this test").with_clock(Arc::new(clock.clone()));
    let (svc, calls) = service(&layer);
    for _ in 0..3 {
        let res = svc.clone().oneshot(from("192.0.2.7:40000")).await.expect("valid in this test");
        assert_eq!(res.status(), StatusCode::OK);
    }
    // another port, same address: the same bucket
    let res = svc.clone().oneshot(from("192.0.2.7:40001")).await.expect("valid in this test");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1");
    let denial = res.extensions().get::<Denial>().expect("a denial for the audit trail");
    assert_eq!((denial.layer(), denial.jsonrpc_code()), ("pre_auth_limit", Some(RATE_LIMITED)));
    assert!(matches!(res.extensions().get::<PreAuthLimitError>(), Some(PreAuthLimitError::Exceeded { .. })));
    let body: serde_json::Value = serde_json::from_slice(res.body()).expect("valid in this test");
    assert_eq!(body["error"]["code"], RATE_LIMITED);
    assert_eq!(body["id"], serde_json::Value::Null);
    assert!(!body.to_string().contains("192.0.2.7"), "the refusal does not echo the address: {body}");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "the refused request never reached the inner service");
    assert_eq!(layer.refused(), 1);
    // another address is unaffected
    assert_eq!(
        svc.clone().oneshot(from("192.0.2.8:40000")).await.expect("valid in this test").status(),
        StatusCode::OK
    );
    // half a second refills one request (2 per second)
    clock.advance(Duration::from_millis(500));
    assert_eq!(svc.clone().oneshot(from("192.0.2.7:1")).await.expect("valid in this test").status(), StatusCode::OK);
    assert_eq!(
        svc.clone().oneshot(from("192.0.2.7:1")).await.expect("valid in this test").status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn ipv6_counts_per_prefix_and_mapped_ipv4_as_ipv4() {
    let layer =
        PreAuthLimitLayer::new(1, 1).expect("valid in this test").with_clock(Arc::new(ManualClock::at(1_800_000_000)));
    let (svc, _) = service(&layer);
    assert_eq!(
        svc.clone().oneshot(from("[2001:db8:1:2::1]:1")).await.expect("valid in this test").status(),
        StatusCode::OK
    );
    // same /64, another host
    let res = svc.clone().oneshot(from("[2001:db8:1:2:ffff::9]:1")).await.expect("valid in this test");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // another /64
    assert_eq!(
        svc.clone().oneshot(from("[2001:db8:1:3::1]:1")).await.expect("valid in this test").status(),
        StatusCode::OK
    );
    // an IPv4-mapped IPv6 address is its IPv4 address
    assert_eq!(svc.clone().oneshot(from("198.51.100.1:1")).await.expect("valid in this test").status(), StatusCode::OK);
    let res = svc.clone().oneshot(from("[::ffff:198.51.100.1]:1")).await.expect("valid in this test");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // /128: every address on its own
    let exact =
        PreAuthLimitLayer::new(1, 1).expect("valid in this test").ipv6_prefix_len(128).expect("valid in this test");
    let (svc, _) = service(&exact);
    assert_eq!(
        svc.clone().oneshot(from("[2001:db8::1]:1")).await.expect("valid in this test").status(),
        StatusCode::OK
    );
    assert_eq!(
        svc.clone().oneshot(from("[2001:db8::2]:1")).await.expect("valid in this test").status(),
        StatusCode::OK
    );
}

#[test]
fn address_keys() {
    let v4: IpAddr = "10.1.2.3".parse().expect("valid in this test");
    assert_eq!(address_key(v4, 64), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3]);
    assert_eq!(address_key("::ffff:10.1.2.3".parse().expect("valid in this test"), 64), address_key(v4, 64));
    assert_ne!(address_key(v4, 64), address_key("::a01:203".parse().expect("valid in this test"), 128));
    let a: IpAddr = "2001:db8::1".parse().expect("valid in this test");
    let b: IpAddr = "2001:db8::ffff:1".parse().expect("valid in this test");
    assert_eq!(address_key(a, 64), address_key(b, 64));
    assert_ne!(address_key(a, 128), address_key(b, 128));
    assert_eq!(address_key(a, 0), address_key("::".parse().expect("valid in this test"), 0));
}

#[tokio::test]
async fn a_full_table_refuses_new_addresses_with_503_and_known_ones_go_on() {
    let layer = PreAuthLimitLayer::new(1, 5)
        .expect("valid in this test")
        .max_addresses(1)
        .expect("valid in this test")
        .with_clock(Arc::new(ManualClock::at(1_800_000_000)));
    let (svc, _) = service(&layer);
    assert_eq!(svc.clone().oneshot(from("192.0.2.1:1")).await.expect("valid in this test").status(), StatusCode::OK);
    let res = svc.clone().oneshot(from("192.0.2.2:1")).await.expect("valid in this test");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.extensions().get::<PreAuthLimitError>(), Some(&PreAuthLimitError::Full));
    assert_eq!(svc.clone().oneshot(from("192.0.2.1:1")).await.expect("valid in this test").status(), StatusCode::OK);
    assert_eq!(layer.addresses(), 1);
}

#[tokio::test]
async fn a_request_without_a_client_address_is_not_counted() {
    let layer = PreAuthLimitLayer::new(1, 1).expect("valid in this test");
    let (svc, calls) = service(&layer);
    for _ in 0..3 {
        let req = Request::post("/mcp").body(()).expect("valid in this test");
        assert_eq!(svc.clone().oneshot(req).await.expect("valid in this test").status(), StatusCode::OK);
    }
    assert_eq!((calls.load(Ordering::SeqCst), layer.addresses()), (3, 0));
}

#[test]
fn settings_are_checked_and_the_default_is_on() {
    assert!(PreAuthLimitLayer::new(0, 1).is_err());
    assert!(PreAuthLimitLayer::new(1, 0).is_err());
    assert!(PreAuthLimitLayer::new(1, 1).expect("valid in this test").max_addresses(0).is_err());
    assert!(PreAuthLimitLayer::new(1, 1).expect("valid in this test").ipv6_prefix_len(0).is_err());
    assert!(PreAuthLimitLayer::new(1, 1).expect("valid in this test").ipv6_prefix_len(129).is_err());
    let default = PreAuthLimitConfig::default();
    assert!(!default.insecure_disabled);
    assert!(default.layer().expect("valid in this test").is_some(), "on by default");
    let off = PreAuthLimitConfig { insecure_disabled: true, ..PreAuthLimitConfig::default() };
    assert!(off.layer().expect("valid in this test").is_none());
    let zero = PreAuthLimitConfig { burst: 0, ..PreAuthLimitConfig::default() };
    assert!(zero.layer().is_err());
}
