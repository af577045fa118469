//! The module store: binaries on disk, content-addressed by `sha256:<hex>`,
//! with `name:tag` references that can move (like container image tags).
//!
//! Layout under the data directory:
//! - `modules/blobs/<hex>.wasm`: each distinct binary once, never rewritten;
//! - `modules/index.json`: what each blob is (kind, size, imports, exports)
//!   and which digest each `name:tag` points at, replaced atomically under a
//!   lock file so concurrent `module add`s never lose each other's tags.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sandbox::{ModuleInfo, ModuleKind};

/// The tag used when a reference names none.
pub const DEFAULT_TAG: &str = "latest";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "invalid module name {0:?}: use 1-128 characters a-z, 0-9, '.', '_', '-', starting with a letter or digit"
    )]
    InvalidName(String),
    #[error(
        "invalid tag {0:?}: use 1-128 characters A-Z, a-z, 0-9, '.', '_', '-', starting with a letter, digit or '_'"
    )]
    InvalidTag(String),
    #[error("invalid digest {0:?}: expected sha256: followed by 64 hex digits")]
    InvalidDigest(String),
    #[error("no module {0} in the store")]
    NotFound(String),
    #[error("stored module {digest} is corrupt (its bytes no longer match the digest)")]
    Corrupt { digest: String },
    #[error("module store at {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("module store index at {path} is unreadable: {message}")]
    BadIndex { path: String, message: String },
}

/// What the store records about one binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    pub kind: ModuleKind,
    pub size: u64,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    /// digest → record
    blobs: BTreeMap<String, BlobRecord>,
    /// name → tag → digest
    names: BTreeMap<String, BTreeMap<String, String>>,
}

/// One `name:tag` in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaggedModule {
    pub name: String,
    pub tag: String,
    pub digest: String,
    pub kind: ModuleKind,
    pub size: u64,
}

/// The result of adding a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Added {
    pub name: String,
    pub tag: String,
    pub digest: String,
    pub kind: ModuleKind,
    pub size: u64,
    /// The digest the tag pointed at before, when it moved.
    pub previous: Option<String>,
}

/// A parsed module reference: `name`, `name:tag`, `sha256:<hex>` or
/// `name@sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag { name: String, tag: String },
    Digest { name: Option<String>, digest: String },
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, StoreError> {
        if let Some((name, digest)) = text.split_once('@') {
            check_name(name)?;
            check_digest(digest)?;
            return Ok(Reference::Digest {
                name: Some(name.into()),
                digest: digest.into(),
            });
        }
        if text.starts_with("sha256:") {
            check_digest(text)?;
            return Ok(Reference::Digest {
                name: None,
                digest: text.into(),
            });
        }
        let (name, tag) = text.split_once(':').unwrap_or((text, DEFAULT_TAG));
        check_name(name)?;
        check_tag(tag)?;
        Ok(Reference::Tag {
            name: name.into(),
            tag: tag.into(),
        })
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag { name, tag } => write!(f, "{name}:{tag}"),
            Reference::Digest {
                name: Some(name),
                digest,
            } => write!(f, "{name}@{digest}"),
            Reference::Digest { name: None, digest } => f.write_str(digest),
        }
    }
}

pub fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = (1..=128).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName(name.into()))
    }
}

pub fn check_tag(tag: &str) -> Result<(), StoreError> {
    let ok = (1..=128).contains(&tag.len())
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidTag(tag.into()))
    }
}

fn check_digest(digest: &str) -> Result<(), StoreError> {
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
        Ok(())
    } else {
        Err(StoreError::InvalidDigest(digest.into()))
    }
}

pub struct ModuleStore {
    root: PathBuf,
}

