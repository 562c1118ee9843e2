//! The result cache: finished results on disk, so a repeat request never
//! touches a worker.
//!
//! Results are keyed by the same identity as their `ETag` (the source, the
//! canonical op list and output, the version), so a key names its bytes
//! for good: an entry is never stale, only evicted. Entries are kept
//! across restarts under `--cache-dir`, evicted least recently used once
//! they pass `--cache-size` bytes, and checked on every read (a damaged
//! entry is dropped and recomputed, never served; see [`disk`]).
//! Concurrent identical misses run the op once ([`flight`]).
//!
//! A URL source's current version is remembered while its origin says it
//! is fresh ([`sources`]), so a hit by URL need not fetch it.
//!
//! The index (key, size, order of use) lives in memory and is rebuilt from
//! the folder at start, ordered by the files' modification times, which a
//! hit refreshes. Disk work runs on the blocking pool, never on the event
//! loop.

mod disk;
mod flight;
mod sources;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use crate::metrics::Metrics;

pub use disk::Entry;
pub use flight::{wait, Flight, Leader};
pub use sources::SourceVersion;

/// Most entries kept, whatever their size: the index costs memory per
/// entry and the disk an inode per file.
const MAX_ENTRIES: usize = 1 << 18;

/// Largest result kept: a bigger one is served but not cached, so a hit
/// never reads more than this into memory.
pub const MAX_ENTRY_BYTES: u64 = 64 << 20;

/// What an entry of `len` bytes costs the disk: whole 4 KiB blocks and
/// its inode, so a million tiny entries are not counted as nothing.
fn on_disk(len: u64) -> u64 {
    len.div_ceil(4096) * 4096 + 512
}

/// Why the cache folder cannot be used: a boot error.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("result cache: {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Where and how much.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub dir: PathBuf,
    /// Most bytes on disk (`--cache-size`); 0 turns the cache off.
    pub max_bytes: u64,
}

/// The cache, or nothing when it is off. Cheap to clone.
#[derive(Clone)]
pub struct ResultCache {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    flights: Arc<flight::Flights>,
    sources: sources::Sources,
    metrics: Arc<Metrics>,
}

/// Keys by recency of use, with their sizes.
struct Index {
    lru: LruCache<String, u64>,
    bytes: u64,
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            None => f.write_str("ResultCache(off)"),
            Some(i) => write!(f, "ResultCache({})", i.dir.display()),
        }
    }
}

impl ResultCache {
    /// No cache: every lookup misses and nothing is kept.
    pub fn off() -> ResultCache {
        ResultCache { inner: None }
    }

