//! What the local commands (`exec`, `run`, `validate`, `module add`) share:
//! reading `--input`, the sandbox with its on-disk code cache, and the
//! module resolver over `--module` files and the data directory's store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};

use crate::limits::EngineSettings;
use crate::modules::{Reference, ReferenceError};
use crate::sandbox::Sandbox;
use crate::service::modules::{Modules, Place};
use crate::store::{Db, Location};

/// Where a command keeps its things: the data directory (compiled code,
/// the node id, the SQLite file) and the store (that file, or
/// `--database`).
#[derive(Debug, Clone)]
pub(crate) struct Home {
    pub data_dir: PathBuf,
    pub store: Location,
}

impl Home {
    pub fn new(data_dir: PathBuf, database: Option<&str>) -> Result<Home, String> {
        let store = Location::new(&data_dir, database)?;
        Ok(Home { data_dir, store })
    }
}

/// Reads `--input`: JSON text, or `@path`.
pub(crate) fn read_input(input: &str) -> anyhow::Result<String> {
    read_json_arg("--input", input)
}

/// `--input` of a local command (`run`, `exec`): as [`read_json_arg`], at
/// most `max` bytes (`--max-input-size`: a local run has no network body
/// to protect, but the bound stays unless raised).
pub(crate) fn read_local_input(input: &str, max: u64) -> anyhow::Result<String> {
    let too_big = |bytes: u64| {
        (bytes > max).then(|| {
            format!(
                "--input is {bytes} bytes, over the limit of {max} ({}); raise it with --max-input-size",
                crate::units::format_size(max)
            )
        })
    };
    read_bounded("--input", input, &too_big)
}

/// The JSON text of a command-line flag's value, or of the file it names
/// as `@FILE`, checked like a request body.
pub(crate) fn read_json_arg(flag: &str, value: &str) -> anyhow::Result<String> {
    read_bounded(flag, value, &|bytes| crate::nesting::check_size(flag, bytes).err())
}

/// [`read_json_arg`] with the size check `too_big` (its error, if any),
/// made on an `@FILE`'s size before it is read.
fn read_bounded(flag: &str, value: &str, too_big: &dyn Fn(u64) -> Option<String>) -> anyhow::Result<String> {
    let text = match value.strip_prefix('@') {
        Some(path) => {
            let size = std::fs::metadata(path)
                .with_context(|| format!("cannot read {flag} file {path}"))?
                .len();
            if let Some(error) = too_big(size) {
                bail!(error);
            }
            std::fs::read_to_string(path).with_context(|| format!("cannot read {flag} file {path}"))?
        }
        None => value.to_string(),
    };
    if let Some(error) = too_big(text.len() as u64) {
        bail!(error);
    }
    crate::nesting::check_depth(flag, &text).map_err(anyhow::Error::msg)?;
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text) {
        bail!("{flag} is not valid JSON: {e}");
    }
    Ok(text)
}

/// Reads a workflow definition file, refusing one over the size limit the
/// server applies to bodies.
pub(crate) fn read_definition(path: &Path) -> anyhow::Result<String> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    crate::nesting::check_size(&path.display().to_string(), size)
        .map_err(|e| anyhow::anyhow!("{e} for definitions"))?;
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The sandbox every local command uses: compiled code cached in the data
/// directory.
pub(crate) fn sandbox(data_dir: &Path) -> anyhow::Result<Sandbox> {
    Ok(Sandbox::new(EngineSettings::default(), Some(&data_dir.join("cache")))?)
}

/// Module resolution for local commands: `--module NAME=PATH` files, then
/// the local store when the data directory has one.
pub(crate) async fn modules(home: &Home, pairs: &[String]) -> anyhow::Result<Modules> {
    let files = Modules::parse_files(pairs).map_err(anyhow::Error::msg)?;
    let db = Db::open_existing(&home.store).await?;
    let sandbox = Arc::new(sandbox(&home.data_dir)?);
    Ok(Modules::new(sandbox, db, files, Place::Local))
}

/// The bytes of a module given as a file path or a store reference.
pub(crate) async fn module_bytes(home: &Home, module: &str) -> anyhow::Result<Vec<u8>> {
    let path = PathBuf::from(module);
    if path.is_file() {
        return std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()));
    }
    if module.ends_with(".wasm") {
        bail!("no such file: {module}");
    }
    let reference =
        Reference::parse(module).with_context(|| format!("{module:?} is neither a file nor a module reference"))?;
    match modules(home, &[]).await?.bytes(module).await {
        Ok(bytes) => Ok(bytes),
        Err(crate::service::RunError::ModuleMissing { .. }) => {
            Err(ReferenceError::NotFound(reference.to_string()).into())
        }
        Err(other) => Err(other.into()),
    }
}

/// What workflows may grant: `--allow-http` and `--allow-read`, the same
/// for `serve`, `run` and `exec`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Allow {
    /// Hosts steps may be granted, comma-separated or repeated:
    /// api.example.com, *.example.org:8443, 127.0.0.1:9000.
    #[arg(long = "allow-http", value_name = "HOST[,HOST...]")]
    pub http: Vec<String>,
    /// A directory steps may be granted read-only, seen at /NAME (repeatable).
    #[arg(long = "allow-read", value_name = "NAME=DIR")]
    pub read: Vec<String>,
}

impl Allow {
    pub fn grants(&self) -> anyhow::Result<crate::grants::ServerGrants> {
        let mut grants = crate::grants::ServerGrants::default();
        for list in &self.http {
            grants.allow_http(list).map_err(anyhow::Error::msg)?;
        }
        for spec in &self.read {
            grants.allow_read(spec).map_err(anyhow::Error::msg)?;
        }
        Ok(grants)
    }
}