impl ModuleStore {
    /// Opens (creating if needed) the store under `data_dir/modules`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let root = data_dir.join("modules");
        std::fs::create_dir_all(root.join("blobs")).map_err(|source| io(&root, source))?;
        Ok(ModuleStore { root })
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.root
            .join("blobs")
            .join(format!("{}.wasm", digest.trim_start_matches("sha256:")))
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn read_index(&self) -> Result<Index, StoreError> {
        let path = self.index_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::BadIndex {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(source) => Err(io(&path, source)),
        }
    }

    /// Runs `change` on the index under an exclusive lock and saves it.
    fn update<R>(&self, change: impl FnOnce(&mut Index) -> Result<R, StoreError>) -> Result<R, StoreError> {
        let lock_path = self.root.join("index.lock");
        let lock = File::create(&lock_path).map_err(|source| io(&lock_path, source))?;
        lock.lock().map_err(|source| io(&lock_path, source))?;
        let mut index = self.read_index()?;
        let result = change(&mut index)?;
        let bytes = serde_json::to_vec_pretty(&index).expect("the index serializes");
        let path = self.index_path();
        crate::files::write_atomic(&path, &bytes).map_err(|source| io(&path, source))?;
        Ok(result)
    }

    /// Stores `bytes` (already loaded and classified as `info`) and points
    /// `name:tag` at it. Adding the same bytes again is a no-op on the blob.
    pub fn add(&self, bytes: &[u8], info: &ModuleInfo, name: &str, tag: &str) -> Result<Added, StoreError> {
        check_name(name)?;
        check_tag(tag)?;
        let blob = self.blob_path(&info.digest);
        if !blob.exists() {
            crate::files::write_atomic(&blob, bytes).map_err(|source| io(&blob, source))?;
        }
        self.update(|index| {
            index.blobs.insert(
                info.digest.clone(),
                BlobRecord {
                    kind: info.kind,
                    size: info.size,
                    imports: info.imports.clone(),
                    exports: info.exports.clone(),
                },
            );
            let previous = index
                .names
                .entry(name.into())
                .or_default()
                .insert(tag.into(), info.digest.clone());
            Ok(Added {
                name: name.into(),
                tag: tag.into(),
                digest: info.digest.clone(),
                kind: info.kind,
                size: info.size,
                previous: previous.filter(|p| *p != info.digest),
            })
        })
    }

    /// The digest a reference points at.
    pub fn resolve(&self, reference: &Reference) -> Result<String, StoreError> {
        let index = self.read_index()?;
        let not_found = || StoreError::NotFound(reference.to_string());
        match reference {
            Reference::Tag { name, tag } => index
                .names
                .get(name)
                .and_then(|tags| tags.get(tag))
                .cloned()
                .ok_or_else(not_found),
            Reference::Digest { name, digest } => {
                let named = match name {
                    Some(name) => index
                        .names
                        .get(name)
                        .is_some_and(|tags| tags.values().any(|d| d == digest)),
                    None => true,
                };
                if named && index.blobs.contains_key(digest) {
                    Ok(digest.clone())
                } else {
                    Err(not_found())
                }
            }
        }
    }

    /// The bytes of a stored module, checked against its digest.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let bytes = std::fs::read(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound(digest.into()),
            _ => io(&path, source),
        })?;
        if crate::sandbox::digest(&bytes) != digest {
            return Err(StoreError::Corrupt { digest: digest.into() });
        }
        Ok(bytes)
    }

    /// Every `name:tag`, sorted by name then tag.
    pub fn list(&self) -> Result<Vec<TaggedModule>, StoreError> {
        let index = self.read_index()?;
        let mut out = Vec::new();
        for (name, tags) in &index.names {
            for (tag, digest) in tags {
                let record = index.blobs.get(digest);
                out.push(TaggedModule {
                    name: name.clone(),
                    tag: tag.clone(),
                    digest: digest.clone(),
                    kind: record.map_or(ModuleKind::Step, |r| r.kind),
                    size: record.map_or(0, |r| r.size),
                });
            }
        }
        Ok(out)
    }
}

fn io(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}
