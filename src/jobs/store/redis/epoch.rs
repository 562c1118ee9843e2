//! The store's epoch on Redis: read (or made) at connection and checked
//! every second, so a Redis that lost its data is noticed, reported once,
//! and its old jobs' ids answer 410 `job_lost`.

use std::time::Instant;

use super::scripts::{epoch_key, epochs_key};
use super::{RedisStore, EPOCH_EVERY};
use crate::jobs::store::{new_epoch, StoreError};

impl RedisStore {
    /// The epoch as last read (empty before the first read).
    pub fn epoch(&self) -> String {
        self.epoch.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Reads the store's epoch, making one if it has none. A store that
    /// has none while this instance knew one has lost its data (a restart
    /// without persistence, a flush): said at error level, counted, and the
    /// old epoch is kept as a past one so its jobs' ids answer `job_lost`.
    pub async fn check_epoch(&self) -> Result<String, StoreError> {
        let known = self.epoch();
        let (epoch, created): (String, i64) = self
            .scripts
            .epoch
            .key(epoch_key())
            .key(epochs_key())
            .arg(new_epoch())
            .arg(&known)
            .invoke_async(&mut self.conn.clone())
            .await?;
        if let Ok(mut t) = self.epoch_checked.lock() {
            *t = Some(Instant::now());
        }
        if !known.is_empty() && epoch != known {
            let running: Vec<String> = self
                .running_here
                .lock()
                .map(|r| r.iter().cloned().collect())
                .unwrap_or_default();
            if created == 1 {
                self.metrics.job_store_resets.inc();
                tracing::error!(
                    old_epoch = %known,
                    new_epoch = %epoch,
                    lost_running = ?running,
                    "the Redis job store lost its data (restarted without persistence, or \
                     flushed): every job accepted before is gone, and its id answers 410 \
                     job_lost. See the README for the Redis settings that keep jobs"
                );
            } else {
                tracing::warn!(old_epoch = %known, new_epoch = %epoch, "the Redis job store has a new epoch (it lost its data; another instance reported it)");
            }
        }
        if let Ok(mut e) = self.epoch.lock() {
            e.clone_from(&epoch);
        }
        Ok(epoch)
    }

    /// The epoch, read now if it is unknown or due for a check.
    pub async fn current_epoch(&self) -> Result<String, StoreError> {
        let due = self
            .epoch_checked
            .lock()
            .map(|t| t.is_none_or(|t| t.elapsed() >= EPOCH_EVERY))
            .unwrap_or(true);
        if due || self.epoch().is_empty() {
            self.check_epoch().await
        } else {
            Ok(self.epoch())
        }
    }

    /// Whether `epoch` is one this store had before it lost its data.
    pub async fn was_epoch(&self, epoch: &str) -> Result<bool, StoreError> {
        let known: bool = ::redis::cmd("SISMEMBER")
            .arg(epochs_key())
            .arg(epoch)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(known)
    }
}
