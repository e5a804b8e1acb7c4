//! The fuzz targets' short run, inside `cargo test`: each target's function (src/fuzzing.rs) is
//! run over its committed corpus (fuzz/corpus/TARGET/, the `regression-*` inputs of crashes
//! found included) and over a few thousand mutations of it, the same every run. The fuzzers
//! themselves run with `scripts/fuzz`; they need an instrumented build of their own.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use amazon_cloudwatch_publisher::fuzzing;

/// Mutations per target: enough to leave the seeds' paths, few enough for a debug build to run
/// in seconds (the lines' target decodes a megabyte for each long line, so it gets fewer).
const MUTATIONS: usize = 2000;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("corpus file"))
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "{}: the seed corpus is missing",
        dir.display()
    );
    files
}

/// Byte flips, new bytes, insertions, deletions, splices with another input, truncations and
/// repeats, one to four of them, capped at `max_len`.
fn mutate(rng: &mut fastrand::Rng, seeds: &[(String, Vec<u8>)], max_len: usize) -> Vec<u8> {
    let mut data = seeds[rng.usize(..seeds.len())].1.clone();
    for _ in 0..rng.usize(1..=4) {
        let len = data.len();
        match rng.u8(..7) {
            0 if len > 0 => {
                let i = rng.usize(..len);
                data[i] ^= 1 << rng.u8(..8);
            }
            1 if len > 0 => {
                let i = rng.usize(..len);
                data[i] = *rng
                    .choice(&[0, 0x7f, 0x80, 0xff, b'\n', b'"', b'%', b'{', b'0'])
                    .unwrap();
            }
            2 => {
                let at = rng.usize(..=len);
                let n = rng.usize(1..=8);
                let bytes: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(n).collect();
                data.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let at = rng.usize(..len);
                let end = (at + rng.usize(1..=16)).min(len);
                data.drain(at..end);
            }
            4 => {
                let other = &seeds[rng.usize(..seeds.len())].1;
                let from = rng.usize(..=other.len());
                let at = rng.usize(..=len);
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            5 => data.truncate(rng.usize(..=len)),
            _ if len > 0 => {
                let at = rng.usize(..len);
                let end = (at + rng.usize(1..=32)).min(len);
                let piece = data[at..end].to_vec();
                data.splice(at..at, piece);
            }
            _ => {}
        }
    }
    data.truncate(max_len);
    data
}

/// Runs `f` over the corpus and `count` mutations of it. An input that fails is written to
/// target/fuzz-corpus-failures/TARGET-N, ready to become a `regression-*` corpus file.
fn run(target: &str, max_len: usize, count: usize, f: impl Fn(&[u8])) {
    let seeds = corpus(target);
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mutations =
        (0..count).map(|i| (format!("mutation {i}"), mutate(&mut rng, &seeds, max_len)));
    let mut ran = 0;
    for (name, data) in seeds.iter().cloned().chain(mutations) {
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| f(&data))) {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-corpus-failures");
            std::fs::create_dir_all(&dir).expect("failures folder");
            let saved: PathBuf = dir.join(format!("{target}-{ran}"));
            std::fs::write(&saved, &data).expect("save the failing input");
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "{target}: {name} fails (saved as {}): {why}",
                saved.display()
            );
        }
        ran += 1;
    }
    eprintln!("{target}: {ran} inputs");
}

#[test]
fn config() {
    run("config", 8192, MUTATIONS, fuzzing::config);
}

#[test]
fn state_file() {
    let dir = tempfile::tempdir().unwrap();
    run("state_file", 4096, MUTATIONS, |data| {
        fuzzing::state_file_in(dir.path(), data)
    });
}

#[test]
fn journal() {
    run("journal", 8192, MUTATIONS, fuzzing::journal);
}

#[test]
fn lines() {
    run("lines", 4096, MUTATIONS / 2, fuzzing::lines);
}

#[test]
fn batcher() {
    run("batcher", 1024, MUTATIONS, fuzzing::batcher);
}

#[test]
fn timestamp() {
    run("timestamp", 512, MUTATIONS, fuzzing::timestamp);
}
