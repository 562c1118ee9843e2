//! The keys pixfork uses in Redis and the Lua scripts that change a
//! claimed job atomically (each checks the claim token first).

use std::time::Duration;

use ::redis::Script;

pub(super) const PREFIX: &str = "pixfork";
pub(super) const GROUP: &str = "pixfork-runners";
pub(super) fn stream_key() -> String {
    format!("{PREFIX}:jobs:stream")
}
pub(super) fn set_key(status: &str) -> String {
    format!("{PREFIX}:jobs:{status}")
}
pub(super) fn job_key(id: &str) -> String {
    format!("{PREFIX}:job:{id}")
}
pub(super) fn input_key(id: &str) -> String {
    format!("{PREFIX}:job:{id}:input")
}
pub(super) fn result_key(id: &str) -> String {
    format!("{PREFIX}:job:{id}:result")
}
pub(super) fn gone_key(id: &str) -> String {
    format!("{PREFIX}:job:{id}:gone")
}
pub(super) fn epoch_key() -> String {
    format!("{PREFIX}:epoch")
}
pub(super) fn epochs_key() -> String {
    format!("{PREFIX}:epochs")
}
/// Bytes of inputs and results held, kept by every script that adds or
/// drops one (and recounted now and then by [`RECOUNT`]).
pub(super) fn bytes_key() -> String {
    format!("{PREFIX}:jobs:bytes")
}

/// Stores a new job unless `--max-queued-jobs` or `--max-job-bytes` would
/// be passed: checked and written in one step, so the limits hold exactly
/// with any number of instances.
pub(super) const SUBMIT: &str = r#"
-- KEYS: 1 hash, 2 input, 3 queued, 4 stream, 5 bytes
-- ARGV: 1 id, 2 op, 3 query, 4 created ms, 5 input, 6 max queued, 7 max bytes
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[6]) then return 'too_many_jobs' end
local len = string.len(ARGV[5])
local held = tonumber(redis.call('GET', KEYS[5]) or '0')
if held + len > tonumber(ARGV[7]) then return 'too_many_bytes' end
redis.call('SET', KEYS[2], ARGV[5])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'op', ARGV[2], 'query', ARGV[3],
  'status', 'queued', 'created_ms', ARGV[4], 'attempts', 0, 'crashes', 0,
  'in_bytes', len, 'out_bytes', 0)
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('INCRBY', KEYS[5], len)
redis.call('XADD', KEYS[4], '*', 'id', ARGV[1])
return 'stored'
"#;

/// Sets the byte counter to what the jobs' hashes say: inputs of queued and
/// running jobs, results of done ones. Heals drift (keys that expired while
/// no instance was sweeping). O(jobs), so run rarely.
pub(super) const RECOUNT: &str = r#"
-- KEYS: 1 queued, 2 running, 3 done, 4 bytes ; ARGV: 1 key prefix
local total = 0
for i, set in ipairs({KEYS[1], KEYS[2], KEYS[3]}) do
  local field = 'in_bytes'
  if i == 3 then field = 'out_bytes' end
  for _, id in ipairs(redis.call('ZRANGE', set, 0, -1)) do
    total = total + tonumber(redis.call('HGET', ARGV[1] .. id, field) or '0')
  end
end
redis.call('SET', KEYS[4], total)
return total
"#;

/// Takes a stream entry for this instance. `skip`: the job was deleted or
/// already finished (the entry is dropped). A job found `running` was cut
/// off on a dead instance: one more crash, and poison at the limit.
pub(super) const CLAIM: &str = r#"
-- KEYS: 1 hash, 2 stream, 3 queued, 4 running, 5 failed, 6 input, 7 gone, 8 bytes
-- ARGV: 1 group, 2 entry, 3 token, 4 instance, 5 now, 6 max crashes,
--       7 poison message, 8 keep ms, 9 tombstone ms, 10 id, 11 poison status, 12 poison code,
--       13 '1' when this instance runs no such job now
local st = redis.call('HGET', KEYS[1], 'status')
if (not st) or st == 'done' or st == 'failed' then
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[2], ARGV[2])
  return {'skip'}
end
if st == 'running' and ARGV[13] == '1' and redis.call('HGET', KEYS[1], 'instance') == ARGV[4] then
  -- This instance's own claim, whose answer never reached it: the same
  -- attempt goes on under a new token, no crash counted.
  redis.call('HSET', KEYS[1], 'token', ARGV[3], 'started_ms', ARGV[5], 'entry', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'lost_replies', 1)
  local r = redis.call('HMGET', KEYS[1], 'op', 'query', 'attempts', 'crashes')
  return {'resume', r[1], r[2], tonumber(r[3] or '1'), tonumber(r[4] or '0'), redis.call('GET', KEYS[6])}
