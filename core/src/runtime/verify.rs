//! The one place model bytes are checked against the manifest's sha256.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// `Ok` when `bytes` hash to `expected` (the manifest's lower-case hex sha256); otherwise
/// [`Error::ModelHashMismatch`] naming the model `name` and both hashes.
pub fn verify(name: &str, bytes: &[u8], expected: &str) -> Result<()> {
    let actual = sha256_hex(bytes);
    if actual == expected {
        Ok(())
    } else {
        Err(Error::ModelHashMismatch { name: name.into(), expected: expected.into(), actual })
    }
}

/// A model stored in parts put back together: each part checked against its sha256, then the
/// whole against the model's (`entry.sha256`), so a missing, reordered or altered part is an error
/// naming it. `parts` holds the bytes of `entry.parts`, in order.
pub fn join_parts(name: &str, entry: &crate::manifest::ModelEntry, parts: Vec<Vec<u8>>) -> Result<Vec<u8>> {
    let mut joiner = PartsJoiner::new(name, entry);
    for bytes in parts {
        joiner.push(&bytes)?;
    }
    joiner.finish()
}

/// [`join_parts`] one part at a time, so a caller that fetches parts holds the model once plus
/// one part (the Worker's 128 MB), not every part beside the whole.
#[derive(Debug)]
pub struct PartsJoiner<'a> {
    name: &'a str,
    entry: &'a crate::manifest::ModelEntry,
    whole: Vec<u8>,
    next: usize,
}

impl<'a> PartsJoiner<'a> {
    /// A joiner for model `name`'s parts (`entry.parts`).
    pub fn new(name: &'a str, entry: &'a crate::manifest::ModelEntry) -> Self {
        PartsJoiner { name, entry, whole: Vec::new(), next: 0 }
    }

    /// Checks the next part against its sha256 and appends it.
    pub fn push(&mut self, bytes: &[u8]) -> Result<()> {
        let listed = self.entry.parts.as_deref().unwrap_or_default();
        let part = listed
            .get(self.next)
            .ok_or_else(|| Error::Model(format!("model `{}` has {} parts, got more", self.name, listed.len())))?;
        verify(&format!("{} part {} ({})", self.name, self.next, part.file), bytes, &part.sha256)?;
        // Exactly what this part needs: doubling would hold up to twice the model while it grows.
        self.whole.reserve_exact(bytes.len());
        self.whole.extend_from_slice(bytes);
        self.next += 1;
        Ok(())
    }

    /// The whole model, checked against its sha256, once every part is in.
    pub fn finish(self) -> Result<Vec<u8>> {
        let listed = self.entry.parts.as_deref().unwrap_or_default().len();
        if self.next != listed {
            return Err(Error::Model(format!("model `{}` has {listed} parts, got {}", self.name, self.next)));
        }
        verify(self.name, &self.whole, &self.entry.sha256)?;
        Ok(self.whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn sha256_of_empty_and_verify_names_both_hashes() {
        assert_eq!(sha256_hex(b""), EMPTY);
        assert!(verify("tiny", b"", EMPTY).is_ok());
        let err = verify("tiny", b"x", EMPTY).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("tiny") && msg.contains(EMPTY) && msg.contains(&sha256_hex(b"x")), "{msg}");
    }

    #[test]
    fn parts_join_only_whole_and_in_order() {
        use crate::manifest::{ModelEntry, OutputKind, SourceFile};
        let (a, b) = (b"first ".to_vec(), b"second".to_vec());
        let part = |file: &str, bytes: &[u8]| SourceFile { file: file.into(), sha256: sha256_hex(bytes) };
        let entry = ModelEntry {
            file: "large.nnef.tar".into(),
            sha256: sha256_hex(b"first second"),
            source: None,
            parts: Some(vec![part("large.nnef.tar.part-0", &a), part("large.nnef.tar.part-1", &b)]),
            input_name: "x".into(),
            output: OutputKind::Logits,
            params: None,
            weight_bytes: None,
            test_accuracy: None,
            architecture: None,
            trained: None,
            weights: None,
        };
        assert_eq!(join_parts("large", &entry, vec![a.clone(), b.clone()]).unwrap(), b"first second");
        let swapped = join_parts("large", &entry, vec![b.clone(), a.clone()]).unwrap_err().to_string();
        assert!(swapped.contains("large part 0 (large.nnef.tar.part-0)"), "{swapped}");
        assert!(join_parts("large", &entry, vec![a.clone()]).unwrap_err().to_string().contains("2 parts, got 1"));
        let mut bad = b.clone();
        bad[0] ^= 1;
        assert!(join_parts("large", &entry, vec![a, bad]).unwrap_err().to_string().contains("part 1"));
    }
}
