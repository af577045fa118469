//! Modules for runs in this process: `--module name=path` files first, then
//! the local module store. Implements [`ModuleCatalog`] so validation can
//! reject unknown references before a run starts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::modules::{ModuleStore, Reference};
use crate::sandbox::{Module, Sandbox};
use crate::workflow::{Action, ModuleCatalog, ValidationError, Workflow};

pub struct LocalModules {
    sandbox: Arc<Sandbox>,
    /// `name` (or a full reference) → file.
    files: HashMap<String, PathBuf>,
    store: Option<ModuleStore>,
}

impl LocalModules {
    pub fn new(sandbox: Arc<Sandbox>, files: HashMap<String, PathBuf>, store: Option<ModuleStore>) -> Self {
        LocalModules { sandbox, files, store }
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

    fn bytes(&self, reference: &str) -> Result<Vec<u8>, String> {
        if let Some(path) = self.file_for(reference) {
            return std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
        }
        let parsed = Reference::parse(reference).map_err(|e| e.to_string())?;
        let Some(store) = &self.store else {
            return Err(format!(
                "module {reference} is not given (use --module {reference}=PATH)"
            ));
        };
        let digest = store
            .resolve(&parsed)
            .map_err(|e| format!("{e} (use --module NAME=PATH or `sandstep module add`)"))?;
        store.read(&digest).map_err(|e| e.to_string())
    }

    /// Loads every module the workflow uses, once per reference.
    pub fn load_all(&self, workflow: &Workflow) -> Result<HashMap<String, Arc<Module>>, Vec<ValidationError>> {
        let mut modules = HashMap::new();
        let mut errors = Vec::new();
        for step in &workflow.steps {
            let Action::Module { reference, .. } = &step.action else {
                continue;
            };
            if modules.contains_key(reference) {
                continue;
            }
            let loaded = self.bytes(reference).and_then(|bytes| {
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
        let parsed = Reference::parse(reference).map_err(|e| e.to_string())?;
        match &self.store {
            Some(store) => store
                .resolve(&parsed)
                .map(|_| ())
                .map_err(|e| format!("{e} (use --module NAME=PATH or `sandstep module add`)")),
            None => Err(format!(
                "module {reference} is not given (use --module {reference}=PATH)"
            )),
        }
    }
}

impl LocalModules {
    /// The sandbox modules are loaded into.
    pub fn sandbox(&self) -> Arc<Sandbox> {
        self.sandbox.clone()
    }
}
