//! Shared helpers for the integration tests.
#![allow(dead_code)]

use serde_json::Value;
use std::path::PathBuf;

/// Path of a file under tests/golden.
pub fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// All golden files whose name starts with `prefix`.
pub fn golden_files(prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(golden(""))
        .expect("tests/golden exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".json"))
        })
        .collect();
    v.sort();
    v
}

pub fn load(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read fixture");
    serde_json::from_str(&text).expect("parse fixture")
}

/// Flattens a JSON number, list of numbers, or list of lists (row-major) into f64s.
pub fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Number(n) => vec![n.as_f64().expect("number")],
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        other => panic!("not numeric: {other}"),
    }
}

/// Largest |a - b| over the largest |b| (1 when b is all zero): a relative error per tensor.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    if scale < 1e-12 {
        diff
    } else {
        diff / scale
    }
}