end
local previous = redis.call('HGET', KEYS[1], 'instance') or ''
if st == 'running' then
  local crashes = redis.call('HINCRBY', KEYS[1], 'crashes', 1)
  if crashes >= tonumber(ARGV[6]) then
    redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_ms', ARGV[5],
      'error_status', ARGV[11], 'error_code', ARGV[12], 'error_message', ARGV[7])
    redis.call('HDEL', KEYS[1], 'token')
    redis.call('ZREM', KEYS[4], ARGV[10])
    redis.call('ZREM', KEYS[3], ARGV[10])
    redis.call('ZADD', KEYS[5], ARGV[5], ARGV[10])
    redis.call('DEL', KEYS[6])
    redis.call('DECRBY', KEYS[8], tonumber(redis.call('HGET', KEYS[1], 'in_bytes') or '0'))
    redis.call('HSET', KEYS[1], 'in_bytes', 0)
    redis.call('PEXPIRE', KEYS[1], ARGV[8])
    redis.call('SET', KEYS[7], '1', 'PX', ARGV[9])
    redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
    redis.call('XDEL', KEYS[2], ARGV[2])
    return {'poisoned'}
  end
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'token', ARGV[3], 'instance', ARGV[4],
  'started_ms', ARGV[5], 'entry', ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[10])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[10])
local f = redis.call('HMGET', KEYS[1], 'op', 'query', 'crashes')
local input = redis.call('GET', KEYS[6])
if st == 'running' then
  return {'takeover', f[1], f[2], attempts, tonumber(f[3] or '0'), input, previous}
end
return {'run', f[1], f[2], attempts, tonumber(f[3] or '0'), input}
"#;

/// The store's epoch: read it, or make one when the store has none (new,
/// or its data was lost). `ARGV[2]`, the epoch this instance knew, goes to
/// the set of past epochs, so its jobs' ids answer 410 `job_lost`.
pub(super) const EPOCH: &str = r#"
-- KEYS: 1 epoch, 2 epochs ; ARGV: 1 a new epoch, 2 the epoch this instance knew or ''
local cur = redis.call('GET', KEYS[1])
if ARGV[2] ~= '' then redis.call('SADD', KEYS[2], ARGV[2]) end
if cur then
  redis.call('SADD', KEYS[2], cur)
  return {cur, 0}
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
return {ARGV[1], 1}
"#;

/// Keeps a running job's entry fresh (idle time 0) while the claim is ours.
pub(super) const HEARTBEAT: &str = r#"
-- KEYS: 1 hash, 2 stream ; ARGV: 1 token, 2 group, 3 consumer, 4 entry
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('XCLAIM', KEYS[2], ARGV[2], ARGV[3], 0, ARGV[4], 'JUSTID')
return 1
"#;

/// Writes the end of a run if the claim is still ours, and acknowledges
/// and drops its stream entry in the same step.
pub(super) const FINISH: &str = r#"
-- KEYS: 1 hash, 2 stream, 3 running, 4 done|failed set, 5 input, 6 result, 7 gone, 8 bytes
-- ARGV: 1 token, 2 group, 3 entry, 4 id, 5 now, 6 keep ms, 7 tombstone ms, 8 status,
--       9 result bytes, 10 error status, 11 error code, 12 error message,
--       13 content type, 14 width, 15 height, 16 frames
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[8], 'finished_ms', ARGV[5],
  'error_status', ARGV[10], 'error_code', ARGV[11], 'error_message', ARGV[12],
  'content_type', ARGV[13], 'width', ARGV[14], 'height', ARGV[15], 'frames', ARGV[16])
redis.call('HDEL', KEYS[1], 'token')
redis.call('ZREM', KEYS[3], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])
redis.call('DEL', KEYS[5])
redis.call('DECRBY', KEYS[8], tonumber(redis.call('HGET', KEYS[1], 'in_bytes') or '0'))
redis.call('HSET', KEYS[1], 'in_bytes', 0)
if ARGV[8] == 'done' then
  redis.call('SET', KEYS[6], ARGV[9], 'PX', ARGV[6])
  redis.call('HSET', KEYS[1], 'out_bytes', string.len(ARGV[9]))
  redis.call('INCRBY', KEYS[8], string.len(ARGV[9]))
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('SET', KEYS[7], '1', 'PX', ARGV[7])
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
redis.call('XDEL', KEYS[2], ARGV[3])
return 1
"#;

/// Puts a claimed job back: a fresh stream entry, so any instance may take it.
pub(super) const REQUEUE: &str = r#"
-- KEYS: 1 hash, 2 stream, 3 running, 4 queued ; ARGV: 1 token, 2 group, 3 entry, 4 id, 5 why
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if ARGV[5] == 'crash' then
  redis.call('HINCRBY', KEYS[1], 'crashes', 1)
else
  redis.call('HINCRBY', KEYS[1], 'attempts', -1)
