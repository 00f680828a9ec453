//! A bounded map from legacy `Mcp-Session-Id` to what the client declared at `initialize`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use crate::message::ClientDeclaration;

pub(crate) struct SessionStore {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    map: HashMap<String, Arc<ClientDeclaration>>,
    // insertion order, for evicting the oldest session; may hold keys already removed
    order: VecDeque<String>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // what clients declared is theirs: show only the size
        f.debug_struct("SessionStore").field("capacity", &self.capacity).field("len", &self.lock().map.len()).finish()
    }
}

impl SessionStore {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity, state: Mutex::new(State::default()) }
    }

    pub(crate) fn get(&self, session_id: &str) -> Option<Arc<ClientDeclaration>> {
        self.lock().map.get(session_id).cloned()
    }

    pub(crate) fn insert(&self, session_id: String, declaration: Arc<ClientDeclaration>) {
        let mut state = self.lock();
        let State { map, order } = &mut *state;
        if map.insert(session_id.clone(), declaration).is_none() {
            order.push_back(session_id);
        }
        while map.len() > self.capacity {
            match order.pop_front() {
                Some(oldest) => {
                    map.remove(&oldest);
                }
                None => break,
            }
        }
        if order.len() > self.capacity.saturating_mul(2).max(16) {
            order.retain(|k| map.contains_key(k));
        }
    }

    pub(crate) fn remove(&self, session_id: &str) {
        self.lock().map.remove(session_id);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn bounded_and_evicts_oldest() {
        let store = SessionStore::new(2);
        let d = Arc::new(ClientDeclaration::new(Value::Null, None));
        store.insert("a".into(), d.clone());
        store.insert("b".into(), d.clone());
        store.insert("c".into(), d.clone());
        assert_eq!(store.len(), 2);
        assert!(store.get("a").is_none());
        assert!(store.get("c").is_some());
        store.remove("b");
        assert!(store.get("b").is_none());
        for i in 0..1000 {
            store.insert(format!("s{i}"), d.clone());
            store.remove(&format!("s{i}"));
        }
        assert!(store.lock().order.len() <= 16 + 1);
    }
}
