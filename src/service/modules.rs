//! The one module resolver: where a module reference points (a `--module`
//! file for local commands, else the store), the catalog validation checks
//! references against, and compiled modules kept by digest for the process.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::error::RunError;
use crate::modules::Reference;
use crate::sandbox::{Module, ModuleError, Sandbox};
use crate::store::Db;
use crate::workflow::{Action, ModuleCatalog, ValidationError, Workflow};

/// Whose modules these are, for messages that say where to put one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `sandstep serve`: modules are pushed over the API.
    Server,
    /// Local commands: `--module` files and the data directory's store.
    Local,
}

impl Place {
    fn missing(self, reference: &str) -> String {
        match self {
            Place::Server => format!("no module {reference} on this server (push it first)"),
            Place::Local => {
                format!("no module {reference} in the store (use --module NAME=PATH or `sandstep module add`)")
            }
        }
    }
}

pub struct Modules {
    sandbox: Arc<Sandbox>,
    db: Option<Db>,
    /// `name` (or a full reference) → file, for local commands.
    files: HashMap<String, PathBuf>,
    place: Place,
    /// Compiled modules by digest.
    loaded: Mutex<HashMap<String, Arc<Module>>>,
}

/// What a reference resolves to.
enum Source<'a> {
    File(&'a PathBuf),
    Digest(String),
}

