//! One cache entry as a file, and the folder they live in.
//!
//! An entry is `<dir>/<first two digits of the key>/<key>`:
//!
//! ```text
//! "PXC1" | meta length (u32 LE) | meta (JSON) | body | BLAKE3 of all before (32 bytes)
//! ```
//!
//! The trailing hash covers everything, so a torn write, a flipped bit or
//! a file cut short is found on every read and the entry is dropped, never
//! served. Writes go to `<dir>/tmp/` first and are renamed into place, so
//! a reader sees a whole file or none.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::CacheError;

const MAGIC: &[u8; 4] = b"PXC1";
const HASH_LEN: usize = 32;

/// A cached response: what a hit sends back besides the caching headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub content_type: String,
    /// Headers of the result itself (`x-image-width`, ...), in order.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    content_type: String,
    headers: Vec<(String, String)>,
}

/// Why a stored entry cannot be served.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Not there (evicted meanwhile, or removed by hand).
    Missing,
    /// There but damaged: its checksum or its layout is wrong.
    Corrupt,
}

/// Whether `name` is a key this cache could have written (32 hex digits).
pub fn is_key(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Where the entry of `key` lives.
pub fn path_of(dir: &Path, key: &str) -> PathBuf {
    dir.join(&key[..2]).join(key)
}

/// The file's bytes for `entry`.
pub fn encode(entry: &Entry) -> Vec<u8> {
    let meta = serde_json::to_vec(&Meta {
        content_type: entry.content_type.clone(),
        headers: entry.headers.clone(),
    })
    .unwrap_or_default();
    let mut out = Vec::with_capacity(8 + meta.len() + entry.body.len() + HASH_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&entry.body);
    let hash = blake3::hash(&out);
    out.extend_from_slice(hash.as_bytes());
    out
}

/// The entry in `file`, checked end to end.
pub fn decode(file: Vec<u8>) -> Result<Entry, ReadError> {
    if file.len() < 8 + HASH_LEN || &file[..4] != MAGIC {
        return Err(ReadError::Corrupt);
    }
    let (content, hash) = file.split_at(file.len() - HASH_LEN);
    if blake3::hash(content).as_bytes() != hash {
        return Err(ReadError::Corrupt);
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&content[4..8]);
    let meta_end = 8usize
        .checked_add(u32::from_le_bytes(len) as usize)
        .filter(|&end| end <= content.len())
        .ok_or(ReadError::Corrupt)?;
    let meta: Meta =
        serde_json::from_slice(&content[8..meta_end]).map_err(|_| ReadError::Corrupt)?;
    let body_len = content.len() - meta_end;
    let mut file = file;
    file.truncate(meta_end + body_len);
    let body = Bytes::from(file).slice(meta_end..);
    Ok(Entry {
        content_type: meta.content_type,
        headers: meta.headers,
        body,
    })
}

/// Reads and checks the entry of `key`. A hit also sets the file's
/// modification time to now, so the order rebuilt at the next start is
/// (nearly) the order of use.
pub fn read(dir: &Path, key: &str) -> Result<Entry, ReadError> {
    let path = path_of(dir, key);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(_) => return Err(ReadError::Corrupt),
    };
    let entry = decode(bytes)?;
    if let Ok(f) = fs::File::open(&path) {
        let _ = f.set_modified(SystemTime::now());
    }
    Ok(entry)
}

/// Writes `bytes` as the entry of `key` (through a temporary file and a
/// rename). Returns the bytes on disk.
pub fn write(dir: &Path, key: &str, bytes: &[u8]) -> Result<u64, CacheError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| CacheError::Io { path, source }
    };
    let tmp = dir.join("tmp").join(format!(
        "{key}.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let dest = path_of(dir, key);
    let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
    if let Err(e) = f.write_all(bytes) {
        let _ = fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    drop(f);
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    if let Err(e) = fs::rename(&tmp, &dest) {
        let _ = fs::remove_file(&tmp);
        return Err(io(&dest)(e));
    }
    Ok(bytes.len() as u64)
}

/// Removes the entry of `key` (gone already is fine).
pub fn remove(dir: &Path, key: &str) {
    let _ = fs::remove_file(path_of(dir, key));
}

/// Prepares `dir` and lists the entries in it, least recently used first:
/// `(key, bytes)`. Leftover temporary files (a write cut by a stop) are
/// removed; files that are not entries are left alone.
pub fn scan(dir: &Path) -> Result<Vec<(String, u64)>, CacheError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| CacheError::Io { path, source }
    };
    let tmp = dir.join("tmp");
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    for e in fs::read_dir(&tmp).map_err(io(&tmp))?.flatten() {
        let _ = fs::remove_file(e.path());
    }
    let mut found = Vec::new();
    for sub in fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let name = sub.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() != 2 || !sub.path().is_dir() {
            continue;
        }
        let Ok(files) = fs::read_dir(sub.path()) else {
            continue;
        };
        for f in files.flatten() {
            let key = f.file_name();
            let Some(key) = key.to_str() else { continue };
            let Ok(meta) = f.metadata() else { continue };
            if !is_key(key) || !meta.is_file() || !key.starts_with(name) {
                continue;
            }
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((used, key.to_string(), meta.len()));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, k, n)| (k, n)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            content_type: "image/png".into(),
            headers: vec![("x-image-width".into(), "40".into())],
            body: Bytes::from_static(b"\x89PNG pixels"),
        }
    }

    #[test]
    fn entries_round_trip_and_any_damage_is_found() {
        let e = entry();
        let bytes = encode(&e);
        assert_eq!(decode(bytes.clone()), Ok(e));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert_eq!(decode(bad), Err(ReadError::Corrupt), "bit flip at {i}");
        }
        for len in 0..bytes.len() {
            assert_eq!(
                decode(bytes[..len].to_vec()),
                Err(ReadError::Corrupt),
                "cut at {len}"
            );
        }
    }

    #[test]
    fn written_entries_are_found_again_oldest_first() {
        let dir = std::env::temp_dir().join(format!("pixfork-cache-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert!(scan(&dir).expect("scan").is_empty());
        let (a, b) = ("a".repeat(32), "b".repeat(32));
        let bytes = encode(&entry());
        write(&dir, &a, &bytes).expect("write a");
        write(&dir, &b, &bytes).expect("write b");
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        fs::File::open(path_of(&dir, &b))
            .and_then(|f| f.set_modified(old))
            .expect("age b");
        fs::write(dir.join("tmp").join("left-over"), b"x").expect("tmp");
        let found = scan(&dir).expect("scan");
        let n = bytes.len() as u64;
        assert_eq!(found, vec![(b.clone(), n), (a.clone(), n)]);
        assert!(fs::read_dir(dir.join("tmp")).expect("tmp").next().is_none());
        assert_eq!(read(&dir, &a), Ok(entry()));
        remove(&dir, &a);
        assert_eq!(read(&dir, &a), Err(ReadError::Missing));
        let _ = fs::remove_dir_all(&dir);
    }
}
