//! Replays the fuzzers' saved seed corpus (`fuzz/seeds/<target>/`) through the same harness the
//! fuzz targets run (`fuzz/harness.rs`), so CI exercises every saved input without a fuzzer.

#[path = "../../fuzz/harness.rs"]
mod harness;

use std::path::PathBuf;
use tbptt::io::format::Format;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "corpus of {target} has {} files",
        files.len()
    );
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read corpus file");
            (p, bytes)
        })
        .collect()
}

#[test]
fn csv_corpus() {
    for (_, bytes) in corpus("decode_csv") {
        harness::text(Format::Csv, &bytes);
    }
}

#[test]
fn jsonl_corpus() {
    for (_, bytes) in corpus("decode_jsonl") {
        harness::text(Format::JsonLines, &bytes);
    }
}

#[test]
fn graphite_corpus() {
    for (_, bytes) in corpus("decode_graphite") {
        harness::text(Format::Graphite, &bytes);
    }
}

#[test]
fn influx_corpus() {
    for (_, bytes) in corpus("decode_influx") {
        harness::text(Format::Influx, &bytes);
    }
}

#[test]
fn remote_write_corpus() {
    for (_, bytes) in corpus("decode_remote_write") {
        harness::remote_write(&bytes);
    }
}

#[test]
fn msgpack_corpus() {
    for (_, bytes) in corpus("decode_msgpack") {
        harness::msgpack(&bytes);
    }
}

#[test]
fn checkpoint_corpus() {
    let mut loaded = 0;
    for (path, bytes) in corpus("checkpoint") {
        harness::checkpoint(&bytes);
        // The first byte is the harness's mode; the v1 seeds hold the committed file as is.
        if tbptt::io::checkpoint::decode(&bytes[1..]).is_ok() {
            loaded += 1;
        } else {
            assert!(
                !path.to_string_lossy().contains("v1"),
                "{} must load: {:?}",
                path.display(),
                tbptt::io::checkpoint::decode(&bytes[1..]).err()
            );
        }
    }
    assert!(loaded >= 1);
}
