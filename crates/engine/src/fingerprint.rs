//! Content hashes: a retry is recognised by the same id *and* the same content.

use sha2::{Digest, Sha256};

/// SHA-256 of the parts, hex; parts are length-prefixed so they cannot run together.
pub fn fingerprint<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
