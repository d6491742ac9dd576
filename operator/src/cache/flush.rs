//! Prefix flush: every key under a prefix removed in batches (SCAN with MATCH, then UNLINK),
//! never with KEYS or FLUSHALL, which block Redis for the whole keyspace.
//!
//! Progress lives in Redis beside the data, in one hash per flush: the SCAN cursor and the
//! keys removed so far. Each batch's UNLINK and its progress update run in one script, so a
//! flush stopped at any point (an operator restart, a lost connection) resumes where it
//! was and counts every key exactly once.

use redis::Script;

use super::{Admin, CacheError};

/// Keys asked of each SCAN step and removed per script call: a script blocks Redis while it
/// runs, and a thousand UNLINKs keep that well under a millisecond.
pub const BATCH: usize = 1000;

/// How long the progress of a flush is kept: long enough to outlive any restart, short
/// enough that an abandoned one does not linger.
const PROGRESS_TTL_SECONDS: u64 = 7 * 24 * 3600;

/// KEYS[1]: the progress hash; KEYS[2..]: the keys of this batch. ARGV[1]: the cursor after
/// this batch; ARGV[2]: "1" when the scan is complete; ARGV[3]: the hash's TTL.
const STEP: &str = r"
local removed = 0
if #KEYS > 1 then
  removed = redis.call('UNLINK', unpack(KEYS, 2))
end
redis.call('HINCRBY', KEYS[1], 'removed', removed)
redis.call('HSET', KEYS[1], 'cursor', ARGV[1])
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'done', '1')
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return removed
";

/// The key holding a flush's progress. It sits outside any prefix a user would flush; should
/// a prefix cover it anyway, the flush skips it.
pub fn progress_key(tier_uid: &str, id: &str) -> String {
    format!("marketplace-operator:flush:{tier_uid}:{id}")
}

/// Where a flush stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Keys removed so far, across every resumption.
    pub removed: u64,
    pub done: bool,
}

/// Removes the keys starting with `prefix`, resuming the flush recorded at `progress`, for at
/// most `max_batches` SCAN steps (all of them when `None`), so a caller can bound the time one
/// call takes and report progress between calls. A flush already complete answers its count
/// again and removes nothing.
pub async fn flush_prefix(
    admin: &mut Admin,
    progress: &str,
    prefix: &str,
    batch: usize,
    max_batches: Option<usize>,
) -> Result<Progress, CacheError> {
    let address = admin.address().to_owned();
    let failed = |command: &'static str| {
        let address = address.clone();
        move |source| CacheError::Command {
            address,
            command,
            source,
        }
    };
    let (cursor, done): (Option<String>, Option<String>) = redis::cmd("HMGET")
        .arg(progress)
        .arg("cursor")
        .arg("done")
        .query_async(admin.connection())
        .await
        .map_err(failed("HMGET"))?;
    let mut cursor: u64 = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut done = done.is_some();
    if !done {
        let pattern = format!("{}*", escape_glob(prefix));
        let script = Script::new(STEP);
        let mut batches = 0;
        while max_batches.is_none_or(|most| batches < most) {
            batches += 1;
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(batch.max(1))
                .query_async(admin.connection())
                .await
                .map_err(failed("SCAN"))?;
            let mut invocation = script.prepare_invoke();
            invocation.key(progress);
            for key in keys.iter().filter(|k| k.as_str() != progress) {
                invocation.key(key);
            }
            invocation
                .arg(next)
                .arg(if next == 0 { "1" } else { "0" })
                .arg(PROGRESS_TTL_SECONDS);
            let _: u64 = invocation
                .invoke_async(admin.connection())
                .await
                .map_err(failed("UNLINK"))?;
            cursor = next;
            if cursor == 0 {
                done = true;
                break;
            }
        }
    }
    let removed: Option<u64> = redis::cmd("HGET")
        .arg(progress)
        .arg("removed")
        .query_async(admin.connection())
        .await
        .map_err(failed("HGET"))?;
    Ok(Progress {
        removed: removed.unwrap_or(0),
        done,
    })
}

/// Forgets a flush's progress once its result is recorded elsewhere.
pub async fn forget(admin: &mut Admin, progress: &str) -> Result<(), CacheError> {
    let address = admin.address().to_owned();
    redis::cmd("UNLINK")
        .arg(progress)
        .query_async::<()>(admin.connection())
        .await
        .map_err(|source| CacheError::Command {
            address,
            command: "UNLINK",
            source,
        })
}

/// The prefix as a literal in a SCAN MATCH pattern.
fn escape_glob(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_in_a_prefix_are_literal() {
        assert_eq!(escape_glob("orders:catalog:"), "orders:catalog:");
        assert_eq!(escape_glob(r"a*b?[c]\"), r"a\*b\?\[c\]\\");
    }
}
