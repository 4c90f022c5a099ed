//! Secrets at rest: AES-256-GCM (ring). The key comes from configuration
//! (`secrets.encryption_key`, 32 bytes in base64) or, on the embedded shape, from a key file in
//! the data directory (created with mode 0600 on the first start), so a copy of the database
//! alone reveals nothing. Each sealed value is bound to its owner through the associated data: a
//! ciphertext copied into another row does not open.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const VERSION: &str = "v1:";
pub const KEY_FILE: &str = "secrets.key";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the sealed value is malformed")]
    Malformed,
    #[error("the sealed value does not open with this key (wrong key, or moved to another row)")]
    Open,
    #[error("could not seal: {0}")]
    Seal(&'static str),
}

pub struct SecretBox {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> Result<Self, SecretError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, key).map_err(|_| SecretError::Seal("bad key"))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        })
    }

    /// `v1:` + base64(nonce ‖ ciphertext ‖ tag), with `bound_to` as associated data.
    pub fn seal(&self, plaintext: &[u8], bound_to: &str) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| SecretError::Seal("no randomness"))?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(bound_to.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SecretError::Seal("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("{VERSION}{}", STANDARD.encode(out)))
    }

    pub fn open(&self, sealed: &str, bound_to: &str) -> Result<Vec<u8>, SecretError> {
        let raw = sealed
            .strip_prefix(VERSION)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|r| r.len() > NONCE_LEN)
            .ok_or(SecretError::Malformed)?;
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Malformed)?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(bound_to.as_bytes()), &mut buf)
            .map_err(|_| SecretError::Open)?;
        Ok(plain.to_vec())
    }
}

/// Decode a configured key: 32 bytes in standard base64.
pub fn decode_key(b64: &str) -> Result<[u8; 32], String> {
    let bytes = STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("secrets.encryption_key is not base64: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| "secrets.encryption_key must be 32 bytes (44 base64 characters)".to_owned())
}

/// The embedded shape's key file: read it, or create it (mode 0600) with a random key.
pub fn key_file(dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = dir.join(KEY_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path)?;
        return decode_key(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let mut key = [0u8; 32];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| anyhow::anyhow!("no randomness for the secrets key"))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    std::io::Write::write_all(&mut opts.open(&path)?, STANDARD.encode(key).as_bytes())?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_owner() {
        let a = SecretBox::new(&[7u8; 32]).unwrap();
        let b = SecretBox::new(&[8u8; 32]).unwrap();
        let sealed = a.seal(b"s3cret", "row-1").unwrap();
        assert!(!sealed.contains("s3cret"));
        assert_ne!(
            sealed,
            a.seal(b"s3cret", "row-1").unwrap(),
            "fresh nonce each time"
        );
        assert_eq!(a.open(&sealed, "row-1").unwrap(), b"s3cret");
        assert!(matches!(a.open(&sealed, "row-2"), Err(SecretError::Open)));
        assert!(matches!(b.open(&sealed, "row-1"), Err(SecretError::Open)));
        assert!(matches!(
            a.open("v1:AAAA", "row-1"),
            Err(SecretError::Malformed)
        ));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(a.open(&tampered, "row-1").is_err());
    }

    #[test]
    fn the_key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = key_file(dir.path()).unwrap();
        let k2 = key_file(dir.path()).unwrap();
        assert_eq!(k1, k2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(decode_key("c2hvcnQ=").is_err());
    }
}
