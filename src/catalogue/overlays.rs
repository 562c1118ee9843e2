//! Overlays: the images the operator registers at start (`--overlay
//! NAME=FILE`) for the `overlay` op's `image=NAME`, and the step that turns
//! a task's overlay ops into the bytes that travel with it.
//!
//! The files are read once, at start, into memory shared by every request
//! (no disk access per request, and an overlay cannot change under a
//! running server). The master never decodes them: it checks them by
//! running `info` on a worker before it serves (see `master`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::error::{bad, ParamError};
use super::spec::is_name;
use crate::proto::{Op, OverlaySource, Task};

/// Most `overlay` ops one request may hold: each is a second image to
/// decode, so the bound keeps one request's work in proportion.
pub const MAX_OVERLAYS: usize = 4;

/// Why `--overlay` could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("overlay {0:?}: expected NAME=FILE, e.g. logo=/etc/pixfork/logo.png")]
    Syntax(String),
    #[error("overlay {0:?}: a name is 1 to 64 letters, digits, '-', '_' or '.'")]
    BadName(String),
    #[error("overlay {0:?} is registered twice")]
    Duplicate(String),
    #[error("overlay {name:?}: cannot read {path}: {source}")]
    Read {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("overlay {name:?}: {path} holds {len} bytes; at most {max} (--max-body)")]
    TooLarge {
        name: String,
        path: PathBuf,
        len: u64,
        max: u64,
    },
    #[error("overlay {0:?}: the file is empty")]
    Empty(String),
}

/// The registered overlays, by name.
#[derive(Debug, Clone, Default)]
pub struct Overlays {
    /// Each image with the BLAKE3 hash of its bytes, made once here: a
    /// result's name includes it, and hashing a large file per request
    /// would cost every request that names it.
    by_name: BTreeMap<String, (Bytes, [u8; 32])>,
}

impl Overlays {
    /// Reads every `NAME=FILE` of `specs`; a file may hold at most
    /// `max_bytes` (what a request body may hold).
    pub fn load(specs: &[String], max_bytes: u64) -> Result<Overlays, OverlayError> {
        let mut by_name = BTreeMap::new();
        for spec in specs {
            let (name, path) = spec
                .split_once('=')
                .ok_or_else(|| OverlayError::Syntax(spec.clone()))?;
            let (name, path) = (name.trim(), Path::new(path.trim()));
            if !is_name(name) {
                return Err(OverlayError::BadName(name.to_string()));
            }
            if by_name.contains_key(name) {
                return Err(OverlayError::Duplicate(name.to_string()));
            }
            let bytes = read_capped(name, path, max_bytes)?;
            let digest = *blake3::hash(&bytes).as_bytes();
            by_name.insert(name.to_string(), (Bytes::from(bytes), digest));
        }
        Ok(Overlays { by_name })
    }

    /// The names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Every registered overlay with its bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.by_name.iter().map(|(n, (b, _))| (n.as_str(), b))
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// What each overlay op of `task` needs, in op order: a registered
    /// image's bytes, or a URL the caller must fetch. An unknown name is a
    /// 400 naming the parameter (`image`, or `ops[2].image` in a pipeline).
    pub fn attachments(&self, task: &Task) -> Result<Vec<Attachment>, ParamError> {
        let pipeline = task.ops.len() > 1;
        let count = task
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Overlay { .. }))
            .count();
        if count > MAX_OVERLAYS {
            return Err(bad(
                "ops",
                format!("a request may hold at most {MAX_OVERLAYS} overlay ops, got {count}"),
            ));
        }
        let mut out = Vec::new();
        for (i, op) in task.ops.iter().enumerate() {
            let Op::Overlay { image, .. } = op else {
                continue;
            };
            let label = if pipeline {
                format!("ops[{i}].image")
            } else {
                "image".to_string()
            };
            out.push(match image {
                OverlaySource::Named(name) => match self.by_name.get(name) {
                    Some((bytes, digest)) => Attachment::Ready {
                        bytes: bytes.clone(),
                        digest: *digest,
                    },
                    None => return Err(self.unknown(&label, name)),
                },
                OverlaySource::Url(url) => Attachment::Fetch(url.clone()),
            });
        }
        Ok(out)
    }

    fn unknown(&self, label: &str, name: &str) -> ParamError {
        let known = if self.is_empty() {
            "none are registered (--overlay NAME=FILE)".to_string()
        } else {
            format!(
                "registered: {}",
                self.names().collect::<Vec<_>>().join(", ")
            )
        };
        bad(label, format!("no overlay named {name:?}; {known}"))
    }
}

/// The image one overlay op needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Attachment {
    /// A registered overlay's bytes and their BLAKE3 hash.
    Ready { bytes: Bytes, digest: [u8; 32] },
    /// `image_url=`: to be fetched under the URL-source rules.
    Fetch(String),
}

/// Reads `path`, refusing more than `max` bytes without reading them all.
fn read_capped(name: &str, path: &Path, max: u64) -> Result<Vec<u8>, OverlayError> {
    use std::io::Read;
    let read_err = |source| OverlayError::Read {
        name: name.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > max {
        return Err(OverlayError::TooLarge {
            name: name.to_string(),
            path: path.to_path_buf(),
            len: std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len()),
            max,
        });
    }
    if bytes.is_empty() {
        return Err(OverlayError::Empty(name.to_string()));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::parse_request;
    use crate::proto::Limits;

    /// A file removed when the guard drops.
    struct Temp(PathBuf);

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn file(bytes: &[u8]) -> (Temp, String) {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("pixfork-overlay-{}-{n}", std::process::id()));
        std::fs::write(&path, bytes).expect("write");
        let shown = path.display().to_string();
        (Temp(path), shown)
    }

    #[test]
    fn names_resolve_to_their_bytes_in_op_order() {
        let (_dir, path) = file(b"logo bytes");
        let o = Overlays::load(&[format!("logo={path}")], 1024).expect("loads");
        let query = "ops=overlay(image=logo),blur(sigma=1),overlay(image_url=http://x/y.png)";
        let task = parse_request("pipeline", Some(query), Limits::default())
            .expect("parses")
            .task;
        assert_eq!(
            o.attachments(&task).expect("known"),
            vec![
                Attachment::Ready {
                    bytes: Bytes::from_static(b"logo bytes"),
                    digest: *blake3::hash(b"logo bytes").as_bytes(),
                },
                Attachment::Fetch("http://x/y.png".to_string()),
            ]
        );
        let task = parse_request("overlay", Some("image=nope"), Limits::default())
            .expect("parses")
            .task;
        let err = o.attachments(&task).expect_err("unknown");
        assert!(err.to_string().contains("registered: logo"), "{err}");
    }

    #[test]
    fn bad_registrations_are_refused() {
        let (_dir, path) = file(b"0123456789");
        assert!(matches!(
            Overlays::load(&[format!("logo={path}")], 9),
            Err(OverlayError::TooLarge { len: 10, .. })
        ));
        assert!(matches!(
            Overlays::load(&["logo".into()], 9),
            Err(OverlayError::Syntax(_))
        ));
        assert!(matches!(
            Overlays::load(&[format!("a b={path}")], 99),
            Err(OverlayError::BadName(_))
        ));
        assert!(matches!(
            Overlays::load(&[format!("a={path}"), format!("a={path}")], 99),
            Err(OverlayError::Duplicate(_))
        ));
        assert!(matches!(
            Overlays::load(&["a=/nonexistent/file.png".into()], 99),
            Err(OverlayError::Read { .. })
        ));
    }
}
