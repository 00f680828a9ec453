//! The README contract: the embedded demo runs, and every curl command its banner prints works
//! as described.

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use mcp_enterprise_gateway::Gateway;
use mcp_enterprise_gateway::demo::{DemoUpstream, banner, default_extensions};

use crate::common::call;

/// Splits a shell command line into words, honouring single quotes (all the banner uses).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut in_word = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The curl commands of a banner, continuation lines joined.
fn curl_commands(text: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(cmd) = current.as_mut() {
            cmd.push(' ');
            cmd.push_str(trimmed.trim_end_matches('\\'));
        } else if trimmed.starts_with("curl ") {
            current = Some(trimmed.trim_end_matches('\\').to_owned());
        }
        if current.is_some() && !trimmed.ends_with('\\') {
            commands.push(shell_words(&current.take().unwrap_or_default()));
        }
    }
    commands
}

fn to_request(words: &[String]) -> Request<Full<Bytes>> {
    let url = words.iter().find(|w| w.starts_with("http://")).expect("URL in curl command");
    let mut builder = Request::post(url.as_str());
    let mut body = String::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "-H" => {
                let (k, v) = it.next().unwrap().split_once(':').unwrap();
                builder = builder.header(k.trim(), v.trim());
            }
            "-d" => body = it.next().unwrap().clone(),
            _ => {}
        }
    }
    builder.body(Full::new(Bytes::from(body))).unwrap()
}

#[tokio::test]
async fn banner_commands_work_as_described() {
    let demo = DemoUpstream::start().await.unwrap();
    let gw = Gateway::builder()
        .upstream(demo.url())
        .unwrap()
        .listen("127.0.0.1:0".parse().unwrap())
        .extensions(default_extensions())
        .build()
        .unwrap()
        .spawn()
        .await
        .unwrap();
    let text = banner(&gw.mcp_url(), demo.url(), true);
    assert!(text.contains(&gw.mcp_url()));
    let commands = curl_commands(&text);
    assert_eq!(commands.len(), 4, "{text}");

    let (status, _, msg) = call(to_request(&commands[0])).await;
    assert_eq!(status, 200, "server/discover: {msg}");
    assert!(msg["result"]["capabilities"]["extensions"]["io.github.mcp-enterprise/gateway"].is_object(), "{msg}");

    let (status, _, msg) = call(to_request(&commands[1])).await;
    assert_eq!(status, 200, "tools/call echo: {msg}");
    assert_eq!(msg["result"]["content"][0]["text"], "hello");

    let (status, _, msg) = call(to_request(&commands[2])).await;
    assert_eq!(status, 400, "the mismatch example is refused: {msg}");
    assert_eq!(msg["error"]["code"], -32020);

    let (status, headers, msg) = call(to_request(&commands[3])).await;
    assert_eq!(status, 200, "legacy initialize: {msg}");
    assert!(headers.contains_key("mcp-session-id"));
    assert_eq!(msg["result"]["serverInfo"]["name"], "mcp-enterprise-demo");

    gw.shutdown().await;
    demo.stop().await;
}
