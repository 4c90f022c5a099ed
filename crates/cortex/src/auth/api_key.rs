//! `ctx_` API keys: 40 random base62 characters after the prefix; only their SHA-256 is stored.
//! Verification is one hash and one indexed look-up — no slow password hash on the hot path.

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "ctx_";
const SECRET_LEN: usize = 40;
/// How much of the key is kept in clear to recognise it in lists.
const SHOWN_LEN: usize = PREFIX.len() + 8;

/// A freshly generated key: the raw value is shown once, then only the hash remains.
pub struct GeneratedKey {
    pub raw: String,
    pub prefix: String,
    pub hash: String,
}

/// `n` random base62 characters (keys, generated secrets and passwords).
pub fn random_alphanumeric(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

pub fn generate() -> GeneratedKey {
    let raw = format!("{PREFIX}{}", random_alphanumeric(SECRET_LEN));
    GeneratedKey {
        prefix: raw[..SHOWN_LEN].to_owned(),
        hash: hash(&raw),
        raw,
    }
}

/// Hex SHA-256 of the whole raw key.
pub fn hash(raw: &str) -> String {
    hex::encode(Sha256::digest(raw.as_bytes()))
}

/// Whether `raw` has the shape of a key (`ctx_` + at least 32 alphanumerics, bounded length).
pub fn is_well_formed(raw: &str) -> bool {
    raw.strip_prefix(PREFIX).is_some_and(|s| {
        (32..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Constant-time comparison of two hex hashes.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate();
        let b = generate();
        assert!(is_well_formed(&a.raw));
        assert_ne!(a.raw, b.raw);
        assert!(a.raw.starts_with(&a.prefix));
        assert_eq!(a.hash, hash(&a.raw));
        assert!(hashes_equal(&a.hash, &hash(&a.raw)));
        assert!(!hashes_equal(&a.hash, &b.hash));
        assert!(!is_well_formed("ctx_short"));
        assert!(!is_well_formed("pk_0123456789012345678901234567890123"));
        assert!(!is_well_formed("ctx_0123456789012345678901234567890123-!"));
    }
}
