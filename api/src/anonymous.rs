//! Limits on anonymous calls: requests that carry no access, queue or admin token (sign-up, the public
//! catalog, the web app's files). Nothing identifies their sender but the client address, so they are
//! limited per address (an IPv6 /64 counts as one): a rate (429 `RATE_LIMITED`) and a share of the request
//! slots in progress (503 `UNAVAILABLE`), so neither a flood nor slow clients from one address can take the
//! slots every fan shares. Calls with a token are limited per user, never per address: many fans share an
//! address behind a carrier's NAT. `/healthz`, `/readyz` and `/metrics` are never limited.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::extract::client_addr;
use crate::rate_limits::client_network;
use crate::state::AppState;

/// Anonymous requests in progress per client network.
pub struct AddressSlots {
    per_address: usize,
    in_use: Mutex<HashMap<IpAddr, usize>>,
}

impl AddressSlots {
    pub fn new(per_address: usize) -> Self {
        Self {
            per_address,
            in_use: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `network`, held until the guard is dropped; `None` when its share is in use.
    pub fn acquire(self: &Arc<Self>, network: IpAddr) -> Option<SlotGuard> {
        let mut in_use = self.in_use.lock().expect("address slots lock");
        let used = in_use.entry(network).or_insert(0);
        if *used >= self.per_address {
            return None;
        }
        *used += 1;
        Some(SlotGuard {
            slots: self.clone(),
            network,
        })
    }

    /// Addresses with a request in progress (an entry is dropped with its last slot).
    pub fn addresses(&self) -> usize {
        self.in_use.lock().expect("address slots lock").len()
    }
}

pub struct SlotGuard {
    slots: Arc<AddressSlots>,
    network: IpAddr,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut in_use = self.slots.in_use.lock().expect("address slots lock");
        if let Some(used) = in_use.get_mut(&self.network) {
            *used -= 1;
            if *used == 0 {
                in_use.remove(&self.network);
            }
        }
    }
}

/// Does the request carry a token that identifies its sender (checked or not: a bad token is refused by
/// the handler, and counted against nobody's address)?
fn carries_a_token(request: &Request) -> bool {
    let headers = request.headers();
    headers.contains_key(header::AUTHORIZATION)
        || headers.contains_key("x-queue-token")
        || request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("queue_token=")))
}

/// The middleware: anonymous requests pass the address's rate and take one of its slots.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if crate::shedding::operational(request.uri().path()) || carries_a_token(&request) {
        return next.run(request).await;
    }
    let addr = client_addr(
        request.headers(),
        request.extensions(),
        state.config.trust_forwarded_for,
    );
    let Some(addr) = addr else {
        return next.run(request).await;
    };
    if let Err(limited) = state.limits.check_anonymous(addr) {
        return ApiError::from(limited).into_response();
    }
    let Some(_slot) = state.anonymous_slots.acquire(client_network(addr)) else {
        metrics::counter!("http_requests_shed_total", "reason" => "address_share").increment(1);
        return crate::shedding::unavailable(
            "too many requests in progress from your address, try again shortly",
        );
    };
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_share_and_gives_it_back() {
        let slots = Arc::new(AddressSlots::new(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = slots.acquire(a).expect("1 of 2");
        let _second = slots.acquire(a).expect("2 of 2");
        assert!(slots.acquire(a).is_none(), "the share is used");
        let _other = slots.acquire(b).expect("another address has its own share");
        drop(first);
        assert!(
            slots.acquire(a).is_some(),
            "a slot given back is free again"
        );
        drop(_other);
        assert_eq!(
            slots.addresses(),
            1,
            "an address with nothing in progress is forgotten"
        );
    }
}
