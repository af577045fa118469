//! Modules for runs in this process: `--module name=path` files first, then
//! the modules stored in the data directory's database. Implements
//! [`ModuleCatalog`] so validation can reject unknown references before a
//! run starts.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use crate::modules::Reference;
use crate::sandbox::{Module, Sandbox};
use crate::store::Db;
use crate::workflow::{Action, ModuleCatalog, ValidationError, Workflow};

pub struct LocalModules {
    sandbox: Arc<Sandbox>,
    /// `name` (or a full reference) → file.
    files: HashMap<String, PathBuf>,
    db: Option<Db>,
    /// What the database holds: `(name, tag)` pairs and digests.
    tags: HashSet<(String, String)>,
    digests: HashSet<String>,
}

impl LocalModules {
    pub async fn new(
        sandbox: Arc<Sandbox>,
        files: HashMap<String, PathBuf>,
        db: Option<Db>,
    ) -> Result<Self, crate::store::DbError> {
        let stored = match &db {
            Some(db) => db.list_modules().await?,
            None => Vec::new(),
        };
        Ok(LocalModules {
            sandbox,
            files,
            db,
            tags: stored.iter().map(|m| (m.name.clone(), m.tag.clone())).collect(),
            digests: stored.iter().map(|m| m.digest.clone()).collect(),
        })
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

    fn file_for(&self, reference: &str) -> Option<&PathBuf> {
        if let Some(path) = self.files.get(reference) {
            return Some(path);
        }
        let name = reference.split(['@', ':']).next().unwrap_or(reference);
        self.files.get(name)
    }

    async fn bytes(&self, reference: &str) -> Result<Vec<u8>, String> {
        if let Some(path) = self.file_for(reference) {
            return std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
        }
        self.check(reference)?;
        let parsed = Reference::parse(reference).map_err(|e| e.to_string())?;
        let db = self
            .db
            .as_ref()
            .ok_or_else(|| format!("no module {reference} in the store"))?;
        let digest = db.resolve(&parsed).await.map_err(|e| e.to_string())?;
        let digest = digest.ok_or_else(|| format!("no module {reference} in the store"))?;
        db.module_bytes(&digest)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no module {reference} in the store"))
    }

    /// Loads every module the workflow uses, once per reference.
    pub async fn load_all(&self, workflow: &Workflow) -> Result<HashMap<String, Arc<Module>>, Vec<ValidationError>> {
        let mut modules = HashMap::new();
        let mut errors = Vec::new();
        for step in &workflow.steps {
            let Action::Module { reference, .. } = &step.action else {
                continue;
            };
            if modules.contains_key(reference) {
                continue;
            }
            let loaded = self.bytes(reference).await.and_then(|bytes| {
                self.sandbox
                    .load(&bytes)
                    .map_err(|e| format!("module {reference} was rejected: {e}"))
            });
            match loaded {
                Ok(module) => {
                    modules.insert(reference.clone(), Arc::new(module));
                }
                Err(message) => errors.push(ValidationError {
                    location: format!("steps.{}.module", step.id),
                    message,
                }),
            }
        }
        if errors.is_empty() {
            Ok(modules)
        } else {
            Err(errors)
        }
    }
}

impl ModuleCatalog for LocalModules {
    fn check(&self, reference: &str) -> Result<(), String> {
        if let Some(path) = self.file_for(reference) {
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
        if known {
            Ok(())
        } else {
            Err(format!(
                "no module {reference} in the store (use --module NAME=PATH or `sandstep module add`)"
            ))
        }
    }
}

impl LocalModules {
    /// The sandbox modules are loaded into.
    pub fn sandbox(&self) -> Arc<Sandbox> {
        self.sandbox.clone()
    }
}
