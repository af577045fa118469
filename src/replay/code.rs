//! A code workflow's code, replayed offline against its run's journal:
//! every recorded call must come again, and a run that ended must end the
//! same way, after the same fuel.

use serde_json::Value;

use super::recorded::code_end;
use super::{BundledRun, CodeReplay, Replayer, Verdict};
use crate::run::code::replay::{replay, Replayed};
use crate::workflow::Workflow;

impl Replayer<'_> {
    /// The code's verdict, for a run of a code workflow.
    pub(super) async fn code(&mut self, run: &BundledRun, workflow: &Workflow) -> Option<CodeReplay> {
        let code = workflow.code.as_ref()?;
        let digest = run.manifest.modules.get(&code.module).cloned().unwrap_or_default();
        let mut verdict = CodeReplay {
            run: run.manifest.run.id.clone(),
            module: digest.clone(),
            verdict: Verdict::NotReplayable,
            reason: None,
            recorded_fuel: None,
            replayed_fuel: None,
            diff: None,
        };
        let module = match self.module(&digest) {
            Ok(module) => module,
            Err(reason) => {
                verdict.reason = Some(reason);
                return Some(verdict);
            }
        };
        let id = &run.manifest.run.id;
        let replayed = replay(self.sandbox, &module, workflow, id, &run.events, &code.limits).await;
        let end = code_end(&run.events);
        verdict.recorded_fuel = end.fuel_consumed;
        let ended = matches!(run.manifest.run.status.as_str(), "completed" | "failed");
        (verdict.verdict, verdict.reason) = match replayed {
            Replayed::Diverged(message) => (Verdict::Diverged, Some(message)),
            Replayed::Live { position } if ended && end.fuel_consumed.is_some() => (
                Verdict::Diverged,
                Some(format!(
                    "the code makes call {position} where the recorded code returned"
                )),
            ),
            Replayed::Live { .. } => (Verdict::Same, None),
            Replayed::Failed { kind, message } => {
                let recorded = end.error.as_deref().unwrap_or_default();
                match recorded.contains(&message) {
                    true => (Verdict::Same, None),
                    false => (
                        Verdict::DifferentOutput,
                        Some(format!(
                            "the code stopped with {kind}: {message}; the run recorded {recorded:?}"
                        )),
                    ),
                }
            }
            Replayed::Ended { result, fuel_consumed } => {
                verdict.replayed_fuel = Some(fuel_consumed);
                let output = match result {
                    Ok(text) => match (serde_json::from_str::<Value>(&text), &end.output) {
                        (Ok(output), Some(recorded)) if &output == recorded => Ok(()),
                        (Ok(output), Some(recorded)) => {
                            verdict.diff = serde_json::to_value(json_patch::diff(recorded, &output)).ok();
                            Err("the code returned another output".to_string())
                        }
                        (_, _) => Err(format!("the code returned {text}; the run did not complete with it")),
                    },
                    Err(failure) => match &end.error {
                        Some(error) if error.contains(&failure.message) => Ok(()),
                        _ => Err(format!("the code failed with {}: {}", failure.kind, failure.message)),
                    },
                };
                match output {
                    Err(reason) => (Verdict::DifferentOutput, Some(reason)),
                    Ok(()) if end.fuel_consumed.is_some_and(|f| f != fuel_consumed) => (Verdict::DifferentFuel, None),
                    Ok(()) => (Verdict::Same, None),
                }
            }
        };
        Some(verdict)
    }
}
