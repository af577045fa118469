//! Offline replay of a run bundle: every recorded attempt of a module step
//! runs again in a fresh sandbox with its recorded input, arguments,
//! environment, limits and context, and a code workflow's code against its
//! journal; each gets a verdict. Needs no server and no data directory.
//!
//! - `bundle`: reading the zip, checking each module against its digest.
//! - `recorded`: what the events recorded of each attempt and of the code.
//! - `code`: the code's replay and its verdict.

mod bundle;
mod code;
mod recorded;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::bail;
use serde::Serialize;
use serde_json::Value;

pub use bundle::{Bundle, BundledRun};
pub use recorded::Outcome;
use recorded::Recorded;

use crate::limits::{Caps, EngineSettings, Limits};
use crate::run::event::ErrorKind;
use crate::run::secrets::REDACTED;
use crate::sandbox::{Access, AttemptRequest, LogLine, Module, Sandbox, StepContext, NO_ACCESS};
use crate::workflow::{Action, CallAction, Step, Workflow};

/// What a replay is asked to do.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// Only this step's attempts (with their logs).
    pub step: Option<String>,
    /// With `step`: run its last recorded attempt once with this input.
    pub input: Option<Value>,
}

/// How a replayed attempt (or code) compares with its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The same output (or error) and exactly the same fuel.
    Same,
    /// Another output or error (`diff` shows how, for two outputs).
    DifferentOutput,
    /// The same output or error, after another amount of fuel.
    DifferentFuel,
    /// The code made another call than the journal recorded.
    Diverged,
    /// Its effects lie outside the bundle, or nothing was recorded to compare.
    NotReplayable,
    /// Run with a changed input (`--input`): nothing to compare.
    ChangedInput,
}

/// One attempt, replayed.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptReplay {
    pub run: String,
    pub step: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    pub attempt: u32,
    pub module: String,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<Outcome>,
    /// A JSON Patch (RFC 6902) from the recorded output to the replayed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<Value>,
    /// The replayed attempt's log lines (with `--step`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<LogLine>,
}

/// A code workflow's code, replayed against its journal.
#[derive(Debug, Clone, Serialize)]
pub struct CodeReplay {
    pub run: String,
    pub module: String,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_fuel: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed_fuel: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<Value>,
}

/// Everything a replay found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run: String,
    pub workflow: String,
    pub attempts: Vec<AttemptReplay>,
    pub code: Vec<CodeReplay>,
    /// Replayed attempts and code that reproduced.
    pub same: usize,
    /// Replayed attempts and code that did not.
    pub different: usize,
    pub not_replayable: usize,
}

impl Report {
    /// Whether everything that could be replayed reproduced.
    pub fn reproduced(&self) -> bool {
        self.different == 0
    }
}

/// The sandbox replays run in: the engine's defaults, no compile cache on
/// disk (a bundle's modules are compiled from their bytes, as on upload).
pub fn sandbox() -> anyhow::Result<Sandbox> {
    Ok(Sandbox::new(EngineSettings::default(), None)?)
}

/// Replays the bundle at `path`.
pub async fn replay(sandbox: &Sandbox, path: &Path, options: &Options) -> anyhow::Result<Report> {
    let bundle = Bundle::read(path)?;
    let mut replayer = Replayer {
        sandbox,
        bundle: &bundle,
        loaded: HashMap::new(),
    };
    let root = &bundle.runs[0].manifest.run;
    let mut report = Report {
        run: root.id.clone(),
        workflow: root.workflow.clone(),
        attempts: Vec::new(),
        code: Vec::new(),
        same: 0,
        different: 0,
        not_replayable: 0,
    };
    for run in &bundle.runs {
        let workflow = definition(run)?;
        if options.step.is_none() {
            if let Some(code) = replayer.code(run, &workflow).await {
                report.code.push(code);
            }
        }
        let calls = recorded::module_calls(&run.events);
        let mut attempts = recorded::attempts(&run.events);
        if let Some(name) = &options.step {
            attempts.retain(|a| &a.step == name);
            if options.input.is_some() {
                attempts = attempts.pop().into_iter().collect();
            }
        }
        for mut recorded in attempts {
            if let Some(input) = &options.input {
                recorded.input = Some(input.clone());
                recorded.outcome = None;
            }
            let step = step_of(&workflow, &run.manifest.modules, &calls, &recorded.step);
            let mut replayed = replayer.attempt(&run.manifest.run.id, step, recorded, options).await;
            if options.input.is_some() && replayed.replayed.is_some() {
                replayed.verdict = Verdict::ChangedInput;
                replayed.reason = None;
            }
            report.attempts.push(replayed);
        }
    }
    if let (Some(name), true) = (&options.step, report.attempts.is_empty()) {
        bail!("the bundle records no attempt of a module step named {name:?}");
    }
    for verdict in report
        .attempts
        .iter()
        .map(|a| a.verdict)
        .chain(report.code.iter().map(|c| c.verdict))
    {
        match verdict {
            Verdict::Same | Verdict::ChangedInput => report.same += 1,
            Verdict::NotReplayable => report.not_replayable += 1,
            Verdict::DifferentOutput | Verdict::DifferentFuel | Verdict::Diverged => report.different += 1,
        }
    }
    Ok(report)
}

