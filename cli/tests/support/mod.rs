//! What the CLI's integration tests share: the repository, running `hiedge`, `eval --json`, and
//! the Fashion-MNIST IDX files. Each test file uses part of it.
#![allow(dead_code)]

pub mod http;
pub mod onnx;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hiedge_eval::dataset::IdxArray;
use serde_json::Value;

/// The repository root (where `hiedge` runs, so its default paths resolve).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the `hiedge` binary under test from the repository root.
pub fn hiedge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hiedge")).current_dir(repo()).args(args).output().expect("run hiedge")
}

/// `hiedge import --name NAME --tiny TINY --large LARGE --out OUT` and `extra`.
pub fn import(name: &str, tiny: &Path, large: &Path, out: &Path, extra: &[&str]) -> Output {
    let path = |p: &Path| p.to_str().expect("a UTF-8 path").to_string();
    let (tiny, large, out) = (path(tiny), path(large), path(out));
    let base = ["import", "--name", name, "--tiny", &tiny, "--large", &large, "--out", &out];
    hiedge(&[&base[..], extra].concat())
}

/// `hiedge eval --json ARGS`, which must succeed, parsed.
pub fn eval_json(args: &[&str]) -> Value {
    let out = hiedge(&[&["eval", "--json"], args].concat());
    assert!(out.status.success(), "hiedge eval {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("eval --json prints JSON")
}

/// One Fashion-MNIST IDX array (`prefix` t10k or train, `kind` images or labels) from
/// `FASHION_MNIST_DIR` or Debian's dataset-fashion-mnist (`make data`).
pub fn fashion_idx(prefix: &str, kind: &str) -> IdxArray {
    let dir = std::env::var("FASHION_MNIST_DIR").unwrap_or_else(|_| "/usr/share/datasets/fashion-mnist".into());
    let rank = if kind == "images" { 3 } else { 1 };
    let path = Path::new(&dir).join(format!("{prefix}-{kind}-idx{rank}-ubyte.gz"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e} (make data)", path.display()));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file).read_to_end(&mut bytes).unwrap();
    IdxArray::parse(&bytes).unwrap()
}
