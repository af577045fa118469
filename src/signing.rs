//! Receipt signatures: a node's Ed25519 key (a PKCS#8 PEM file, as
//! `openssl genpkey -algorithm ed25519` writes one), and DSSE envelopes
//! signed with it (the signature covers DSSE's pre-authentication
//! encoding of the payload type and payload).

use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The payload type of an in-toto Statement.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the key.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// A node's signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pub keyid: String,
    pub public: [u8; 32],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.keyid)
    }
}

impl SigningKey {
    /// The key in the PKCS#8 PEM file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<SigningKey> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let der = pem_body(&text, "PRIVATE KEY")
            .with_context(|| format!("{}: not a PEM private key (BEGIN PRIVATE KEY)", path.display()))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|e| anyhow::anyhow!("{}: not an Ed25519 PKCS#8 key: {e}", path.display()))?;
        Ok(SigningKey::of(pair))
    }

    /// The key at `path`, generated there first (file mode 0600) when
    /// there is none.
    pub fn load_or_generate(path: &Path) -> anyhow::Result<SigningKey> {
        if path.exists() {
            return SigningKey::load(path);
        }
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| anyhow::anyhow!("cannot generate a key: {e}"))?;
        let pem = pem("PRIVATE KEY", pkcs8.as_ref());
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        file.write_all(pem.as_bytes())?;
        file.sync_all()?;
        SigningKey::load(path)
    }

    fn of(pair: Ed25519KeyPair) -> SigningKey {
        let public: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .expect("an Ed25519 public key is 32 bytes");
        SigningKey {
            keyid: keyid(&public),
            public,
            pair,
        }
    }

    /// `payload` in a DSSE envelope of `payload_type`, signed.
    pub fn envelope(&self, payload_type: &str, payload: &[u8]) -> Envelope {
        let signature = self.pair.sign(&pae(payload_type, payload));
        Envelope {
            payload_type: payload_type.to_string(),
            payload: BASE64.encode(payload),
            signatures: vec![Signature {
                keyid: self.keyid.clone(),
                sig: BASE64.encode(signature.as_ref()),
            }],
        }
    }
}

/// A key's id: `sha256:` and the hex SHA-256 of the raw public key.
pub fn keyid(public: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(public)))
}

/// The public key as a PEM SubjectPublicKeyInfo (`openssl pkey -pubin` reads it).
pub fn public_pem(public: &[u8; 32]) -> String {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(public);
    pem("PUBLIC KEY", &der)
}

/// A public key given as 64 hex digits or a PEM SubjectPublicKeyInfo.
pub fn parse_public(text: &str) -> anyhow::Result<[u8; 32]> {
    let text = text.trim();
    let mut key = [0u8; 32];
    if hex::decode_to_slice(text, &mut key).is_ok() {
        return Ok(key);
    }
    let der = pem_body(text, "PUBLIC KEY").context("a public key is 64 hex digits or a PEM PUBLIC KEY")?;
    match der.strip_prefix(&SPKI_PREFIX[..]) {
        Some(raw) if raw.len() == 32 => {
            key.copy_from_slice(raw);
            Ok(key)
        }
        _ => bail!("the PEM PUBLIC KEY is not an Ed25519 key"),
    }
}

/// DSSE's pre-authentication encoding: `DSSEv1 <len> <type> <len> <payload>`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The payload, base64.
    pub payload: String,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Signature {
    pub keyid: String,
    /// The signature, base64.
    pub sig: String,
}

impl Envelope {
    /// The payload, once a signature by `public` checks.
    pub fn verify(&self, public: &[u8; 32]) -> Result<Vec<u8>, String> {
        let payload = BASE64
            .decode(&self.payload)
            .map_err(|e| format!("the payload is not base64: {e}"))?;
        let id = keyid(public);
        let signature = self
            .signatures
            .iter()
            .find(|s| s.keyid == id)
            .ok_or_else(|| format!("no signature by key {id}"))?;
        let sig = BASE64
            .decode(&signature.sig)
            .map_err(|e| format!("the signature is not base64: {e}"))?;
        UnparsedPublicKey::new(&ED25519, public)
            .verify(&pae(&self.payload_type, &payload), &sig)
            .map_err(|_| format!("the signature by key {id} does not check"))?;
        Ok(payload)
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = BASE64.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

fn pem_body(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body: String = text[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    BASE64.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_verifies_with_its_key_only_and_not_once_changed() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_generate(&dir.path().join("k.pem")).unwrap();
        let again = SigningKey::load_or_generate(&dir.path().join("k.pem")).unwrap();
        assert_eq!(key.public, again.public, "the key is kept, not replaced");
        let envelope = key.envelope(IN_TOTO, b"{\"a\":1}");
        assert_eq!(envelope.verify(&key.public).unwrap(), b"{\"a\":1}");
        assert_eq!(parse_public(&public_pem(&key.public)).unwrap(), key.public);
        let other = SigningKey::load_or_generate(&dir.path().join("other.pem")).unwrap();
        assert!(envelope
            .verify(&other.public)
            .unwrap_err()
            .contains("no signature by key"));
        let mut changed = envelope.clone();
        changed.payload = BASE64.encode(b"{\"a\":2}");
        assert!(changed.verify(&key.public).unwrap_err().contains("does not check"));
    }
}
