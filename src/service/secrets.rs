//! Secrets set through the API (`PUT /v1/secrets/{name}`), sealed at rest
//! with XChaCha20-Poly1305 under `SANDSTEP_SECRETS_KEY` (a random nonce per
//! write, the secret's name as associated data so a sealed value cannot be
//! moved to another name). Without the key nothing can be stored.
//!
//! The values runs see are the environment's (`SANDSTEP_SECRET_*`) and the
//! stored ones (which replace an environment secret of the same name),
//! opened once when the process starts and kept current on every write. A
//! run takes the set current when it starts or resumes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::{RunError, Service};
use crate::run::Secrets;
use crate::store::secrets::{SealedSecret, SecretEntry};

/// The environment variable holding the key: 32 bytes as 64 hex characters.
pub const KEY_ENV: &str = "SANDSTEP_SECRETS_KEY";

/// Longest secret name, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Largest secret value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 << 10;

/// The key secrets are sealed with.
#[derive(Clone)]
pub struct SecretsKey([u8; 32]);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

impl SecretsKey {
    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let bad = || format!("{KEY_ENV} must be 32 random bytes as 64 hex characters (openssl rand -hex 32)");
        let bytes = hex::decode(text.trim()).map_err(|_| bad())?;
        Ok(SecretsKey(bytes.try_into().map_err(|_| bad())?))
    }

    /// The key from [`KEY_ENV`], if set.
    pub fn from_env() -> Result<Option<Self>, String> {
        match std::env::var(KEY_ENV) {
            Ok(text) if !text.trim().is_empty() => Self::from_hex(&text).map(Some),
            _ => Ok(None),
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    pub fn seal(&self, name: &str, value: &str) -> SealedSecret {
        // 24 random bytes from the operating system: a nonce never repeats.
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .expect("encryption of a bounded value cannot fail");
        SealedSecret {
            name: name.to_string(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    pub fn open(&self, sealed: &SealedSecret) -> Result<String, String> {
        let refused = || {
            format!(
                "{KEY_ENV} does not open the stored secret {}: is it the key the secrets were stored with?",
                sealed.name
            )
        };
        if sealed.nonce.len() != 24 {
            return Err(refused());
        }
        let clear = self
            .cipher()
            .decrypt(
                XNonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: sealed.name.as_bytes(),
                },
            )
            .map_err(|_| refused())?;
        String::from_utf8(clear).map_err(|_| refused())
    }
}

/// The secrets of this process: the environment's and the stored ones.
pub(crate) struct Vault {
    key: Option<SecretsKey>,
    base: BTreeMap<String, String>,
    stored: Mutex<BTreeMap<String, String>>,
    current: RwLock<Arc<Secrets>>,
}

impl Vault {
    pub fn new(base: &Secrets, key: Option<SecretsKey>) -> Self {
        Vault {
            key,
            base: base.values().clone(),
            stored: Mutex::new(BTreeMap::new()),
            current: RwLock::new(Arc::new(base.clone())),
        }
    }

    /// The secrets a run starting now sees.
    pub fn current(&self) -> Arc<Secrets> {
        self.current.read().expect("secrets lock").clone()
    }

    fn publish(&self, stored: &BTreeMap<String, String>) {
        let mut all = self.base.clone();
        all.extend(stored.iter().map(|(k, v)| (k.clone(), v.clone())));
        *self.current.write().expect("secrets lock") = Arc::new(Secrets::new(all));
    }
}

/// Checks a secret name: what a template can name as `secrets.NAME`.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || name.len() > MAX_NAME_CHARS {
        return Err(format!(
            "secret name {name:?} must be 1 to {MAX_NAME_CHARS} letters, digits or underscores, not starting with a digit"
        ));
    }
    Ok(())
}

impl Service {
    /// Opens the stored secrets (when the process starts). A stored secret
    /// the key cannot open is an error: the wrong key would make every run
    /// using it fail.
    pub async fn load_secrets(&self) -> Result<usize, RunError> {
        let sealed = self.store(self.db.sealed_secrets().await)?;
        if sealed.is_empty() {
            return Ok(0);
        }
        let Some(key) = &self.vault.key else {
            tracing::warn!(
                secrets = sealed.len(),
                "stored secrets cannot be used: {KEY_ENV} is not set"
            );
            return Ok(0);
        };
        let mut stored = self.vault.stored.lock().expect("secrets lock");
        for secret in &sealed {
            stored.insert(secret.name.clone(), key.open(secret).map_err(RunError::Internal)?);
        }
        self.vault.publish(&stored);
        Ok(sealed.len())
    }

    /// Seals and stores a secret; runs started from now on see it.
    pub async fn put_secret(&self, name: &str, value: &str) -> Result<SecretEntry, RunError> {
        check_name(name).map_err(|m| RunError::invalid("name", m))?;
        if value.is_empty() || value.len() > MAX_VALUE_BYTES {
            return Err(RunError::invalid(
                "value",
                format!("a secret value must be 1 to {MAX_VALUE_BYTES} bytes"),
            ));
        }
        let Some(key) = &self.vault.key else {
            return Err(RunError::NotConfigured(format!(
                "secrets cannot be stored: the server has no {KEY_ENV} (32 random bytes as 64 hex characters)"
            )));
        };
        let entry = self.store(self.db.put_secret(&key.seal(name, value)).await)?;
        let mut stored = self.vault.stored.lock().expect("secrets lock");
        stored.insert(name.to_string(), value.to_string());
        self.vault.publish(&stored);
        Ok(entry)
    }

    /// Names and update times of the stored secrets.
    pub async fn list_secrets(&self) -> Result<Vec<SecretEntry>, RunError> {
        self.store(self.db.list_secrets().await)
    }

    /// Removes a stored secret; runs already started keep their values.
    pub async fn delete_secret(&self, name: &str) -> Result<(), RunError> {
        if !self.store(self.db.delete_secret(name).await)? {
            return Err(RunError::NotFound(format!("secret {name}")));
        }
        let mut stored = self.vault.stored.lock().expect("secrets lock");
        stored.remove(name);
        self.vault.publish(&stored);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_under_their_key_and_name() {
        let key = SecretsKey::from_hex(&"ab".repeat(32)).unwrap();
        let sealed = key.seal("SMTP_KEY", "hunter2");
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(key.open(&sealed).unwrap(), "hunter2");
        let other = SecretsKey::from_hex(&"cd".repeat(32)).unwrap();
        assert!(other
            .open(&sealed)
            .unwrap_err()
            .contains("SANDSTEP_SECRETS_KEY does not open"));
        let moved = SealedSecret {
            name: "OTHER".into(),
            ..sealed.clone()
        };
        assert!(key.open(&moved).is_err());
        assert_ne!(key.seal("SMTP_KEY", "hunter2").nonce, sealed.nonce);
    }

    #[test]
    fn keys_and_names_are_checked() {
        assert!(SecretsKey::from_hex("abcd").unwrap_err().contains("64 hex characters"));
        assert!(SecretsKey::from_hex(&"zz".repeat(32)).is_err());
        assert!(check_name("SMTP_KEY").is_ok());
        assert!(check_name("_x1").is_ok());
        for bad in ["", "1ABC", "a-b", "a b", "é", &"a".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
