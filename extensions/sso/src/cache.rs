//! A bounded cache of validated tokens, keyed by the SHA-256 of the token, so repeat calls skip the
//! signature check (or the introspection round trip) until the token expires.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::verify::ValidatedToken;

#[derive(Debug)]
struct State {
    map: HashMap<[u8; 32], (Arc<ValidatedToken>, Duration)>,
    order: VecDeque<[u8; 32]>,
}

/// Validated tokens until their expiry, at most `capacity` of them.
#[derive(Debug)]
pub(crate) struct TokenCache {
    capacity: usize,
    state: Mutex<State>,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity, state: Mutex::new(State { map: HashMap::new(), order: VecDeque::new() }) }
    }

    pub(crate) fn get(&self, digest: &[u8; 32], now: Duration) -> Option<Arc<ValidatedToken>> {
        if self.capacity == 0 {
            return None;
        }
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match st.map.get(digest) {
            Some((p, until)) if now < *until => Some(p.clone()),
            Some(_) => {
                st.map.remove(digest);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&self, digest: [u8; 32], principal: Arc<ValidatedToken>, until: Duration, now: Duration) {
        if self.capacity == 0 || until <= now {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.map.len() >= self.capacity {
            st.map.retain(|_, (_, u)| *u > now);
        }
        while st.map.len() >= self.capacity {
            let Some(oldest) = st.order.pop_front() else { break };
            st.map.remove(&oldest);
        }
        if st.map.insert(digest, (principal, until)).is_none() {
            st.order.push_back(digest);
        }
        if st.order.len() > self.capacity.saturating_mul(2).max(16) {
            let State { map, order } = &mut *st;
            order.retain(|k| map.contains_key(k));
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).map.len()
    }
}

#[cfg(test)]
mod tests {
    use mcp_enterprise_core::{AuthMethod, PrincipalKind};

    use super::*;

    #[test]
    fn bounded_and_expiring() {
        let c = TokenCache::new(2);
        let principal =
            mcp_enterprise_core::Principal::builder("i", "s", PrincipalKind::User, AuthMethod::Bearer).build();
        let p = Arc::new(ValidatedToken { principal, jkt: None });
        let t = Duration::from_secs;
        c.insert([1; 32], p.clone(), t(100), t(0));
        c.insert([2; 32], p.clone(), t(100), t(0));
        c.insert([3; 32], p.clone(), t(100), t(0));
        assert_eq!(c.len(), 2);
        assert!(c.get(&[1; 32], t(1)).is_none(), "oldest evicted");
        assert!(c.get(&[3; 32], t(1)).is_some());
        assert!(c.get(&[3; 32], t(100)).is_none(), "expired");
        c.insert([4; 32], p.clone(), t(5), t(10));
        assert!(c.get(&[4; 32], t(1)).is_none(), "already expired entries are not stored");
        let off = TokenCache::new(0);
        off.insert([1; 32], p, t(100), t(0));
        assert!(off.get(&[1; 32], t(1)).is_none());
    }
}