impl Modules {
    pub fn new(sandbox: Arc<Sandbox>, db: Option<Db>, files: HashMap<String, PathBuf>, place: Place) -> Self {
        Modules {
            sandbox,
            db,
            files,
            place,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    /// Parses `name=path` pairs (`--module`).
    pub fn parse_files(pairs: &[String]) -> Result<HashMap<String, PathBuf>, String> {
        pairs
            .iter()
            .map(|pair| match pair.split_once('=') {
                Some((name, path)) if !name.is_empty() && !path.is_empty() => {
                    Ok((name.to_string(), PathBuf::from(path)))
                }
                _ => Err(format!("--module {pair:?}: expected NAME=PATH")),
            })
            .collect()
    }

    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    fn file_for(&self, reference: &str) -> Option<&PathBuf> {
        if let Some(path) = self.files.get(reference) {
            return Some(path);
        }
        let name = reference.split(['@', ':']).next().unwrap_or(reference);
        self.files.get(name)
    }

    /// The references validation may accept, as of now.
    pub async fn catalog(&self) -> Result<Catalog, RunError> {
        let stored = match &self.db {
            Some(db) => db.list_modules().await?,
            None => Vec::new(),
        };
        Ok(Catalog {
            files: self.files.clone(),
            tags: stored.iter().map(|m| (m.name.clone(), m.tag.clone())).collect(),
            digests: stored.iter().map(|m| m.digest.clone()).collect(),
            kinds: stored.iter().map(|m| (m.digest.clone(), m.kind.clone())).collect(),
            tagged: stored
                .iter()
                .map(|m| ((m.name.clone(), m.tag.clone()), m.digest.clone()))
                .collect(),
            place: self.place,
            workflows: None,
        })
    }

    /// Compiles `bytes` off the async threads (a large component takes
    /// seconds) and keeps the module by digest.
    pub async fn compile(&self, bytes: Vec<u8>) -> Result<Arc<Module>, ModuleError> {
        let sandbox = self.sandbox.clone();
        let module = tokio::task::spawn_blocking(move || sandbox.load(&bytes))
            .await
            .expect("the compile task does not panic")?;
        let module = Arc::new(module);
        self.loaded
            .lock()
            .unwrap()
            .insert(module.info.digest.clone(), module.clone());
        Ok(module)
    }

    /// Where `reference` points, or a message saying it points nowhere.
    async fn source(&self, reference: &str) -> Result<Source<'_>, RunError> {
        if let Some(path) = self.file_for(reference) {
            return Ok(Source::File(path));
        }
        let parsed = Reference::parse(reference).map_err(|e| RunError::ModuleMissing {
            field: String::new(),
            message: e.to_string(),
        })?;
        let digest = match &self.db {
            Some(db) => db.resolve(&parsed).await?,
            None => None,
        };
        digest.map(Source::Digest).ok_or_else(|| RunError::ModuleMissing {
            field: String::new(),
            message: self.place.missing(reference),
        })
    }

    /// The bytes of a module given as a reference (a `--module` file or the
    /// store).
    pub async fn bytes(&self, reference: &str) -> Result<Vec<u8>, RunError> {
        match self.source(reference).await? {
            Source::File(path) => std::fs::read(path).map_err(|e| RunError::ModuleMissing {
                field: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }),
            Source::Digest(digest) => self.stored_bytes(&digest).await,
        }
    }

    async fn stored_bytes(&self, digest: &str) -> Result<Vec<u8>, RunError> {
        let bytes = match &self.db {
            Some(db) => db.module_bytes(digest).await?,
            None => None,
        };
        bytes.ok_or_else(|| RunError::NotFound(format!("module {digest}")))
    }

    /// The compiled module of a stored digest.
    pub async fn by_digest(&self, digest: &str) -> Result<Arc<Module>, RunError> {
        if let Some(module) = self.loaded.lock().unwrap().get(digest) {
            return Ok(module.clone());
        }
        let bytes = self.stored_bytes(digest).await?;
        self.compile(bytes)
            .await
            .map_err(|e| RunError::Internal(format!("stored module {digest} no longer loads: {e}")))
    }

    /// Pins every module reference of `workflow` to a digest and loads it:
    /// what a new run starts with. Every reference that fails is named.
    pub async fn pin(&self, workflow: &Workflow) -> Result<Pinned, RunError> {
        let mut pinned = Pinned::default();
        let mut errors = Vec::new();
        let code = workflow
            .code
            .as_ref()
            .map(|code| (code.module.as_str(), "code".to_string()));
        let steps = workflow.steps.iter().filter_map(|step| match &step.action {
            Action::Module { reference, .. } => Some((reference.as_str(), format!("steps.{}.module", step.id))),
            _ => None,
        });
        for (reference, location) in code.into_iter().chain(steps) {
            if pinned.digests.contains_key(reference) {
                continue;
            }
            let loaded = match self.load(reference).await? {
                Ok(module) if location == "code" && module.info.kind != crate::sandbox::ModuleKind::Workflow => Err(
                    format!("module {reference:?} is a {}, not a workflow", module.info.kind),
                ),
                Ok(module) if location != "code" && module.info.kind == crate::sandbox::ModuleKind::Workflow => Err(
                    format!("module {reference:?} is workflow code, not a step (a workflow runs it with `code:`)"),
                ),
                loaded => loaded,
            };
            match loaded {
                Ok(module) => {
                    pinned.digests.insert(reference.to_string(), module.info.digest.clone());
                    pinned.modules.insert(reference.to_string(), module);
                }
                Err(message) => errors.push(ValidationError { location, message }),
            }
        }
        match errors.len() {
            0 => Ok(pinned),
            1 => {
                let error = errors.remove(0);
                Err(RunError::ModuleMissing {
                    field: error.location,
                    message: error.message,
                })
            }
            _ => Err(RunError::InvalidWorkflow(errors)),
        }
    }

    /// Loads the module `reference` points at: `Ok(Err(why))` when it
    /// points nowhere or does not load.
    async fn load(&self, reference: &str) -> Result<Result<Arc<Module>, String>, RunError> {
        Ok(match self.source(reference).await {
            Ok(Source::File(path)) => match std::fs::read(path) {
                Ok(bytes) => self
                    .compile(bytes)
                    .await
                    .map_err(|e| format!("module {reference} was rejected: {e}")),
                Err(e) => Err(format!("cannot read {}: {e}", path.display())),
            },
            Ok(Source::Digest(digest)) => self.by_digest(&digest).await.map_err(|e| e.to_string()),
            Err(RunError::ModuleMissing { message, .. }) => Err(message),
            Err(other) => return Err(other),
        })
    }

    /// Loads the modules a stored run pinned (resuming it).
    pub async fn load_pinned(&self, digests: &HashMap<String, String>) -> Result<Pinned, RunError> {
        let mut modules = HashMap::new();
        for (reference, digest) in digests {
            modules.insert(reference.clone(), self.by_digest(digest).await?);
        }
        Ok(Pinned {
            digests: digests.clone(),
            modules,
        })
    }
}

impl crate::run::code::ModuleSource for Modules {
    fn resolve<'a>(
        &'a self,
        reference: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Arc<Module>, String>> + Send + 'a>> {
        Box::pin(async move {
            match self.load(reference).await {
                Ok(loaded) => loaded,
                Err(error) => Err(error.to_string()),
            }
        })
    }
}

