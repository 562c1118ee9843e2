//! The shape of the code, checked: the imports between the crate's modules
//! run one way (ARCHITECTURE.md draws the map), sibling submodules never
//! import each other back, and no source file grows past what a reader
//! can hold.
//!
//! A new dependency between two top-level modules is a design decision:
//! it fails here until it is added to [`ALLOWED`] and to ARCHITECTURE.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every allowed `crate::<to>` use from `<from>`, as in ARCHITECTURE.md.
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "master",
        &[
            "budget",
            "cache",
            "catalogue",
            "config",
            "front",
            "jobs",
            "metrics",
            "net",
            "pool",
            "systemd",
        ],
    ),
    ("config", &["net", "proto", "worker"]),
    (
        "front",
        &[
            "budget",
            "cache",
            "catalogue",
            "jobs",
            "metrics",
            "net",
            "pool",
            "proto",
        ],
    ),
    ("jobs", &["catalogue", "metrics", "net", "pool", "proto"]),
    ("catalogue", &["proto"]),
    ("net", &["budget"]),
    ("pool", &["budget", "metrics", "proto"]),
    ("budget", &[]),
    ("cache", &["metrics"]),
    ("systemd", &["pool"]),
    ("worker", &["engine", "proto", "sandbox"]),
    ("engine", &["proto"]),
    ("sandbox", &[]),
    ("sched", &[]),
    ("metrics", &[]),
    ("proto", &[]),
];

/// Longest source file, test files excepted.
const MAX_LINES: usize = 900;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/`: `src/jobs/store/redis/mod.rs`
/// is `[jobs, store, redis]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Code lines only: comments (doc links included) are not imports.
fn code(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.trim_start().starts_with("//"))
}

/// The identifiers that follow each `prefix` in `line`.
fn after<'a>(line: &'a str, prefix: &str) -> Vec<&'a str> {
    line.match_indices(prefix)
        .filter(|(i, _)| {
            // `crate::` but not `some_crate::`.
            !line[..*i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .map(|(i, _)| {
            let rest = &line[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|s| !s.is_empty())
        .collect()
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Modules (top-level, and siblings inside each module) and what they use.
fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = src_dir();
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in files {
        let module = module_of(&src, &file);
        if module.first().is_none_or(|m| m == "bin" || m == "lib") {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        for line in code(&text) {
            for target in after(line, "crate::") {
                if target != module[0] {
                    edges
                        .entry(vec![module[0].clone()])
                        .or_default()
                        .insert(vec![target.to_string()]);
                }
            }
            // `super::x` from a submodule names a sibling (or the parent's
            // own item, which is not a sibling edge).
            if module.len() >= 2 {
                let parent = &module[..module.len() - 1];
                for target in after(line, "super::") {
                    let mut sibling = parent.to_vec();
                    sibling.push(target.to_string());
                    if sibling != module {
                        edges.entry(module.clone()).or_default().insert(sibling);
                    }
                }
            }
        }
    }
    // Keep only edges between modules that exist as files or folders.
    let exists = |m: &Vec<String>| {
        let base = m.iter().fold(src.clone(), |p, s| p.join(s));
        base.with_extension("rs").is_file() || base.join("mod.rs").is_file()
    };
    for targets in edges.values_mut() {
        targets.retain(exists);
    }
    edges
}

#[test]
fn top_level_imports_follow_the_map() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut unexpected = Vec::new();
    for (from, targets) in graph() {
        if from.len() != 1 {
            continue;
        }
        let Some(ok) = allowed.get(from[0].as_str()) else {
            unexpected.push(format!("module {} is not in the map", from[0]));
            continue;
        };
        for to in targets {
            if !ok.contains(&to[0].as_str()) {
                unexpected.push(format!("{} -> {}", from[0], to[0]));
            }
        }
    }
    assert!(
        unexpected.is_empty(),
        "imports outside the module map (ARCHITECTURE.md): {unexpected:?}"
    );
}

/// Depth-first search for a cycle; returns one when found.
fn find_cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        match state.get(node) {
            Some(1) => {
                let start = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(node.clone());
                return Some(cycle);
            }
            Some(_) => return None,
            None => {}
        }
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        let mut stack = Vec::new();
        if let Some(c) = visit(node, edges, &mut state, &mut stack) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    let edges = graph();
    // Sanity: the scan sees the imports it is meant to check.
    assert!(edges
        .get(&vec!["front".to_string()])
        .is_some_and(|t| t.contains(&vec!["pool".to_string()])));
    assert!(edges
        .get(&vec!["catalogue".into(), "parse".into()])
        .is_some_and(|t| t.contains(&vec!["catalogue".to_string(), "ops".to_string()])));
    if let Some(cycle) = find_cycle(&edges) {
        let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
        panic!("import cycle: {}", names.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let m = |s: &str| vec![s.to_string()];
    let mut edges = BTreeMap::new();
    edges.insert(m("a"), BTreeSet::from([m("b")]));
    edges.insert(m("b"), BTreeSet::from([m("c")]));
    assert!(find_cycle(&edges).is_none());
    edges.insert(m("c"), BTreeSet::from([m("a")]));
    assert!(find_cycle(&edges).is_some());
}

#[test]
fn no_source_file_passes_the_line_limit() {
    let src = src_dir();
    let mut files = Vec::new();
    sources(&src, &mut files);
    let long: Vec<String> = files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "tests.rs"))
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).ok()?.lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these files (at most {MAX_LINES} lines): {long:?}"
    );
}
