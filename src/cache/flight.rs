//! Single flight: concurrent identical misses run the op once.
//!
//! The first request for a key that is not cached becomes its leader and
//! runs the op; the others wait for the leader's entry. A leader that fails
//! (an error answer) or goes away (its client left, so its request was
//! dropped) hands nothing over: each waiter then runs the op itself, as it
//! would have without the cache. Waiting never outlives the leader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::disk::Entry;

type Slot = Option<Arc<Entry>>;

/// Keys being computed now, each with the channel its result comes on.
#[derive(Default)]
pub struct Flights {
    running: Mutex<HashMap<String, watch::Receiver<Slot>>>,
}

/// What a miss does: lead, or wait for the leader.
pub enum Flight {
    Leader(Leader),
    Waiter(watch::Receiver<Slot>),
}

/// The leader's side: [`Leader::done`] shares the result; dropping it
/// without that releases the waiters empty-handed.
pub struct Leader {
    flights: Arc<Flights>,
    key: String,
    tx: watch::Sender<Slot>,
}

impl Flights {
    pub fn join(self: &Arc<Self>, key: &str) -> Flight {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = running.get(key) {
            // A leader whose request was dropped leaves a closed channel
            // until its guard's drop runs; do not wait on that one.
            if rx.has_changed().is_ok() {
                return Flight::Waiter(rx.clone());
            }
        }
        let (tx, rx) = watch::channel(None);
        running.insert(key.to_string(), rx);
        Flight::Leader(Leader {
            flights: self.clone(),
            key: key.to_string(),
            tx,
        })
    }

    /// Keys being computed now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.running.lock().map_or(0, |r| r.len())
    }
}

impl Leader {
    /// Shares `entry` with every waiter.
    pub fn done(self, entry: Arc<Entry>) {
        let _ = self.tx.send(Some(entry));
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut running = self
            .flights
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Only our own channel: a new leader may have replaced it.
        if running
            .get(&self.key)
            .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
        {
            running.remove(&self.key);
        }
    }
}

/// Waits for the leader: its entry, or `None` when it failed or left.
pub async fn wait(mut rx: watch::Receiver<Slot>) -> Option<Arc<Entry>> {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone(),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry() -> Arc<Entry> {
        Arc::new(Entry {
            content_type: "image/png".into(),
            headers: vec![],
            body: Bytes::from_static(b"x"),
        })
    }

    #[tokio::test]
    async fn waiters_get_the_leaders_result_or_nothing() {
        let f = Arc::new(Flights::default());
        let Flight::Leader(lead) = f.join("k") else {
            panic!("first is the leader")
        };
        let Flight::Waiter(w1) = f.join("k") else {
            panic!("second waits")
        };
        let Flight::Waiter(w2) = f.join("k") else {
            panic!("third waits")
        };
        lead.done(entry());
        assert_eq!(wait(w1).await, Some(entry()));
        assert_eq!(wait(w2).await, Some(entry()));
        assert_eq!(f.len(), 0);

        // A leader that goes away: its waiter is released with nothing,
        // and the next request leads.
        let Flight::Leader(lead) = f.join("k") else {
            panic!("leader")
        };
        let Flight::Waiter(w) = f.join("k") else {
            panic!("waiter")
        };
        drop(lead);
        assert_eq!(wait(w).await, None);
        assert!(matches!(f.join("k"), Flight::Leader(_)));
    }
}
