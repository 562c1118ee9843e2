//! Presets: pipelines the operator names at start (`--preset NAME=OPS`,
//! `--preset-file`), run by `/v1/preset/NAME`.
//!
//! A preset is checked with the pipeline grammar when the service starts,
//! so a typo is a boot error, not a 400 for every client later. Clients can
//! then ask for `thumb` instead of spelling out (and caching under) every
//! parameter, and the operator can change what `thumb` means in one place.

use std::collections::BTreeMap;

use super::parse::parse_pipeline;
use crate::proto::Op;

/// Why a preset cannot be used: a boot error naming it.
#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    #[error("preset {0:?}: expected NAME=OPS, e.g. thumb=resize(width=300),sharpen(sigma=1)")]
    Form(String),
    #[error("preset name {0:?}: use 1-64 of a-z, 0-9, - and _")]
    Name(String),
    #[error("preset {name}: {message}")]
    Ops { name: String, message: String },
    #[error("preset {0} is defined twice")]
    Twice(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// The presets by name, with the text each was given as.
#[derive(Debug, Clone, Default)]
pub struct Presets {
    by_name: BTreeMap<String, (String, Vec<Op>)>,
}

impl Presets {
    /// Adds one `NAME=OPS` definition.
    pub fn add(&mut self, def: &str) -> Result<(), PresetError> {
        let (name, ops) = def
            .split_once('=')
            .map(|(n, o)| (n.trim(), o.trim()))
            .ok_or_else(|| PresetError::Form(def.to_string()))?;
        let name_ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(PresetError::Name(name.to_string()));
        }
        let parsed = parse_pipeline(ops).map_err(|e| PresetError::Ops {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        if self
            .by_name
            .insert(name.to_string(), (ops.to_string(), parsed))
            .is_some()
        {
            return Err(PresetError::Twice(name.to_string()));
        }
        Ok(())
    }

    /// Adds every definition of a file: one `NAME=OPS` a line, `#` starts
    /// a comment line, blank lines are skipped.
    pub fn add_file(&mut self, path: &std::path::Path) -> Result<(), PresetError> {
        let text = std::fs::read_to_string(path).map_err(|source| PresetError::Read {
            path: path.display().to_string(),
            source,
        })?;
        for line in text.lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                self.add(line)?;
            }
        }
        Ok(())
    }

    /// The ops of preset `name`.
    pub fn get(&self, name: &str) -> Option<&[Op]> {
        self.by_name.get(name).map(|(_, ops)| ops.as_slice())
    }

    /// Every preset as `(name, ops as given)`, by name.
    pub fn list(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_name
            .iter()
            .map(|(n, (text, _))| (n.as_str(), text.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_checked_when_added() {
        let mut p = Presets::default();
        p.add("thumb=resize(width=300,height=300,fit=cover),sharpen(sigma=1)")
            .expect("valid");
        assert_eq!(p.get("thumb").map(<[Op]>::len), Some(2));
        assert!(matches!(p.add("thumb=flip"), Err(PresetError::Twice(_))));
        assert!(matches!(p.add("no-equals"), Err(PresetError::Form(_))));
        assert!(matches!(p.add("Big=flip"), Err(PresetError::Name(_))));
        assert!(matches!(p.add("=flip"), Err(PresetError::Name(_))));
        let e = p.add("bad=resize(width=0)").expect_err("width 0");
        assert!(e.to_string().contains("bad"), "{e}");
        assert!(matches!(p.add("x=nosuchop"), Err(PresetError::Ops { .. })));
        assert_eq!(p.list().count(), 1);
    }
}
