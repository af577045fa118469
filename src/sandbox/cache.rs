//! Compiled code cached on disk, keyed by module digest and engine settings.
//!
//! Only artifacts this program compiled itself are ever deserialized: a cache
//! file is written from `Engine::precompile_*` output, next to a SHA-256 of its
//! bytes, and is loaded only when that hash matches. User-supplied bytes are
//! always compiled, never deserialized.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;

use crate::files::write_atomic;

pub(crate) struct ArtifactCache {
    dir: PathBuf,
}

/// A compiled artifact, and whether it came from the cache.
pub(crate) struct Artifact {
    pub bytes: Vec<u8>,
    pub cached: bool,
}

impl ArtifactCache {
    /// The cache for this engine under `root`: one subdirectory per engine
    /// configuration and wasmtime version, so a change of either never loads
    /// an incompatible artifact.
    pub(crate) fn new(root: &Path, engine: &Engine) -> std::io::Result<Self> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        let dir = root.join(format!("{:016x}", hasher.finish()));
        std::fs::create_dir_all(&dir)?;
        Ok(ArtifactCache { dir })
    }

    fn paths(&self, digest_hex: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{digest_hex}.cwasm")),
            self.dir.join(format!("{digest_hex}.cwasm.sha256")),
        )
    }

    /// The cached artifact for `digest_hex`, or `compile()`'s result, which is
    /// then stored. A missing, unreadable or mismatched entry is recompiled.
    pub(crate) fn get_or_compile<E>(
        &self,
        digest_hex: &str,
        compile: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Artifact, E> {
        let (artifact_path, hash_path) = self.paths(digest_hex);
        if let (Ok(bytes), Ok(expected)) = (std::fs::read(&artifact_path), std::fs::read_to_string(&hash_path)) {
            if hex::encode(Sha256::digest(&bytes)) == expected.trim() {
                return Ok(Artifact { bytes, cached: true });
            }
            tracing::warn!(path = %artifact_path.display(), "compiled artifact does not match its hash, recompiling");
        }
        let bytes = compile()?;
        if let Err(err) = self.store(&artifact_path, &hash_path, &bytes) {
            // The cache is an optimisation: a full disk costs compile time, not correctness.
            tracing::warn!(error = %err, "could not write compiled artifact to the cache");
        }
        Ok(Artifact { bytes, cached: false })
    }

    fn store(&self, artifact_path: &Path, hash_path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        write_atomic(artifact_path, bytes)?;
        write_atomic(hash_path, hex::encode(Sha256::digest(bytes)).as_bytes())
    }

    /// Forgets the artifact of one module (after it was deleted).
    pub(crate) fn remove(&self, digest_hex: &str) {
        let (artifact_path, hash_path) = self.paths(digest_hex);
        let _ = std::fs::remove_file(hash_path);
        let _ = std::fs::remove_file(artifact_path);
    }
}
