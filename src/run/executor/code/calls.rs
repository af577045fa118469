//! A code run's live calls in its driver: each message of the code, the
//! calls that are answered at once (`now`, `random`, `patched`,
//! `start-child`), and the step-like calls, recorded and added to the run
//! as steps.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use super::{CodeEvent, Pending};
use crate::run::children::ChildStart;
use crate::run::code::host::{Live, Reply};
use crate::run::code::{input_digest, CallRecord};
use crate::run::event::{now_ms, ErrorKind, EventKind, Origin, StepError};
use crate::run::executor::Driver;
use crate::sandbox::{HostAnswer, HostCall, HostStop, Module, ModuleKind};
use crate::workflow::template::TemplateValue;
use crate::workflow::{Action, CallAction, Step};
use std::sync::Arc;

fn refused(kind: &str, message: impl Into<String>) -> HostStop {
    HostStop {
        kind: kind.into(),
        message: message.into(),
    }
}

impl Driver<'_> {
    /// Records a call: its `workflow.called` event (applied now, committed
    /// with the round). Returns the time recorded.
    pub(super) fn record(&mut self, name: Option<String>, call: CallRecord) -> u64 {
        let position = self.state.calls.len() as u32 + 1;
        self.emit(EventKind::WorkflowCalled { position, name, call });
        self.state.calls.last().map_or_else(now_ms, |c| c.at_ms)
    }

    /// Adds a step to the run's workflow (its state entry exists already).
    pub(super) fn push_step(&mut self, step: Step) -> usize {
        let workflow = Arc::get_mut(&mut self.workflow).expect("a code run's workflow is its own");
        let index = workflow.push_call(step);
        debug_assert_eq!(
            self.state.steps.get_index(index).map(|(name, _)| name.as_str()),
            Some(self.workflow.steps[index].id.as_str()),
            "calls' steps and states are in step"
        );
        self.remaining.push(0);
        self.handles.push(Vec::new());
        self.queued.push(Default::default());
        self.running.push(0);
        self.decided.push(false);
        self.scopes.push(None);
        self.items.push(None);
        self.throttled.push_step();
        index
    }

    /// One message of the code.
    pub(in crate::run::executor) async fn code_event(&mut self, event: CodeEvent) {
        match event {
            CodeEvent::Live(Live::Log(level, message)) => self.emit(EventKind::WorkflowLog { level, message }),
            CodeEvent::Live(Live::Call { call, awaited, reply }) => {
                let answer = self.live_call(call, awaited, reply).await;
                if let Some((reply, answer)) = answer {
                    let at_ms = self.state.calls.last().map(|c| c.at_ms);
                    let _ = reply.send(Reply { answer, at_ms });
                }
            }
            CodeEvent::Ended(end) => self.code_ended(end).await,
        }
    }

    /// Makes one live call; the answer, unless the call waits (an await).
    async fn live_call(
        &mut self,
        call: HostCall,
        awaited: bool,
        reply: oneshot::Sender<Reply>,
    ) -> Option<(oneshot::Sender<Reply>, Result<HostAnswer, HostStop>)> {
        let next = matches!(call, HostCall::AwaitNext(_));
        let answer = match call {
            HostCall::AwaitAll(ids) | HostCall::AwaitNext(ids)
                if ids
                    .iter()
                    .any(|id| !self.code.as_ref().is_some_and(|c| c.steps.contains_key(id))) =>
            {
                Err(refused(
                    "invalid_call",
                    format!(
                        "await of {ids:?}: only calls that start a step, a child, a sleep or a wait can be awaited"
                    ),
                ))
            }
            HostCall::AwaitAll(ids) | HostCall::AwaitNext(ids) => {
                self.code.as_mut()?.pending = Some(Pending {
                    ids,
                    next,
                    at_ms: None,
                    reply,
                });
                return None;
            }
            HostCall::Now => {
                let value = now_ms();
                self.record(None, CallRecord::Now { value });
                Ok(HostAnswer::Number(value))
            }
            HostCall::Random => {
                let value = fastrand::u64(..);
                self.record(None, CallRecord::Random { value });
                Ok(HostAnswer::Number(value))
            }
            HostCall::Patched(id) => {
                self.record(None, CallRecord::Patched { id });
                Ok(HostAnswer::Bool(true))
            }
            HostCall::StartChild { name, workflow, input } => self.start_child_call(name, workflow, input).await,
            other => match self.submit_call(other).await {
                HostAnswer::Submitted(id) if awaited => {
                    let at_ms = self.state.calls.last().map(|c| c.at_ms);
                    self.code.as_mut()?.pending = Some(Pending {
                        ids: vec![id],
                        next: false,
                        at_ms,
                        reply,
                    });
                    return None;
                }
                answer => Ok(answer),
            },
        };
        Some((reply, answer))
    }

    /// A step-like call: recorded and added as a step (a call that cannot
    /// be made is a step that failed with why).
    async fn submit_call(&mut self, call: HostCall) -> HostAnswer {
        let code_def = self.spec.workflow.code.as_ref().expect("a code run");
        let (name, record, compiled) = match call {
            HostCall::Step {
                name,
                module,
                input,
                options,
            } => {
                let (input_value, options_value, parsed) = call_args(&input, &options);
                let loaded = match parsed {
                    Ok(()) => self.call_module(&module).await.map_err(|m| (ErrorKind::ModuleError, m)),
                    Err(e) => Err(e),
                };
                let digest = loaded.as_ref().map(|m| m.info.digest.clone()).unwrap_or_default();
                let code = self.code.as_mut().expect("a code run");
                let compiled = loaded.and_then(|loaded| {
                    let step = code.module_step(code_def, &name, &digest, input_value.clone(), &options_value)?;
                    Ok((step, Some(loaded)))
                });
                let record = CallRecord::Step {
                    module,
                    digest,
                    input_digest: input_digest(&input_value),
                    input: input_value,
                    options: options_value,
                };
                (name, record, compiled)
            }
            HostCall::Child {
                name,
                workflow,
                input,
                options,
            } => {
                let (input_value, options_value, parsed) = call_args(&input, &options);
                let compiled = parsed.and_then(|()| {
                    let action = CallAction::Workflow(workflow.clone());
                    let step = code_def
                        .compile_call(&name, action, input_value.clone(), &options_value)
                        .map_err(refusal)?;
                    Ok((step, None))
                });
                let record = CallRecord::Child {
                    workflow,
                    input_digest: input_digest(&input_value),
                    input: input_value,
                    options: options_value,
                };
                (name, record, compiled)
            }
            HostCall::Sleep { name, duration_ms } => {
                let action = CallAction::Sleep(Duration::from_millis(duration_ms));
                let compiled = code_def
                    .compile_call(&name, action, Value::Null, &Value::Null)
                    .map(|s| (s, None))
                    .map_err(refusal);
                (name, CallRecord::Sleep { duration_ms }, compiled)
            }
            HostCall::Wait {
                name,
                topic,
                timeout_ms,
            } => {
                let action = CallAction::Wait {
                    topic: topic.clone(),
                    timeout: timeout_ms.map(Duration::from_millis),
                };
                let compiled = code_def
                    .compile_call(&name, action, Value::Null, &Value::Null)
                    .map(|s| (s, None))
                    .map_err(refusal);
                (name, CallRecord::Wait { topic, timeout_ms }, compiled)
            }
            _ => unreachable!("only step-like calls are submitted"),
        };
        self.record(Some(name.clone()), record);
        let position = self.state.calls.len() as u32;
        let (step, failure) = match compiled {
            Ok((step, module)) => {
                if let Some(module) = module {
                    let code = self.code.as_mut().expect("a code run");
                    code.modules.insert(module.info.digest.clone(), module);
                }
                (step, None)
            }
            Err((kind, message)) => (placeholder(code_def, &name), Some(StepError::new(kind, message, false))),
        };
        let index = self.push_step(step);
        let code = self.code.as_mut().expect("a code run");
        code.steps.insert(position, index);
        code.open.push(position);
        if let Some(error) = failure {
            self.decided[index] = true;
            self.fail_step(index, None, None, error);
        }
        HostAnswer::Submitted(position)
    }

    /// The module a call names: resolved at the instance's first call
    /// naming it, then reused (each call records the digest it ran).
    async fn call_module(&mut self, reference: &str) -> Result<Arc<Module>, String> {
        let code = self.code.as_ref().expect("a code run");
        if let Some(module) = code.references.get(reference).and_then(|d| code.modules.get(d)) {
            return Ok(module.clone());
        }
        let module = resolve(self.executor, reference).await?;
        let code = self.code.as_mut().expect("a code run");
        code.references
            .insert(reference.to_string(), module.info.digest.clone());
        Ok(module)
    }

    /// `start-child`: a run of another workflow, not awaited (idempotent
    /// under the run and the call's name, so a replay finds the same run).
    async fn start_child_call(
        &mut self,
        name: String,
        workflow: String,
        input: String,
    ) -> Result<HostAnswer, HostStop> {
        let input: Value = serde_json::from_str(&input)
            .map_err(|e| refused("invalid_call", format!("start-child {name:?}: input is not JSON: {e}")))?;
        let Some(children) = self.children.clone() else {
            return Err(refused(
                "child_failed",
                format!("start-child {name:?}: child runs need a server (`sandstep serve`)"),
            ));
        };
        let mut ancestors = self.state.origin.ancestors.clone();
        ancestors.push(self.workflow.name.clone());
        if ancestors.contains(&workflow) {
            return Err(refused(
                "child_failed",
                format!("workflow cycle: {} → {workflow}", ancestors.join(" → ")),
            ));
        }
        let start = ChildStart {
            workflow: workflow.clone(),
            version: None,
            input: input.clone(),
            idempotency_key: format!("{}/{name}", self.state.run_id),
            origin: Origin {
                trigger: Some(serde_json::json!({ "started_by": self.state.run_id, "call": name })),
                ancestors,
                token: self.state.origin.token.clone(),
                traceparent: Some(crate::telemetry::ids::child_traceparent(
                    &self.state.run_id,
                    self.state.origin.traceparent.as_deref(),
                    &name,
                )),
                ..Origin::default()
            },
        };
        let started = children.start(vec![start]).await.pop();
        match started {
            Some(Ok(run_id)) => {
                let record = CallRecord::StartChild {
                    workflow,
                    input_digest: input_digest(&input),
                    run_id: run_id.clone(),
                };
                self.record(Some(name), record);
                Ok(HostAnswer::Text(run_id))
            }
            Some(Err(message)) => Err(refused("child_failed", format!("start-child {name:?}: {message}"))),
            None => Err(refused("child_failed", format!("start-child {name:?}: not started"))),
        }
    }
}

