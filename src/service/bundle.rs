//! Run bundles: a run as a zip a user can keep, move to another machine
//! and read without a server. `manifest.json` says what ran (the
//! definition, input, status, output or error, times, the digest of every
//! module used and the names of the secrets the workflow may use; never a
//! value), `modules/<digest>.wasm` holds each module the run and its child
//! runs used (steps and workflow code), `events.jsonl` the run's events as
//! stored, byte for byte (already redacted), `hashes.txt` their chain
//! hashes, and each child run has the same under `children/<run id>/`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;

use serde_json::{json, Value};
use zip::write::SimpleFileOptions;

use super::{RunError, Service};
use crate::run::code::CallRecord;
use crate::run::state::RunState;
use crate::store::chain::StoredEvent;

/// The bundle layout's version, in every manifest (replay reads this one).
pub const BUNDLE_FORMAT: u32 = 1;

/// Child runs are followed this deep at most (the nesting cap is lower).
const MAX_DEPTH: usize = 16;

impl Service {
    /// The zip of run `run_id`, its child runs and every module they used.
    pub async fn bundle(&self, run_id: &str) -> Result<Vec<u8>, RunError> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let mut digests = BTreeSet::new();
        let mut pending = vec![(String::new(), run_id.to_string(), 0usize)];
        while let Some((prefix, id, depth)) = pending.pop() {
            let (manifest, events, children, used) = self.bundled_run(&id).await?;
            digests.extend(used);
            put(&mut writer, &format!("{prefix}manifest.json"), &pretty(&manifest))?;
            // Each event's stored JSON byte for byte, and its chain hash
            // (an empty line for an event recorded before chains).
            let mut lines = String::new();
            let mut hashes = String::new();
            for event in &events {
                lines.push_str(&event.body);
                lines.push('\n');
                hashes.push_str(event.hash.as_deref().unwrap_or_default());
                hashes.push('\n');
            }
            put(&mut writer, &format!("{prefix}events.jsonl"), lines.as_bytes())?;
            put(&mut writer, &format!("{prefix}hashes.txt"), hashes.as_bytes())?;
            if depth < MAX_DEPTH {
                for child in children {
                    pending.push((format!("{prefix}children/{child}/"), child, depth + 1));
                }
            }
        }
        let mut missing = Vec::new();
        for digest in &digests {
            match self.store(self.db.module_bytes(digest).await)? {
                Some(bytes) => put(&mut writer, &format!("modules/{digest}.wasm"), &bytes)?,
                None => missing.push(digest.clone()),
            }
        }
        let index = json!({
            "format": BUNDLE_FORMAT,
            "run": run_id,
            "modules": digests,
            "missing_modules": missing,
        });
        put(&mut writer, "modules/index.json", &pretty(&index))?;
        let cursor = writer
            .finish()
            .map_err(|e| RunError::Internal(format!("cannot write the bundle: {e}")))?;
        Ok(cursor.into_inner())
    }

    /// One run's manifest and events, its child runs, and the digests of
    /// the modules it used.
    async fn bundled_run(
        &self,
        run_id: &str,
    ) -> Result<(Value, Vec<StoredEvent>, Vec<String>, BTreeSet<String>), RunError> {
        let row = self.run_row(run_id).await?;
        let (_, workflow) = self.workflow(&row.workflow, Some(row.version)).await?;
        let (source, _) = self.workflow_source(&row.workflow, Some(row.version)).await?;
        let stored = self.store(self.db.stored_events(run_id).await)?;
        let events = self.events(run_id, 0).await?;
        let state = RunState::from_events(run_id, &workflow, &events);
        let used = modules_used(&row, &state);
        let mut children: Vec<String> = state
            .calls
            .iter()
            .filter_map(|call| match &call.call {
                CallRecord::StartChild { run_id, .. } => Some(run_id.clone()),
                _ => None,
            })
            .collect();
        for step in state.steps.values() {
            children.extend(step.units.iter().filter_map(|u| u.child.clone()));
        }
        children.sort();
        children.dedup();
        let pinned: BTreeMap<&String, &String> = row.modules.iter().collect();
        let manifest = json!({
            "format": BUNDLE_FORMAT,
            "engine": format!("sandstep {}", env!("CARGO_PKG_VERSION")),
            "run": {
                "id": row.id,
                "workflow": row.workflow,
                "version": row.version,
                "status": row.status,
                "input": row.input,
                "output": row.output,
                "error": row.error,
                "created_ms": row.created_ms,
                "updated_ms": row.updated_ms,
                "upgraded_from": state.upgraded.map(|(from, _)| from),
            },
            "definition": source.source,
            "modules": pinned,
            "module_digests": used,
            "secrets": workflow.secrets.clone().unwrap_or_default(),
            "events": events.len(),
            "chain_head": row.head,
            "children": children,
        });
        Ok((manifest, stored, children, used))
    }
}

/// Every module digest a run used: those it is pinned to and each its
/// code's calls ran.
pub(super) fn modules_used(row: &crate::store::runs::RunRow, state: &RunState) -> BTreeSet<String> {
    let mut used: BTreeSet<String> = row.modules.values().cloned().collect();
    for call in &state.calls {
        if let CallRecord::Step { digest, .. } = &call.call {
            if !digest.is_empty() {
                used.insert(digest.clone());
            }
        }
    }
    used
}

fn pretty(value: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("JSON serializes")
}

fn put(writer: &mut zip::ZipWriter<std::io::Cursor<Vec<u8>>>, name: &str, bytes: &[u8]) -> Result<(), RunError> {
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    writer
        .start_file(name, options)
        .and_then(|()| writer.write_all(bytes).map_err(Into::into))
        .map_err(|e| RunError::Internal(format!("cannot write {name} into the bundle: {e}")))
}
