//! The server's own signing keys, kept in one JSON file in the data directory.
//!
//! The file holds the current key and the retired ones (for `old_verify_keys`). It is created
//! with a fresh random key on first start and written with owner-only permissions.

use std::path::{Path, PathBuf};

use guildhall_spec::{KeyId, ServerName, ServerSigningKey, base64url};
use serde::{Deserialize, Serialize};

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// Reading or writing the file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a valid key file.
    #[error("key file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyFile {
    current: StoredKey,
    #[serde(default)]
    retired: Vec<RetiredKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredKey {
    key_id: String,
    seed: String,
}

/// A key no longer used for signing, still published for verifying old events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetiredKey {
    /// Its id.
    pub key_id: String,
    /// The base64url public key.
    pub public_key: String,
    /// When it was retired (ms).
    pub expired_ts: u64,
}

/// The server's keys.
#[derive(Debug, Clone)]
pub struct ServerKeys {
    /// The key used for signing now.
    pub current: ServerSigningKey,
    /// Retired keys.
    pub retired: Vec<RetiredKey>,
}

/// Loads the key file at `path`, creating it with a fresh key if it does not exist.
pub fn load_or_create(path: &Path, server_name: &ServerName) -> Result<ServerKeys, KeyStoreError> {
    let io = |source| KeyStoreError::Io { path: path.to_owned(), source };
    let corrupt = |reason: String| KeyStoreError::Corrupt { path: path.to_owned(), reason };
    if !path.exists() {
        let file = KeyFile { current: fresh_key(), retired: Vec::new() };
        write(path, &file).map_err(io)?;
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let file: KeyFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    let key_id = KeyId::parse(&file.current.key_id).map_err(|e| corrupt(e.to_string()))?;
    let seed = base64url::decode_array::<32>(&file.current.seed)
        .ok_or_else(|| corrupt("seed is not 32 bytes".into()))?;
    Ok(ServerKeys {
        current: ServerSigningKey::from_seed(server_name.clone(), key_id, &seed),
        retired: file.retired,
    })
}

/// Retires the current key and makes a fresh one current. Returns the new key id.
pub fn rotate(path: &Path, server_name: &ServerName, now_ms: u64) -> Result<KeyId, KeyStoreError> {
    let keys = load_or_create(path, server_name)?;
    let mut retired = keys.retired;
    retired.push(RetiredKey {
        key_id: keys.current.key_id().to_string(),
        public_key: base64url::encode(keys.current.verifying_key().as_bytes()),
        expired_ts: now_ms,
    });
    let current = fresh_key();
    let key_id = KeyId::parse(&current.key_id)
        .map_err(|e| KeyStoreError::Corrupt { path: path.to_owned(), reason: e.to_string() })?;
    write(path, &KeyFile { current, retired })
        .map_err(|source| KeyStoreError::Io { path: path.to_owned(), source })?;
    Ok(key_id)
}

fn fresh_key() -> StoredKey {
    let version: [u8; 6] = rand::random();
    let version: String =
        base64url::encode(version).chars().filter(char::is_ascii_alphanumeric).collect();
    StoredKey {
        key_id: format!("ed25519:a_{version}"),
        seed: base64url::encode(rand::random::<[u8; 32]>()),
    }
}

fn write(path: &Path, file: &KeyFile) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(file).map_err(std::io::Error::other)?;
    let temporary = path.with_extension("tmp");
    {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut handle = options.open(&temporary)?;
        handle.write_all(text.as_bytes())?;
        handle.sync_all()?;
    }
    std::fs::rename(temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_loads_the_same_key_and_rotates() {
        let dir = std::env::temp_dir().join(format!("guildhall-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.json");
        let _ = std::fs::remove_file(&path);
        let name = ServerName::parse("example.org").unwrap();
        let first = load_or_create(&path, &name).unwrap();
        let again = load_or_create(&path, &name).unwrap();
        assert_eq!(first.current.seed(), again.current.seed());
        let new_id = rotate(&path, &name, 5).unwrap();
        let rotated = load_or_create(&path, &name).unwrap();
        assert_eq!(rotated.current.key_id(), &new_id);
        assert_eq!(rotated.retired[0].key_id, first.current.key_id().as_str());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