end
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('HDEL', KEYS[1], 'token')
redis.call('ZREM', KEYS[3], ARGV[4])
redis.call('ZADD', KEYS[4], redis.call('HGET', KEYS[1], 'created_ms'), ARGV[4])
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
redis.call('XDEL', KEYS[2], ARGV[3])
redis.call('XADD', KEYS[2], '*', 'id', ARGV[4])
return 1
"#;

/// Cancels a queued job or removes a finished one. A cancelled job's stream
/// entry stays; whoever reads it finds no hash and drops it.
pub(super) const REMOVE: &str = r#"
-- KEYS: 1 hash, 2 input, 3 result, 4 gone, 5 queued, 6 done, 7 failed, 8 bytes ; ARGV: 1 id
local st = redis.call('HGET', KEYS[1], 'status')
if not st then
  if redis.call('EXISTS', KEYS[4]) == 1 then return 'expired' end
  return 'missing'
end
if st == 'running' then return 'running' end
local f = redis.call('HMGET', KEYS[1], 'in_bytes', 'out_bytes')
redis.call('DECRBY', KEYS[8], tonumber(f[1] or '0') + tonumber(f[2] or '0'))
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('ZREM', KEYS[7], ARGV[1])
return 'deleted'
"#;

/// Fails jobs queued since before the cutoff (code `expired`), expires jobs
/// finished before it (their hash and result deleted, a tombstone left so
/// their id answers 410), and forgets old tombstones. Idempotent: every
/// instance runs it. At most 1000 jobs of each kind a run.
pub(super) const SWEEP: &str = r#"
-- KEYS: 1 done, 2 failed, 3 expired, 4 queued, 5 bytes
-- ARGV: 1 cutoff, 2 now, 3 forget before, 4 key prefix, 5 tombstone ms,
--       6 expired status, 7 expired code, 8 expired message, 9 keep ms
local n = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 1000)) do
  local h = ARGV[4] .. id
  if redis.call('HGET', h, 'status') == 'queued' then
    redis.call('DECRBY', KEYS[5], tonumber(redis.call('HGET', h, 'in_bytes') or '0'))
    redis.call('HSET', h, 'status', 'failed', 'finished_ms', ARGV[2], 'in_bytes', 0,
      'error_status', ARGV[6], 'error_code', ARGV[7], 'error_message', ARGV[8])
    redis.call('DEL', h .. ':input')
    redis.call('PEXPIRE', h, ARGV[9])
    redis.call('SET', h .. ':gone', '1', 'PX', ARGV[5])
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    n = n + 1
  end
  redis.call('ZREM', KEYS[4], id)
end
for _, k in ipairs({KEYS[1], KEYS[2]}) do
  local ids = redis.call('ZRANGEBYSCORE', k, '-inf', '(' .. ARGV[1], 'LIMIT', 0, 1000)
  for _, id in ipairs(ids) do
    local h = ARGV[4] .. id
    redis.call('DECRBY', KEYS[5], tonumber(redis.call('HGET', h, 'out_bytes') or '0'))
    redis.call('DEL', h, h .. ':result', h .. ':input')
    redis.call('SET', h .. ':gone', '1', 'PX', ARGV[5])
    redis.call('ZADD', KEYS[3], ARGV[2], id)
    redis.call('ZREM', k, id)
    n = n + 1
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[3])
return n
"#;

/// Forgets a consumer of a dead instance, but only while it holds no
/// pending entry: checked and done in one step, so no claim is ever lost.
pub(super) const FORGET_CONSUMER: &str = r#"
-- KEYS: 1 stream ; ARGV: 1 group, 2 consumer
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
"#;

/// A consumer idle this long with nothing pending belongs to an instance
/// that is gone (a live one polls every second); it is forgotten so the
/// group does not grow with every restart.
pub(super) const CONSUMER_FORGET: Duration = Duration::from_secs(600);

pub(super) struct Scripts {
    pub epoch: Script,
    pub submit: Script,
    pub recount: Script,
    pub claim: Script,
    pub heartbeat: Script,
    pub finish: Script,
    pub requeue: Script,
    pub remove: Script,
    pub sweep: Script,
    pub forget_consumer: Script,
}

impl Scripts {
    /// The scripts, hashed once; each call sends `EVALSHA` and falls back to
    /// `EVAL` when the server has not seen it (after a restart, say).
    pub(super) fn load() -> Scripts {
        Scripts {
            epoch: Script::new(EPOCH),
            submit: Script::new(SUBMIT),
            recount: Script::new(RECOUNT),
            claim: Script::new(CLAIM),
            heartbeat: Script::new(HEARTBEAT),
            finish: Script::new(FINISH),
            requeue: Script::new(REQUEUE),
            remove: Script::new(REMOVE),
            sweep: Script::new(SWEEP),
            forget_consumer: Script::new(FORGET_CONSUMER),
        }
    }
}
