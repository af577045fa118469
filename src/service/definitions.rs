//! Modules and workflow versions: what runs are made of. Stored once,
//! validated on the way in; a workflow version is validated once per
//! process and kept.

use std::sync::Arc;

use super::{RunError, Service};
use crate::store::modules::ModuleRecord;
use crate::store::workflows::WorkflowVersion;
use crate::workflow::Workflow;

impl Service {
    /// Validates, compiles and stores a module under `name:tag`.
    pub async fn put_module(&self, name: &str, tag: &str, bytes: Vec<u8>) -> Result<ModuleRecord, RunError> {
        crate::modules::check_name(name).map_err(|e| RunError::invalid("name", e.to_string()))?;
        crate::modules::check_tag(tag).map_err(|e| RunError::invalid("tag", e.to_string()))?;
        let module = self
            .modules
            .compile(bytes.clone())
            .await
            .map_err(|e| RunError::ModuleMissing {
                field: "body".into(),
                message: e.to_string(),
            })?;
        self.store(self.db.put_module(&bytes, &module.info, name, tag).await)
    }

    pub async fn list_modules(&self) -> Result<Vec<ModuleRecord>, RunError> {
        self.store(self.db.list_modules().await)
    }

    /// Every tag of one module name.
    pub async fn module(&self, name: &str) -> Result<Vec<ModuleRecord>, RunError> {
        let tags = self.store(self.db.module_tags(name).await)?;
        if tags.is_empty() {
            return Err(RunError::NotFound(format!("module {name}")));
        }
        Ok(tags)
    }

    pub async fn delete_module(&self, name: &str, tag: Option<&str>) -> Result<(), RunError> {
        match self.store(self.db.delete_module(name, tag).await)? {
            0 => Err(RunError::NotFound(format!(
                "module {name}{}",
                tag.map(|t| format!(":{t}")).unwrap_or_default()
            ))),
            _ => Ok(()),
        }
    }

    // ----- workflows -----

    /// Validates `source` and stores it as the next version of `name`
    /// (unchanged: the latest version, `false`).
    pub async fn put_workflow(&self, name: &str, source: &str) -> Result<(WorkflowVersion, bool, usize), RunError> {
        let workflow = self.candidate(name, source).await?;
        let (version, created) = self.store(self.db.put_workflow(name, source).await)?;
        if created {
            self.put_triggers(name, version.version, &workflow).await?;
            self.workflows_changed();
        }
        Ok((version, created, workflow.steps.len()))
    }

    /// Tells those following [`Service::workflow_changes`] that a version was stored.
    pub(super) fn workflows_changed(&self) {
        self.workflow_changes.send_modify(|stored| *stored += 1);
    }

    /// Changes each time a workflow version is stored, on any node.
    pub fn workflow_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.workflow_changes.subscribe()
    }

    pub async fn list_workflows(&self) -> Result<Vec<WorkflowVersion>, RunError> {
        self.store(self.db.list_workflows().await)
    }

    /// One stored version (the latest without `version`) and every version number.
    pub async fn workflow_source(
        &self,
        name: &str,
        version: Option<i64>,
    ) -> Result<(WorkflowVersion, Vec<i64>), RunError> {
        let found = self
            .store(self.db.workflow(name, version).await)?
            .ok_or_else(|| RunError::WorkflowMissing(name.to_string()))?;
        let versions = self.store(self.db.workflow_versions(name).await)?;
        Ok((found, versions))
    }

    /// A validated workflow version (the latest without `version`).
    /// Versions are immutable: each is read and validated once.
    pub async fn workflow(&self, name: &str, version: Option<i64>) -> Result<(i64, Arc<Workflow>), RunError> {
        let version = match version {
            Some(version) => version,
            None => self
                .store(self.db.latest_version(name).await)?
                .ok_or_else(|| RunError::WorkflowMissing(name.to_string()))?,
        };
        let key = (name.to_string(), version);
        if let Some(found) = self.workflows.lock().unwrap().get(&key) {
            return Ok((version, found.clone()));
        }
        let stored = self
            .store(self.db.workflow(name, Some(version)).await)?
            .ok_or_else(|| RunError::WorkflowMissing(format!("{name} version {version}")))?;
        // Its grants were checked against the server when it was applied; a
        // server restarted with fewer allowances still loads it (and its runs
        // resume), and refuses the grants at each attempt instead.
        let caps = crate::limits::Caps {
            grants: self.caps().grants.unchecked(),
            ..self.caps().clone()
        };
        let mut workflow = crate::workflow::load(&stored.source, &caps, None).map_err(RunError::InvalidWorkflow)?;
        workflow.version = version;
        let workflow = Arc::new(workflow);
        self.workflows.lock().unwrap().insert(key, workflow.clone());
        Ok((version, workflow))
    }
}
