//! The cache's timing rules, against a tiny JWKS endpoint that counts its requests.

use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::clock::ManualClock;
use crate::jwks::keys::tests::ec;

#[derive(Clone, Default)]
struct Endpoint {
    hits: Arc<AtomicUsize>,
    answer: Arc<Mutex<(u16, String, Option<String>)>>,
}

impl Endpoint {
    fn set(&self, status: u16, body: String, cache_control: Option<&str>) {
        *self.answer.lock().expect("lock") = (status, body, cache_control.map(str::to_owned));
    }
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn serve() -> (String, Endpoint) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
    let ep = Endpoint::default();
    let state = ep.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                state.hits.fetch_add(1, Ordering::SeqCst);
                // let concurrent callers pile up behind the single flight
                tokio::time::sleep(Duration::from_millis(50)).await;
                let (status, body, cc) = state.answer.lock().expect("lock").clone();
                let cc = cc.map(|c| format!("cache-control: {c}\r\n")).unwrap_or_default();
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{cc}content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
            });
        }
    });
    (url, ep)
}

fn jwks(kids: &[&str]) -> String {
    let keys: Vec<Value> = kids.iter().map(|k| ec(k)).collect();
    json!({"keys": keys}).to_string()
}

fn settings() -> JwksSettings {
    JwksSettings::default()
        .ttl(Duration::from_secs(300), Duration::from_secs(30), Duration::from_secs(3600))
        .max_stale(Duration::from_secs(600))
}

fn cache(url: &str, clock: &ManualClock) -> Arc<JwksCache> {
    let http = HttpClient::new(Duration::from_secs(2)).expect("client");
    Arc::new(JwksCache::new(
        "https://idp".into(),
        KeySource::Url(url.into()),
        http,
        Arc::new(clock.clone()),
        settings(),
    ))
}

fn q(kid: &str) -> KeyQuery<'_> {
    KeyQuery::new(Some(kid), Algorithm::ES256)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_and_single_flight() {
    let (url, ep) = serve().await;
    ep.set(200, jwks(&["a"]), None);
    let clock = ManualClock::at(1000);
    let c = cache(&url, &clock);
    assert_eq!(ep.hits(), 0, "nothing is fetched before a token needs a key");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.key_for(q("a")).await.map(|(k, _)| k.kid().map(str::to_owned)) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("join"), Ok(Some("a".to_owned())));
    }
    assert_eq!(ep.hits(), 1, "twenty concurrent misses make one fetch");
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let (url, ep) = serve().await;
    ep.set(200, jwks(&["a"]), None);
    let clock = ManualClock::at(1000);
    let c = cache(&url, &clock);
    c.key_for(q("a")).await.expect("a");
    clock.advance(Duration::from_secs(11));
    for i in 0..50 {
        let kid = format!("bogus-{i}");
        assert_eq!(c.key_for(q(&kid)).await.map(|_| ()), Err(KeyError::UnknownKey));
    }
    assert_eq!(ep.hits(), 2, "a flood of bogus kids costs one refetch");
    // a real new key is picked up once the interval has passed
    ep.set(200, jwks(&["a", "b"]), None);
    assert_eq!(c.key_for(q("b")).await.map(|_| ()), Err(KeyError::UnknownKey), "still inside the interval");
    clock.advance(Duration::from_secs(10));
    assert!(c.key_for(q("b")).await.is_ok());
    assert_eq!(ep.hits(), 3);
}

#[tokio::test]
async fn cache_control_sets_the_ttl() {
    let (url, ep) = serve().await;
    ep.set(200, jwks(&["a"]), Some("public, max-age=100"));
    let clock = ManualClock::at(1000);
    let c = cache(&url, &clock);
    c.key_for(q("a")).await.expect("a");
    clock.advance(Duration::from_secs(89));
    c.key_for(q("a")).await.expect("a");
    assert_eq!(ep.hits(), 1, "fresh for max-age");
    clock.advance(Duration::from_secs(6));
    c.key_for(q("a")).await.expect("served while refreshing ahead in the background");
    for _ in 0..100 {
        if ep.hits() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ep.hits(), 2, "the last tenth of the TTL triggers one background refresh");
}

#[tokio::test]
async fn an_expired_set_is_confirmed_before_a_key_is_served() {
    let (url, ep) = serve().await;
    ep.set(200, jwks(&["a"]), Some("max-age=100"));
    let clock = ManualClock::at(1000);
    let c = cache(&url, &clock);
    c.key_for(q("a")).await.expect("a");
    // the IdP retires "a"; once the cached set expires the old key must not verify anything
    ep.set(200, jwks(&["b"]), Some("max-age=100"));
    clock.advance(Duration::from_secs(101));
    assert_eq!(c.key_for(q("a")).await.map(|_| ()), Err(KeyError::UnknownKey), "retired key refused");
    assert_eq!(ep.hits(), 2, "one synchronous refresh");
    c.key_for(q("b")).await.expect("the new key");
    assert_eq!(ep.hits(), 2);
}

#[tokio::test]
async fn an_unknown_kid_while_the_idp_is_down_is_unavailable_not_invalid() {
    let (url, ep) = serve().await;
    ep.set(200, jwks(&["a"]), Some("max-age=60"));
    let clock = ManualClock::at(1000);
    let c = cache(&url, &clock);
    c.key_for(q("a")).await.expect("a");
    ep.set(503, "down".into(), None);
    clock.advance(Duration::from_secs(61));
    c.key_for(q("a")).await.expect("stale key served while the IdP is down");
    assert_eq!(c.key_for(q("new")).await.map(|_| ()), Err(KeyError::Unavailable));
}

#[tokio::test]
async fn stale_keys_serve_while_the_idp_is_down_then_fail_closed() {
    let (url, ep) = serve().await;
    ep.set(200, jwks(&["a"]), Some("max-age=60"));
    let clock = ManualClock::at(1000);
    let c = cache(&url, &clock);
    c.key_for(q("a")).await.expect("a");
    ep.set(503, "down".into(), None);
    clock.advance(Duration::from_secs(60 + 500));
    assert!(c.key_for(q("a")).await.is_ok(), "stale for 500 s < max_stale 600 s: still served");
    clock.advance(Duration::from_secs(200));
    assert_eq!(c.key_for(q("a")).await.map(|_| ()), Err(KeyError::Unavailable), "too stale: fail closed");
    // a cold cache with the IdP down fails closed at once
    let cold = cache(&url, &clock);
    assert_eq!(cold.key_for(q("a")).await.map(|_| ()), Err(KeyError::Unavailable));
    // and recovers when the IdP is back
    ep.set(200, jwks(&["a"]), None);
    clock.advance(Duration::from_secs(11));
    assert!(c.key_for(q("a")).await.is_ok());
}
