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
}
