//! `routes`: more MCP servers behind one listener. Each route is checked as the document it makes
//! (the top level with the route's sections in place of its own, see
//! [`PackConfig::route_documents`](crate::PackConfig::route_documents)), and its problems are
//! reported at the route's own keys (`routes[1].sso.issuers[0].issuer`).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::checks::Checker;
use crate::error::DiagnosticKind;
use crate::model::ROUTE_KEYS;
use crate::path::{KeyPath, Segment};
use crate::validate::Problem;

/// The route document of route `i`: the top level without `routes` and `client`, with the route's
/// sections in place of the top level's (absent ones off).
pub(crate) fn route_doc(doc: &Value, i: usize) -> Option<Value> {
    let route = doc.get("routes")?.get(i)?.as_object()?;
    let mut out = doc.as_object()?.clone();
    out.remove("routes");
    out.remove("client");
    for key in ROUTE_KEYS {
        match route.get(*key) {
            Some(v) => out.insert((*key).to_owned(), v.clone()),
            None => out.remove(*key),
        };
    }
    Some(Value::Object(out))
}

fn is_route_key(path: &KeyPath) -> bool {
    matches!(path.segments().first(), Some(Segment::Key(k)) if ROUTE_KEYS.contains(&k.as_str()))
}

fn with_segments(mut path: KeyPath, segments: &[Segment]) -> KeyPath {
    for s in segments {
        path = match s {
            Segment::Key(k) => path.key(k),
            Segment::Index(n) => path.index(*n),
        };
    }
    path
}

/// A path of route `i`'s document as a path of the whole document.
fn to_document(i: usize, path: &KeyPath) -> KeyPath {
    if is_route_key(path) {
        with_segments(KeyPath::root().key("routes").index(i), path.segments())
    } else {
        path.clone()
    }
}

/// Paths of the whole document as paths of route `i`'s document (others dropped).
pub(crate) fn to_route(i: usize, paths: &BTreeSet<KeyPath>) -> BTreeSet<KeyPath> {
    let prefix = KeyPath::root().key("routes").index(i);
    paths
        .iter()
        .filter_map(|p| {
            if p.starts_with(&prefix) {
                Some(with_segments(KeyPath::root(), &p.segments()[prefix.segments().len()..]))
            } else if p.segments().first() == Some(&Segment::Key("routes".into())) || is_route_key(p) {
                None
            } else {
                Some(p.clone())
            }
        })
        .collect()
}

/// Fills each route's `sso.resource`, `workload_identity.resource` and `dpop.origin` from the
/// route's own `resource`, as the top level's are filled from its own.
pub(crate) fn inherit(doc: &mut Value, secrets: &mut BTreeSet<KeyPath>, fill: fn(&mut Value, &mut BTreeSet<KeyPath>)) {
    let Some(routes) = doc.get_mut("routes").and_then(Value::as_array_mut) else { return };
    for (i, route) in routes.iter_mut().enumerate() {
        let mut route_secrets = to_route(i, secrets);
        fill(route, &mut route_secrets);
        secrets.extend(route_secrets.iter().filter(|p| is_route_key(p)).map(|p| to_document(i, p)));
    }
}

/// Runs every check on each route's document, reporting at the route's keys (a problem of the
/// shared sections is reported once, by the top level's run); then that no two servers share a
/// path.
pub(crate) fn check(doc: &Value, secrets: &BTreeSet<KeyPath>, broken: &BTreeSet<KeyPath>, problems: &mut Vec<Problem>) {
    let count = doc.get("routes").and_then(Value::as_array).map_or(0, Vec::len);
    let top_level: Vec<(KeyPath, String)> = problems.iter().map(|p| (p.path.clone(), p.expected.clone())).collect();
    for i in 0..count {
        let Some(route) = route_doc(doc, i) else { continue };
        let (route_secrets, route_broken) = (to_route(i, secrets), to_route(i, broken));
        let mut checker = Checker::new(&route, &route_secrets, &route_broken);
        checker.run();
        for mut problem in checker.problems {
            if is_route_key(&problem.path) {
                problem.path = to_document(i, &problem.path);
            } else if top_level.iter().any(|(path, expected)| *path == problem.path && *expected == problem.expected) {
                continue; // a shared section's problem, reported once by the top level's run
            } else {
                // a shared setting that does not fit this route (say a public listener for a route
                // without authentication)
                problem.found = format!("{} (for routes[{i}])", problem.found);
            }
            problems.push(problem);
        }
    }
    // rate-limit names are unique in the whole document: replicas sharing Redis count by name
    let mut names: Vec<String> = Vec::new();
    let lists = std::iter::once((KeyPath::parse("rate_limits"), doc.get("rate_limits"))).chain((0..count).map(|i| {
        (KeyPath::root().key("routes").index(i).key("rate_limits"), doc.pointer(&format!("/routes/{i}/rate_limits")))
    }));
    for (list_path, list) in lists {
        let Some(list) = list.and_then(Value::as_array) else { continue };
        let mut own = Vec::new();
        for (j, limit) in list.iter().enumerate() {
            let Some(name) = limit.get("name").and_then(Value::as_str) else { continue };
            let path = list_path.index(j).key("name");
            if names.iter().any(|n| n == name) && !own.contains(&name) {
                problems.push(Problem {
                    kind: DiagnosticKind::Conflict,
                    path,
                    expected: "a rate-limit name no other route uses (replicas sharing Redis count by name)".into(),
                    found: format!("{name:?}"),
                    at_key: false,
                });
            }
            own.push(name);
        }
        names.extend(own.into_iter().map(str::to_owned));
    }
    let mut seen: Vec<(String, KeyPath)> = Vec::new();
    let resources = std::iter::once((KeyPath::parse("resource"), doc.get("resource"))).chain((0..count).map(|i| {
        (KeyPath::root().key("routes").index(i).key("resource"), doc.pointer(&format!("/routes/{i}/resource")))
    }));
    for (path, resource) in resources {
        let Some(path_of) =
            resource.and_then(Value::as_str).and_then(|r| r.parse::<http::Uri>().ok()).map(|u| u.path().to_owned())
        else {
            continue;
        };
        if broken.iter().any(|b| b.starts_with(&path)) {
            continue;
        }
        if let Some((_, first)) = seen.iter().find(|(p, _)| *p == path_of) {
            problems.push(Problem {
                kind: DiagnosticKind::Conflict,
                path: path.clone(),
                expected: format!("a resource whose path is not already served ({first} is at {path_of})"),
                found: format!("{:?}", resource.and_then(Value::as_str).unwrap_or_default()),
                at_key: false,
            });
        } else {
            seen.push((path_of, path));
        }
    }
}