/// A run's modules: each reference's digest and compiled module.
#[derive(Default, Clone)]
pub struct Pinned {
    pub digests: HashMap<String, String>,
    pub modules: HashMap<String, Arc<Module>>,
}

/// Module references known when validation runs.
pub struct Catalog {
    files: HashMap<String, PathBuf>,
    tags: HashSet<(String, String)>,
    digests: HashSet<String>,
    /// Each stored module's kind (`step`, `command`, `workflow`) by digest,
    /// and the digest each tag points at.
    kinds: HashMap<String, String>,
    tagged: HashMap<(String, String), String>,
    place: Place,
    /// Workflows by name with their latest version, when known (a server).
    pub workflows: Option<HashMap<String, i64>>,
}

impl ModuleCatalog for Catalog {
    fn check_workflow(&self, name: &str, version: Option<i64>) -> Result<(), String> {
        let Some(workflows) = &self.workflows else {
            return Ok(());
        };
        match (workflows.get(name), version) {
            (None, _) => Err(format!(
                "no workflow named {name:?} on this server: apply it before a workflow that runs it"
            )),
            (Some(latest), Some(version)) if version > *latest => Err(format!(
                "workflow {name} has no version {version} (its latest is {latest})"
            )),
            _ => Ok(()),
        }
    }

    fn check(&self, reference: &str) -> Result<(), String> {
        let name = reference.split(['@', ':']).next().unwrap_or(reference);
        if let Some(path) = self.files.get(reference).or_else(|| self.files.get(name)) {
            return if path.is_file() {
                Ok(())
            } else {
                Err(format!("no such file: {}", path.display()))
            };
        }
        let known = match Reference::parse(reference).map_err(|e| e.to_string())? {
            Reference::Tag { name, tag } => self.tags.contains(&(name, tag)),
            Reference::Digest { name, digest } => {
                self.digests.contains(&digest) && name.is_none_or(|n| self.tags.iter().any(|(t, _)| *t == n))
            }
        };
        if !known {
            return Err(self.place.missing(reference));
        }
        match self.kind(reference) {
            Some("workflow") => Err(format!(
                "module {reference:?} is workflow code, not a step (a workflow runs it with `code:`)"
            )),
            _ => Ok(()),
        }
    }

    fn check_code(&self, reference: &str) -> Result<(), String> {
        match self.check(reference) {
            Ok(()) => match self.kind(reference) {
                Some(kind) => Err(format!("module {reference:?} is a {kind}, not a workflow")),
                // A file: its kind is known once it is loaded.
                None => Ok(()),
            },
            Err(message) if self.kind(reference) == Some("workflow") => {
                let _ = message;
                Ok(())
            }
            Err(message) => Err(message),
        }
    }
}

impl Catalog {
    /// The kind of the stored module `reference` names, when it is stored.
    fn kind(&self, reference: &str) -> Option<&str> {
        let digest = match Reference::parse(reference).ok()? {
            Reference::Tag { name, tag } => self.tagged.get(&(name, tag))?.clone(),
            Reference::Digest { digest, .. } => digest,
        };
        self.kinds.get(&digest).map(String::as_str)
    }
}