impl super::CodeRun {
    /// The step of a module call: compiled from the definition's defaults
    /// and the call's options once per shape of options, then copied.
    pub(super) fn module_step(
        &mut self,
        code: &crate::workflow::Code,
        name: &str,
        digest: &str,
        input: Value,
        options: &Value,
    ) -> Result<Step, (ErrorKind, String)> {
        let shape = options.to_string();
        let mut step = match self.shapes.get(&shape) {
            Some(step) => step.clone(),
            None => {
                let action = CallAction::Module(digest.to_string());
                let step = code.compile_call(name, action, Value::Null, options).map_err(refusal)?;
                if self.shapes.len() < 256 {
                    self.shapes.insert(shape, step.clone());
                }
                step
            }
        };
        step.id = name.to_string();
        step.input = TemplateValue::Literal(input);
        if let Action::Module { reference, .. } = &mut step.action {
            *reference = digest.to_string();
        }
        Ok(step)
    }
}

/// A call's input and options as recorded (an input that is not JSON is
/// recorded as its text, as the replaying host sees it; options then as
/// null), and whether both are JSON: each text is parsed once.
fn call_args(input: &str, options: &str) -> (Value, Value, Result<(), (ErrorKind, String)>) {
    let parse = |text: &str, what: &str| {
        serde_json::from_str::<Value>(text).map_err(|e| (ErrorKind::InvalidCall, format!("{what} is not JSON: {e}")))
    };
    match parse(input, "input") {
        Err(e) => (Value::String(input.to_string()), Value::Null, Err(e)),
        Ok(input) => match parse(options, "options") {
            Ok(options) => (input, options, Ok(())),
            Err(e) => (input, Value::Null, Err(e)),
        },
    }
}

/// Loads the module a call names: a step or a command, never workflow code.
pub(super) async fn resolve(executor: &crate::run::executor::Executor, reference: &str) -> Result<Arc<Module>, String> {
    let Some(modules) = executor.modules.get() else {
        return Err(format!("module {reference} cannot be loaded here"));
    };
    let module = modules.resolve(reference).await?;
    match module.info.kind {
        ModuleKind::Step | ModuleKind::Command => Ok(module),
        ModuleKind::Workflow => Err(format!(
            "module {reference} is workflow code, not a step (run it with `child` as a workflow's code)"
        )),
    }
}

fn refusal(refused: crate::workflow::CallRefused) -> (ErrorKind, String) {
    let kind = match refused.kind {
        "capability_denied" => ErrorKind::CapabilityDenied,
        _ => ErrorKind::InvalidCall,
    };
    (kind, refused.message)
}

/// The step of a call that could not be made: it never runs (its step
/// fails at once, naming why).
pub(super) fn placeholder(code: &crate::workflow::Code, name: &str) -> Step {
    code.compile_call(name, CallAction::Sleep(Duration::ZERO), Value::Null, &Value::Null)
        .expect("a zero sleep always compiles")
}