    /// Opens (creating) the folder and indexes what it holds; entries past
    /// the size are evicted now (the size may have been lowered).
    pub async fn open(cfg: CacheConfig, metrics: Arc<Metrics>) -> Result<ResultCache, CacheError> {
        if cfg.max_bytes == 0 {
            return Ok(ResultCache::off());
        }
        let dir = cfg.dir.clone();
        let found = tokio::task::spawn_blocking(move || disk::scan(&dir))
            .await
            .map_err(|e| CacheError::Io {
                path: cfg.dir.display().to_string(),
                source: std::io::Error::other(e),
            })??;
        let mut index = Index {
            lru: LruCache::unbounded(),
            bytes: 0,
        };
        for (key, bytes) in found {
            let cost = on_disk(bytes);
            index.bytes += cost;
            index.lru.push(key, cost);
        }
        let inner = Arc::new(Inner {
            dir: cfg.dir,
            max_bytes: cfg.max_bytes,
            index: Mutex::new(index),
            flights: Arc::default(),
            sources: sources::Sources::default(),
            metrics,
        });
        let evicted = inner.evict_over_size();
        inner.remove_files(evicted).await;
        inner.publish();
        Ok(ResultCache { inner: Some(inner) })
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The size of the entry of `key`, if it is cached (what a hit will
    /// read into memory, at most [`MAX_ENTRY_BYTES`]).
    pub fn size_of(&self, key: &str) -> Option<u64> {
        let inner = self.inner.as_ref()?;
        let cost = *inner.lock().lru.peek(key)?;
        Some(cost.min(MAX_ENTRY_BYTES))
    }

    /// The entry of `key`, when cached and intact. A damaged or vanished
    /// entry is dropped (and counted when damaged): the caller recomputes.
    pub async fn get(&self, key: &str) -> Option<Entry> {
        let inner = self.inner.as_ref()?;
        // Known (and marked as just used), or a miss without touching disk.
        inner.lock().lru.get(key)?;
        let (dir, k) = (inner.dir.clone(), key.to_string());
        match tokio::task::spawn_blocking(move || disk::read(&dir, &k)).await {
            Ok(Ok(entry)) => Some(entry),
            Ok(Err(why)) => {
                if why == disk::ReadError::Corrupt {
                    inner.metrics.cache_corrupt.inc();
                    tracing::warn!(key, "result cache: a damaged entry was dropped");
                }
                inner.forget(key).await;
                None
            }
            Err(_) => None,
        }
    }

    /// The version of URL source `url` its origin said is current now
    /// (see [`sources`]).
    pub fn fresh_source(&self, url: &str) -> Option<SourceVersion> {
        self.inner.as_ref()?.sources.fresh(url)
    }

    /// Remembers the version of a fetched URL source for the lifetime its
    /// origin gave (`None`: no lifetime, nothing remembered).
    pub fn remember_source(
        &self,
        url: &str,
        version: SourceVersion,
        fresh_for: Option<std::time::Duration>,
    ) {
        if let (Some(inner), Some(fresh_for)) = (&self.inner, fresh_for) {
            inner.sources.remember(url, version, fresh_for);
        }
    }

    /// Whether to lead the computation of `key` or wait for its leader.
    /// Without a cache every request leads (and shares nothing).
    pub fn join(&self, key: &str) -> Option<Flight> {
        Some(self.inner.as_ref()?.flights.join(key))
    }

    /// Keeps `entry` as `key` (written in the background; the response
    /// does not wait for the disk). An entry larger than the whole cache
    /// is not kept.
    pub fn put(&self, key: String, entry: Arc<Entry>) {
        let Some(inner) = self.inner.clone() else {
            return;
        };
        if !disk::is_key(&key) {
            return;
        }
        tokio::spawn(async move {
            let (dir, k, max) = (inner.dir.clone(), key.clone(), inner.max_bytes);
            let written = tokio::task::spawn_blocking(move || {
                let bytes = disk::encode(&entry);
                if bytes.len() as u64 > max.min(MAX_ENTRY_BYTES) {
                    return Ok(None);
                }
                disk::write(&dir, &k, &bytes).map(Some)
            });
            let size = match written.await {
                Ok(Ok(Some(size))) => on_disk(size),
                Ok(Ok(None)) | Err(_) => return,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "result cache: an entry could not be written");
                    return;
                }
            };
            let evicted = {
                let mut index = inner.lock();
                if let Some(old) = index.lru.put(key, size) {
                    // Written again (two misses raced): count it once.
                    index.bytes -= old;
                }
                index.bytes += size;
                drop(index);
                inner.evict_over_size()
            };
            inner.remove_files(evicted).await;
            inner.publish();
        });
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes least recently used keys out of the index until it fits;
    /// returns them, for their files to be removed.
    fn evict_over_size(&self) -> Vec<String> {
        let mut index = self.lock();
        let mut out = Vec::new();
        while index.bytes > self.max_bytes || index.lru.len() > MAX_ENTRIES {
            let Some((key, size)) = index.lru.pop_lru() else {
                break;
            };
            index.bytes -= size;
            out.push(key);
        }
        self.metrics.cache_evictions.inc_by(out.len() as u64);
        out
    }

    async fn remove_files(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        let dir = self.dir.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for k in keys {
                disk::remove(&dir, &k);
            }
        })
        .await;
    }

    /// Drops `key` (its file is missing or damaged).
    async fn forget(&self, key: &str) {
        {
            let mut index = self.lock();
            if let Some(size) = index.lru.pop(key) {
                index.bytes -= size;
            }
        }
        self.remove_files(vec![key.to_string()]).await;
        self.publish();
    }

    fn publish(&self) {
        let index = self.lock();
        self.metrics.cache_bytes.set(index.bytes as i64);
        self.metrics.cache_entries.set(index.lru.len() as i64);
    }
}
