//! Replays the committed corpus of every fuzz target (`fuzz/corpus/<target>/`): the inputs libFuzzer
//! kept for coverage and any input that once crashed. Runs on stable in `make test`; `make fuzz`
//! grows the corpus.

use std::path::PathBuf;

#[test]
fn every_target_passes_its_committed_corpus() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut total = 0;
    for (name, check) in hiedge_fuzz::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|f| f.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 3, "{}: only {} inputs; seed it (see fuzz/README.md)", dir.display(), files.len());
        for file in &files {
            let data = std::fs::read(file).unwrap();
            // A panic names the input that caused it.
            let result = std::panic::catch_unwind(|| check(&data));
            assert!(result.is_ok(), "{name}: {} fails", file.display());
        }
        println!("{name}: {} inputs replayed", files.len());
        total += files.len();
    }
    println!("{total} corpus inputs replayed");
}
