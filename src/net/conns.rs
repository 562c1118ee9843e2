//! Idle connections to sources, kept for the next fetch from the same
//! place (HTTP keep-alive): a thumbnail service fetches many images from a
//! few origins, and a fresh TCP and TLS handshake for each costs both
//! sides more than the bytes.
//!
//! A connection is filed under the scheme, the host name (the TLS server
//! name it was checked for) and the address the guard approved for this
//! hop, so a connection is only ever reused for a request that the guard
//! would send to that very address. Bounded: a few idle connections per
//! place, 128 in all, each dropped after 30 s idle.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;

const MAX_IDLE_PER_PLACE: usize = 4;
const MAX_IDLE: usize = 128;
const IDLE_FOR: Duration = Duration::from_secs(30);

/// Where a connection goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Place {
    pub tls: bool,
    pub host: String,
    pub addr: SocketAddr,
}

type Sender = SendRequest<Full<Bytes>>;

/// The idle connections.
#[derive(Default)]
pub struct Conns {
    idle: Mutex<HashMap<Place, Vec<(Sender, Instant)>>>,
}

impl std::fmt::Debug for Conns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conns({} idle)", self.len())
    }
}

impl Conns {
    /// An idle connection to `place`, if one is still open.
    pub fn take(&self, place: &Place) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(place)?;
        let found = loop {
            match list.pop() {
                Some((s, since)) if !s.is_closed() && since.elapsed() < IDLE_FOR => break Some(s),
                Some(_) => continue,
                None => break None,
            }
        };
        if list.is_empty() {
            idle.remove(place);
        }
        found
    }

    /// Keeps `sender` for the next request to `place` (a response read to
    /// its end), unless closed or there is no room.
    pub fn put(&self, place: Place, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        for list in idle.values_mut() {
            list.retain(|(s, since)| !s.is_closed() && since.elapsed() < IDLE_FOR);
        }
        idle.retain(|_, list| !list.is_empty());
        let total: usize = idle.values().map(Vec::len).sum();
        let list = idle.entry(place).or_default();
        if total < MAX_IDLE && list.len() < MAX_IDLE_PER_PLACE {
            list.push((sender, Instant::now()));
        }
    }

    /// Idle connections held now.
    pub fn len(&self) -> usize {
        self.idle
            .lock()
            .map_or(0, |idle| idle.values().map(Vec::len).sum())
    }
}
