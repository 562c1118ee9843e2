//! Setting a Redis up for jobs: its consumer group, and a check of the
//! settings that decide whether it keeps them.

use ::redis::aio::ConnectionManager;
use ::redis::RedisError;

use super::scripts::{stream_key, GROUP};
use crate::jobs::JobsError;

/// Checks the server's settings before trusting it with jobs. An eviction
/// policy that may drop keys (anything but `noeviction`, with a
/// `maxmemory` set) would lose accepted jobs without a word: refused. No
/// persistence at all (`appendonly no` and no `save` points) loses every
/// job at a restart: warned about (the store epoch then reports it). A
/// server that hides `CONFIG` (some managed services) is trusted, with a
/// warning.
pub(super) async fn check_config(conn: ConnectionManager) -> Result<(), JobsError> {
    let get = |name: &'static str| {
        let mut conn = conn.clone();
        async move {
            let pair: Result<Vec<String>, RedisError> = ::redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async(&mut conn)
                .await;
            pair.map(|p| p.get(1).cloned().unwrap_or_default())
        }
    };
    let (policy, maxmemory) = match (get("maxmemory-policy").await, get("maxmemory").await) {
        (Ok(p), Ok(m)) => (p, m),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(
                "cannot read the redis configuration ({e}); make sure maxmemory-policy is \
                 noeviction, or accepted jobs may be evicted"
            );
            return Ok(());
        }
    };
    let limited = maxmemory.trim().parse::<u64>().map_or(true, |m| m > 0);
    if limited && policy != "noeviction" {
        return Err(JobsError::Store(format!(
            "redis has maxmemory {maxmemory} with maxmemory-policy {policy}: it may evict job \
             keys and lose accepted jobs without a word. Set maxmemory-policy noeviction \
             (writes then fail, and pixfork answers 503), or give jobs a Redis of their own"
        )));
    }
    let appendonly = get("appendonly").await.unwrap_or_default();
    let save = get("save").await.unwrap_or_default();
    if appendonly != "yes" && save.trim().is_empty() {
        tracing::warn!(
            "redis has no persistence (appendonly no, no save points): a restart of it loses \
             every queued and finished job. Set appendonly yes (appendfsync everysec or \
             always) to keep jobs across restarts"
        );
    }
    Ok(())
}

/// Creates the stream and the consumer group unless they exist. From id 0:
/// a group made after entries were added must still deliver them.
pub(super) async fn create_group(mut conn: ConnectionManager) -> Result<(), RedisError> {
    let r: Result<(), RedisError> = ::redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream_key())
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await;
    match r {
        Err(e) if e.code() != Some("BUSYGROUP") => Err(e),
        _ => Ok(()),
    }
}