/// A run's workflow as its manifest defines it, at its version. Limits
/// and grants were checked when the version was applied; here any is
/// accepted (an attempt still gets no host and no directory).
fn definition(run: &BundledRun) -> anyhow::Result<Workflow> {
    let caps = Caps {
        fuel: u64::MAX,
        timeout: std::time::Duration::MAX,
        output_bytes: u64::MAX,
        log_bytes: u64::MAX,
        max_attempts: u32::MAX,
        http_requests: u64::MAX,
        http_bytes: u64::MAX,
        scratch_bytes: u64::MAX,
        grants: crate::grants::ServerGrants::default().unchecked(),
        ..Caps::default()
    };
    let mut workflow = crate::workflow::load(&run.manifest.definition, &caps, None).map_err(|errors| {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "the definition of run {} does not load: {}",
            run.manifest.run.id,
            errors.join("; ")
        )
    })?;
    workflow.version = run.manifest.run.version;
    Ok(workflow)
}

/// The step an attempt ran and its module's digest: a YAML step of the
/// definition, or a code run's call compiled from its recorded options.
fn step_of(
    workflow: &Workflow,
    pinned: &std::collections::BTreeMap<String, String>,
    calls: &HashMap<String, (String, Value)>,
    name: &str,
) -> Result<(Step, String), String> {
    if let Some(code) = &workflow.code {
        let (digest, options) = calls
            .get(name)
            .ok_or_else(|| format!("no recorded call names step {name:?}"))?;
        let step = code
            .compile_call(name, CallAction::Module(digest.clone()), Value::Null, options)
            .map_err(|refused| format!("its call's options do not compile: {}", refused.message))?;
        return Ok((step, digest.clone()));
    }
    let step = workflow
        .steps
        .iter()
        .find(|s| s.id == name)
        .ok_or_else(|| format!("the definition has no step {name:?}"))?;
    let Action::Module { reference, .. } = &step.action else {
        return Err(format!("step {name:?} is not a module step"));
    };
    let digest = pinned
        .get(reference)
        .ok_or_else(|| format!("the manifest pins no digest for module {reference:?}"))?;
    Ok((step.clone(), digest.clone()))
}

struct Replayer<'a> {
    sandbox: &'a Sandbox,
    bundle: &'a Bundle,
    loaded: HashMap<String, Result<Arc<Module>, String>>,
}

