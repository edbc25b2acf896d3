//! The crate's layers import downwards only: `nn` ← `train` ← `detect` ← `io` ← `service` ←
//! `tools` (README, "Architecture"). Reads the crate's own sources and fails naming every
//! import (`crate::<layer>` or a root re-export such as `crate::Learner`) from a lower layer
//! to a higher one. Comments and doc links are not imports and are not counted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers, lowest first.
const LAYERS: [&str; 6] = ["nn", "train", "detect", "io", "service", "tools"];

fn rank(layer: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == layer)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a source file: its lines without comments, with their numbers (from 1).
fn code(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
}

/// The names `lib.rs` re-exports at the root, with the layer each comes from
/// (`pub use nn::model::{Model, ...};` → `Model` is `nn`'s).
fn root_names(lib: &str) -> BTreeMap<String, usize> {
    let mut names = BTreeMap::new();
    for (_, line) in code(lib) {
        let Some(path) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let layer = path.split("::").next().unwrap_or("");
        let Some(r) = rank(layer) else { continue };
        let items = path.rsplit("::").next().unwrap_or("");
        let items = items
            .trim_end_matches(';')
            .trim_matches(|c| c == '{' || c == '}');
        for item in items.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            names.insert(item.to_string(), r);
        }
    }
    names
}

/// The layers that `line` names after `crate::`, as ranks (root re-exports included).
fn imports(line: &str, roots: &BTreeMap<String, usize>) -> Vec<usize> {
    let mut found = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        let rest = &line[at + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
            None => vec![rest],
        };
        for name in names {
            let head: String = name
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if let Some(r) = rank(&head).or_else(|| roots.get(&head).copied()) {
                found.push(r);
            }
        }
    }
    found
}

#[test]
fn no_layer_imports_a_higher_one() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let roots = root_names(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    assert!(
        roots.contains_key("Learner") && roots.contains_key("Pipeline"),
        "the root re-exports were not read: {roots:?}"
    );
    let mut upward = Vec::new();
    let mut counted = 0;
    for (rank_of_file, layer) in LAYERS.iter().enumerate() {
        let mut files = Vec::new();
        sources(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "no sources in src/{layer}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in code(&text) {
                for r in imports(line, &roots) {
                    counted += 1;
                    if r > rank_of_file {
                        upward.push(format!(
                            "src/{}:{n}: {layer} imports {}: {}",
                            file.strip_prefix(&src).unwrap().display(),
                            LAYERS[r],
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    assert!(counted > 50, "only {counted} imports between modules found");
    assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
}

#[test]
fn the_checker_sees_plain_grouped_and_root_imports() {
    let roots = root_names("pub use nn::model::{Model, Window};\npub use train::learner::Learner;");
    assert_eq!(imports("use crate::service::run::Runner;", &roots), [4]);
    assert_eq!(
        imports("use crate::{io::sink, detect::norm};", &roots),
        [3, 2]
    );
    assert_eq!(
        imports("use crate::{Error, Learner, Model};", &roots),
        [1, 0]
    );
    assert_eq!(imports("let w: crate::Window<f32>;", &roots), [0]);
    assert!(imports("use crate::Error;", &roots).is_empty());
    let text = "/// see [`crate::tools::plot`]\nuse crate::nn::cell;";
    assert_eq!(
        code(text).collect::<Vec<_>>(),
        [(2, "use crate::nn::cell;")]
    );
}
