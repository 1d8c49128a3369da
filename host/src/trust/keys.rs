//! Signing keys: Ed25519 key pairs in the `wasmsign2` format, stored as PEM, and
//! their key ids.
//!
//! A key id is the one `wasmsign2` embeds in a signature (the first 12 bytes of
//! HMAC-SHA256("key_id", public key)), shown as 24 hex digits, so an operator can
//! match the id a refusal names with the `.pub` file that would verify it.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use wasmsign2::{KeyPair, PublicKey, SecretKey};

/// A key id as shown to operators: 24 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(pub String);

impl KeyId {
    pub fn from_bytes(bytes: &[u8]) -> KeyId {
        KeyId(crate::digest::hex(bytes))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A public key that verifies signatures, with its key id attached.
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    pub(crate) key: PublicKey,
}

impl VerifyingKey {
    pub fn from_public(key: PublicKey) -> VerifyingKey {
        VerifyingKey {
            key: key.attach_default_key_id(),
        }
    }

    /// Reads a public key file (PEM as `keygen` writes it; DER or raw `wasmsign2`
    /// bytes also work).
    pub fn load(path: &Path) -> Result<VerifyingKey, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let key = PublicKey::from_any(&bytes)
            .map_err(|_| format!("{} is not an Ed25519 public key", path.display()))?;
        Ok(VerifyingKey::from_public(key))
    }

    pub fn id(&self) -> KeyId {
        KeyId::from_bytes(self.key.key_id().map_or(&[][..], |id| id.as_slice()))
    }

    pub fn to_pem(&self) -> String {
        self.key.to_pem()
    }
}

/// A secret key, for `sign`.
pub struct SigningKey {
    pub(crate) key: SecretKey,
    pub(crate) public: VerifyingKey,
}

impl SigningKey {
    pub fn generate() -> SigningKey {
        let pair = KeyPair::generate();
        SigningKey {
            key: pair.sk,
            public: VerifyingKey::from_public(pair.pk),
        }
    }

    /// Reads a secret key file; like ssh, refuses one that others could read.
    pub fn load(path: &Path) -> Result<SigningKey, String> {
        let meta =
            std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        // A public key given where the secret one goes is the likelier mistake than
        // a leaked secret: say so before judging its mode.
        if let Ok(bytes) = std::fs::read(path)
            && SecretKey::from_any(&bytes).is_err()
            && PublicKey::from_any(&bytes).is_ok()
        {
            return Err(format!(
                "{} is a public key; sign with the secret key (the .key file `cmk-host keygen` wrote beside it)",
                path.display()
            ));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{} is readable by others (mode {mode:o}); a secret key must be 0600",
                path.display()
            ));
        }
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let key = SecretKey::from_any(&bytes)
            .map_err(|_| format!("{} is not an Ed25519 secret key", path.display()))?;
        let public = wasmsign2::PublicKey {
            pk: key.sk.public_key(),
            key_id: None,
        };
        Ok(SigningKey {
            key,
            public: VerifyingKey::from_public(public),
        })
    }

    pub fn public(&self) -> &VerifyingKey {
        &self.public
    }

    pub fn id(&self) -> KeyId {
        self.public.id()
    }
}

/// The files `keygen --out NAME` writes.
#[derive(Debug)]
pub struct KeyFiles {
    pub secret: PathBuf,
    pub public: PathBuf,
    pub id: KeyId,
}

/// Generates a key pair and writes `NAME.key` (mode 0600) and `NAME.pub`. Never
/// overwrites: replacing a key by accident would lock out every component it signed.
pub fn generate(name: &Path) -> Result<KeyFiles, String> {
    let key = SigningKey::generate();
    let secret = with_suffix(name, "key");
    let public = with_suffix(name, "pub");
    for path in [&secret, &public] {
        if path.exists() {
            return Err(format!("{} exists; not overwriting a key", path.display()));
        }
    }
    write_new(&secret, key.key.to_pem().as_bytes(), 0o600)?;
    write_new(&public, key.public.to_pem().as_bytes(), 0o644)?;
    Ok(KeyFiles {
        secret,
        public,
        id: key.id(),
    })
}

fn with_suffix(name: &Path, suffix: &str) -> PathBuf {
    let mut s = name.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// Creates `path` with `mode` (never following or replacing an existing file).
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_a_private_secret_and_a_public_key_with_the_same_id() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(&dir.path().join("ops")).unwrap();
        let mode = std::fs::metadata(&files.secret)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(files.id.0.len(), 24);
        let secret = SigningKey::load(&files.secret).unwrap();
        let public = VerifyingKey::load(&files.public).unwrap();
        assert_eq!(secret.id(), files.id);
        assert_eq!(public.id(), files.id);
        // Never overwrites.
        assert!(
            generate(&dir.path().join("ops"))
                .unwrap_err()
                .contains("exists")
        );
    }

    #[test]
    fn a_secret_key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(&dir.path().join("ops")).unwrap();
        std::fs::set_permissions(&files.secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SigningKey::load(&files.secret).err().unwrap();
        assert!(err.contains("must be 0600"), "{err}");
    }

    #[test]
    fn a_public_key_given_as_the_secret_one_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(&dir.path().join("ops")).unwrap();
        let err = SigningKey::load(&files.public).err().unwrap();
        assert!(err.contains("is a public key"), "{err}");
        assert!(!err.contains("readable by others"), "{err}");
    }
}
