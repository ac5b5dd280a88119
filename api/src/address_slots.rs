//! Anonymous requests in progress per client address: each address's share of the request slots (see
//! `anonymous`, the middleware that takes them). Plain data, importing nothing of the crate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

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