impl Replayer<'_> {
    /// The module of `digest`, compiled from the bundle's bytes once.
    fn module(&mut self, digest: &str) -> Result<Arc<Module>, String> {
        let (sandbox, bundle) = (self.sandbox, self.bundle);
        self.loaded
            .entry(digest.to_string())
            .or_insert_with(|| {
                let bytes = bundle
                    .modules
                    .get(digest)
                    .ok_or_else(|| format!("module {digest} is not in the bundle"))?;
                sandbox
                    .load(bytes)
                    .map(Arc::new)
                    .map_err(|e| format!("module {digest} does not load: {e}"))
            })
            .clone()
    }

    /// One recorded attempt, run again (or why it cannot be).
    async fn attempt(
        &mut self,
        run_id: &str,
        step: Result<(Step, String), String>,
        recorded: Recorded,
        options: &Options,
    ) -> AttemptReplay {
        let mut replay = AttemptReplay {
            run: run_id.to_string(),
            step: recorded.step.clone(),
            item: recorded.item,
            attempt: recorded.attempt,
            module: step.as_ref().map(|(_, d)| d.clone()).unwrap_or_default(),
            verdict: Verdict::NotReplayable,
            reason: None,
            recorded: recorded.outcome.clone(),
            replayed: None,
            diff: None,
            logs: Vec::new(),
        };
        let ready = step.and_then(|(step, digest)| {
            replayable(&step, &recorded, options)?;
            Ok((step, self.module(&digest)?))
        });
        let (step, module) = match ready {
            Ok(ready) => ready,
            Err(reason) => {
                replay.reason = Some(reason);
                return replay;
            }
        };
        let mut limits: Limits = step.limits.clone();
        if let Some(fuel) = recorded.fuel {
            limits.fuel = fuel;
        }
        let access = Access {
            http: Vec::new(),
            read: Vec::new(),
            scratch: step.grants.scratch,
            env: recorded.env.clone().unwrap_or_default(),
        };
        let access = if access.scratch.is_none() && access.env.is_empty() {
            &NO_ACCESS
        } else {
            &access
        };
        let context = StepContext {
            run_id: run_id.to_string(),
            step_id: recorded.step.clone(),
            attempt: recorded.attempt,
            idempotency_key: recorded.idempotency_key.clone(),
            traceparent: None,
        };
        let input = recorded.input.as_ref().map(Value::to_string).unwrap_or_default();
        let args = recorded.args.clone().unwrap_or_default();
        let attempt = self
            .sandbox
            .run(
                &module,
                AttemptRequest {
                    input: &input,
                    args: &args,
                    context: &context,
                    limits: &limits,
                    access,
                },
            )
            .await;
        let mut outcome = Outcome::of(&attempt);
        if options.step.is_some() {
            replay.logs = attempt.logs.clone();
        }
        // A fuel limit the run's budget lowered ends as the budget's error.
        if let (Some(_), Some(recorded), Some(error)) = (recorded.fuel, &recorded.outcome, &mut outcome.error) {
            if error.kind == ErrorKind::FuelExhausted
                && recorded
                    .error
                    .as_ref()
                    .is_some_and(|e| e.kind == ErrorKind::BudgetExhausted)
            {
                *error = recorded.error.clone().expect("checked above");
            }
        }
        if let Some(before) = &recorded.outcome {
            (replay.verdict, replay.diff) = compare(before, &outcome);
        }
        replay.replayed = Some(outcome);
        replay
    }
}

/// Why an attempt cannot be replayed from the bundle alone, if it cannot.
fn replayable(step: &Step, recorded: &Recorded, options: &Options) -> Result<(), String> {
    if !step.grants.http.is_empty() {
        return Err("the step is granted http: its responses are not in the bundle".into());
    }
    if !step.grants.read.is_empty() {
        return Err("the step is granted files: they are not in the bundle".into());
    }
    let Some(input) = &recorded.input else {
        return Err("its input was not recorded (an event from before inputs were kept)".into());
    };
    let has_args = matches!(&step.action, Action::Module { args, .. } if !args.is_empty());
    if (has_args && recorded.args.is_none()) || (!step.env.is_empty() && recorded.env.is_none()) {
        return Err("its arguments or environment were not recorded (an event from before they were kept)".into());
    }
    let redacted = input.to_string().contains(REDACTED)
        || recorded.env.iter().flatten().any(|(_, value)| value.contains(REDACTED));
    if redacted {
        return Err("its input or environment holds a secret, which a bundle never carries".into());
    }
    if options.input.is_some() {
        return Ok(());
    }
    match &recorded.outcome {
        None => Err("no end was recorded: the run stopped during this attempt".into()),
        Some(outcome) => match outcome.error.as_ref().map(|e| e.kind) {
            Some(ErrorKind::Timeout) => Err("it timed out: wall-clock time does not replay (fuel does)".into()),
            Some(ErrorKind::InstantiationFailed) => {
                Err("it could not be instantiated on its node (no free instance slot)".into())
            }
            _ => Ok(()),
        },
    }
}

/// The verdict of `after` against `before`, and a JSON Patch between two
/// outputs that differ.
fn compare(before: &Outcome, after: &Outcome) -> (Verdict, Option<Value>) {
    let same_result = before.status == after.status
        && before.output == after.output
        && before.error.as_ref().map(|e| (e.kind, &e.message)) == after.error.as_ref().map(|e| (e.kind, &e.message));
    if !same_result {
        let diff = match (&before.output, &after.output) {
            (Some(a), Some(b)) => serde_json::to_value(json_patch::diff(a, b)).ok(),
            _ => None,
        };
        return (Verdict::DifferentOutput, diff);
    }
    if before.fuel_consumed != after.fuel_consumed {
        return (Verdict::DifferentFuel, None);
    }
    (Verdict::Same, None)
}
