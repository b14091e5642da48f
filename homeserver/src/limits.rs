//! How many request bodies of not-yet-authenticated senders are read at once: a few per client
//! address, and a bounded number in all, so that slow senders can neither exhaust memory nor,
//! from one address, take every slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Slots for unauthenticated body reads.
#[derive(Debug)]
pub struct UnauthenticatedReads {
    total: usize,
    per_address: usize,
    /// Reads under way: in all, and per client address.
    under_way: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// A slot, given back when dropped.
#[derive(Debug)]
pub struct ReadSlot {
    reads: Arc<UnauthenticatedReads>,
    address: IpAddr,
}

impl UnauthenticatedReads {
    /// At most `total` reads at once, and `per_address` from one client address.
    pub fn new(total: usize, per_address: usize) -> Self {
        Self {
            total: total.max(1),
            per_address: per_address.max(1),
            under_way: Mutex::new((0, HashMap::new())),
        }
    }

    /// A slot for a read from `address`, or `None` if none is free.
    pub fn try_take(self: &Arc<Self>, address: IpAddr) -> Option<ReadSlot> {
        let mut under_way = self.under_way.lock().ok()?;
        let (total, by_address) = &mut *under_way;
        let mine = by_address.get(&address).copied().unwrap_or(0);
        if *total >= self.total || mine >= self.per_address {
            return None;
        }
        *total += 1;
        by_address.insert(address, mine + 1);
        Some(ReadSlot { reads: Arc::clone(self), address })
    }
}

impl Drop for ReadSlot {
    fn drop(&mut self) {
        if let Ok(mut under_way) = self.reads.under_way.lock() {
            let (total, by_address) = &mut *under_way;
            *total = total.saturating_sub(1);
            if let Some(mine) = by_address.get_mut(&self.address) {
                *mine -= 1;
                if *mine == 0 {
                    by_address.remove(&self.address);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_in_all_and_per_address() {
        let reads = Arc::new(UnauthenticatedReads::new(3, 2));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = reads.try_take(a).unwrap();
        let _second = reads.try_take(a).unwrap();
        assert!(reads.try_take(a).is_none(), "two per address");
        let _third = reads.try_take(b).unwrap();
        assert!(reads.try_take(b).is_none(), "three in all");
        drop(first);
        assert!(reads.try_take(b).is_some(), "a slot given back is free again");
    }
}
