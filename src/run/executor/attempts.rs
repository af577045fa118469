//! Attempts: starting queued units within the concurrency limits, running
//! each in a fresh sandbox store, and recording how each one ended
//! (success, retry with backoff, or failure).

use std::cmp::Reverse;
use std::sync::Arc;

use serde_json::Value;

use super::{Done, Driver, Timer};
use crate::run::event::{now_ms, AttemptRecord, ErrorKind, EventKind, StepError};
use crate::run::state::{RunStatus, StepStatus};
use crate::sandbox::{Access, AttemptRequest, AttemptResult, Module, StepContext, NO_ACCESS};
use crate::workflow::template::{Scope, TemplateValue};
use crate::workflow::Action;

/// A unit's templates, rendered in its scope.
struct Rendered {
    scope: Scope,
    input: Value,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl<'a> Driver<'a> {
    /// Starts queued units while the run's and each step's concurrency allow.
    pub(super) fn launch(&mut self) {
        if self.state.status != RunStatus::Running {
            return;
        }
        let total_limit = self.workflow.concurrency;
        for index in 0..self.workflow.steps.len() {
            let step_limit = self.workflow.steps[index].concurrency.unwrap_or(u32::MAX);
            while self.running.iter().sum::<u32>() < total_limit && self.running[index] < step_limit {
                let Some(item) = self.queued[index].pop_front() else {
                    break;
                };
                self.start_attempt(index, item);
                if self.state.steps[index].status != StepStatus::Running || self.state.status != RunStatus::Running {
                    break;
                }
            }
        }
    }

    pub(super) fn start_attempt(&mut self, index: usize, item: Option<usize>) {
        let workflow = self.workflow.clone();
        let step = &workflow.steps[index];
        let args = match &step.action {
            Action::Module { args, .. } => args.as_slice(),
            Action::Workflow { .. } => &[],
            Action::Sleep(_) | Action::Wait { .. } => return,
        };
        let Some(Rendered {
            scope,
            input,
            args,
            env,
        }) = self.render_unit(index, item, args)
        else {
            return;
        };
        let Action::Module { reference, .. } = &step.action else {
            return self.queue_child(index, item, input);
        };
        let Some(module) = self.loaded(reference) else {
            let error = StepError::new(
                ErrorKind::ModuleError,
                format!("module {reference} is not loaded"),
                false,
            );
            self.fail_step(index, item, None, error);
            return;
        };
        // A cached unit is looked up first (this round, with the others).
        let cache_key = match (&step.cache, &self.executor.cache) {
            (Some(_), Some(_)) if !self.missed.contains_key(&(index, item)) => Some(crate::run::cache::key(
                &module.info.digest,
                &input,
                &args,
                &env,
                &step.grants,
                &step.limits,
            )),
            _ => None,
        };
        if let Some(key) = cache_key {
            self.lookups.push((index, item, key));
            return;
        }
        if self.throttle_gate(index, item, &scope) {
            return;
        }
        let access = match self.executor.access(&step.grants, env) {
            Ok(access) => access,
            Err(refusal) => {
                let error = StepError::new(ErrorKind::CapabilityDenied, refusal, false);
                return self.fail_step(index, item, None, error);
            }
        };
        self.run_attempt(index, item, module, input, args, access);
    }

    /// A unit's input, arguments and environment, rendered in its scope (with
    /// its item under `for_each`); a template that fails fails the step.
    fn render_unit(&mut self, index: usize, item: Option<usize>, args: &[TemplateValue]) -> Option<Rendered> {
        let step = &self.workflow.steps[index];
        let base = self.scopes[index].clone().unwrap_or_else(|| self.scope(index));
        let scope = match (item, &self.items[index]) {
            (Some(i), Some(items)) => base.with_item(&items[i], i),
            _ => base,
        };
        let rendered = step.input.render(&scope).and_then(|input| {
            let args = args
                .iter()
                .map(|a| a.render(&scope).map(arg_text))
                .collect::<Result<Vec<_>, _>>()?;
            let env = step
                .env
                .iter()
                .map(|(name, value)| Ok((name.clone(), arg_text(value.render(&scope)?))))
                .collect::<Result<Vec<_>, String>>()?;
            Ok((input, args, env))
        });
        match rendered {
            Ok((input, args, env)) => Some(Rendered {
                scope,
                input,
                args,
                env,
            }),
            Err(message) => {
                let error = StepError::new(ErrorKind::TemplateError, format!("input: {message}"), false);
                self.fail_step(index, item, None, error);
                None
            }
        }
    }

    /// The module a reference names, loaded for this run (or its code).
    fn loaded(&self, reference: &str) -> Option<Arc<Module>> {
        self.spec
            .modules
            .get(reference)
            .or_else(|| self.code.as_ref()?.modules.get(reference))
            .cloned()
    }

    /// Records the attempt's start and runs it: inline when nothing else
    /// runs in this round, else as a task; its fuel reserved from the run's
    /// budget.
    fn run_attempt(
        &mut self,
        index: usize,
        item: Option<usize>,
        module: Arc<Module>,
        input: Value,
        args: Vec<String>,
        access: Option<Arc<Access>>,
    ) {
        let workflow = self.workflow.clone();
        let step = &workflow.steps[index];
        let unit = self.state.steps[index].units.get(item.unwrap_or(0));
        let attempt = unit.map_or(0, |u| u.started) + 1;
        let idempotency_key = match item {
            Some(i) => format!("{}/{}/{i}", self.state.run_id, step.id),
            None => format!("{}/{}", self.state.run_id, step.id),
        };
        let mut limits = step.limits.clone();
        let (reserved, capped) = match self.state.origin.budget_fuel {
            None => (0, false),
            Some(budget) => {
                let left = budget.saturating_sub(self.fuel_used + self.fuel_reserved);
                let capped = left < limits.fuel;
                limits.fuel = limits.fuel.min(left);
                self.fuel_reserved += limits.fuel;
                (limits.fuel, capped)
            }
        };
        // What an offline replay needs beyond the definition: the rendered
        // input, and the arguments, environment and lowered fuel when any.
        let env = access
            .as_ref()
            .filter(|a| !a.env.is_empty())
            .map(|a| a.env.iter().cloned().collect());
        self.emit(EventKind::StepStarted {
            step: step.id.clone(),
            item,
            attempt,
            idempotency_key: idempotency_key.clone(),
            node: self.executor.node.clone(),
            input: Some(input.clone()),
            args: (!args.is_empty()).then(|| args.clone()),
            env,
            fuel: capped.then_some(limits.fuel),
        });
        self.running[index] += 1;
        let traceparent = (self.executor.tracing && access.as_ref().is_some_and(|a| !a.http.is_empty())).then(|| {
            crate::telemetry::ids::attempt_traceparent(
                &self.state.run_id,
                self.state.origin.traceparent.as_deref(),
                &step.id,
                item,
                attempt,
            )
        });
        let context = StepContext {
            run_id: self.state.run_id.clone(),
            step_id: step.id.clone(),
            attempt,
            idempotency_key,
            traceparent,
        };
        let input = input.to_string();
        let sandbox = self.executor.sandbox.clone();
        let slots = self.executor.slots.clone();
        let attempt_future = async move {
            let _slot = slots.acquire_owned().await;
            let result = sandbox
                .run(
                    &module,
                    AttemptRequest {
                        input: &input,
                        args: &args,
                        context: &context,
                        limits: &limits,
                        access: access.as_deref().unwrap_or(&NO_ACCESS),
                    },
                )
                .await;
            Done {
                step: index,
                item,
                attempt,
                result,
                reserved,
                capped,
            }
        };
        if self.inline.is_none() {
            self.inline = Some((index, Box::pin(attempt_future)));
        } else {
            let handle = self.tasks.spawn(attempt_future);
            self.handles[index].retain(|h| !h.is_finished());
            self.handles[index].push(handle);
        }
    }

    pub(super) fn joined(&mut self, joined: Result<Done, tokio::task::JoinError>) {
        match joined {
            Ok(done) => self.finished(done),
            // Aborted tasks are accounted for by whoever aborted them; a panic
            // in an attempt task is a bug, logged where it ends.
            Err(error) if error.is_cancelled() => {}
            Err(error) => tracing::error!(%error, "attempt task panicked"),
        }
    }

    pub(super) fn finished(&mut self, done: Done) {
        let Done {
            step: index,
            item,
            attempt,
            result,
            reserved,
            capped,
        } = done;
        self.throttle_finished(index, item);
        self.fuel_reserved = self.fuel_reserved.saturating_sub(reserved);
        self.fuel_used += result.fuel_consumed;
        self.running[index] = self.running[index].saturating_sub(1);
        if self.state.steps[index].status != StepStatus::Running {
            return; // the step already failed (another item) or was canceled
        }
        let workflow = self.workflow.clone();
        let step = &workflow.steps[index];
        for line in &result.logs {
            self.emit(EventKind::StepLog {
                step: step.id.clone(),
                item,
                attempt,
                level: line.level,
                message: line.message.clone(),
            });
        }
        let mut record = AttemptRecord {
            attempt,
            duration_us: result.duration.as_micros() as u64,
            instantiate_us: result.instantiate.as_micros() as u64,
            fuel_consumed: result.fuel_consumed,
            peak_memory: result.peak_memory,
            error: None,
            audit: result.audit,
        };
        match result.result {
            AttemptResult::Succeeded { output } => match item {
                _ if step.cache.is_some() && self.missed.contains_key(&(index, item)) => {
                    self.record_cached(index, item, &output);
                    self.succeed_unit(index, item, Some(record), output);
                }
                Some(i) => {
                    self.succeed_unit(index, Some(i), Some(record), output);
                }
                None => self.succeed_unit(index, None, Some(record), output),
            },
            AttemptResult::Failed { error } => {
                let budget_spent = capped && matches!(error, crate::sandbox::Failure::FuelExhausted { .. });
                let error = if budget_spent {
                    let budget = self.state.origin.budget_fuel.unwrap_or_default();
                    StepError::new(
                        ErrorKind::BudgetExhausted,
                        format!(
                            "the run's fuel budget of {budget} ran out ({} consumed)",
                            self.fuel_used
                        ),
                        false,
                    )
                } else {
                    StepError::from_failure(&error)
                };
                record.error = Some(error.clone());
                if budget_spent {
                    // The whole run stops, whatever the step's on_failure.
                    let message = error.message.clone();
                    self.fail_step(index, item, Some(record), error);
                    if self.state.status == RunStatus::Running {
                        self.inline = None;
                        self.tasks.abort_all();
                        self.stop(format!("step {} failed: {message}", step.id));
                    }
                    return;
                }
                if error.retryable && attempt < step.retry.max_attempts {
                    let retry_at = now_ms() + step.retry.delay(attempt).as_millis() as u64;
                    self.emit(EventKind::StepRetrying {
                        step: step.id.clone(),
                        item,
                        record,
                        retry_at_ms: retry_at,
                    });
                    self.timers
                        .push(Reverse((retry_at, Timer::Retry { step: index, item })));
                } else {
                    self.fail_step(index, item, Some(record), error);
                }
            }
        }
    }

    /// A unit (an attempt or a child run) succeeded: a plain step succeeds,
    /// a for_each step once its last item does.
    pub(super) fn succeed_unit(
        &mut self,
        index: usize,
        item: Option<usize>,
        record: Option<AttemptRecord>,
        output: Value,
    ) {
        let step = self.id(index).to_string();
        match item {
            Some(item) => {
                self.emit(EventKind::ItemSucceeded {
                    step,
                    item,
                    record,
                    output,
                });
                self.remaining[index] = self.remaining[index].saturating_sub(1);
                self.maybe_finish_for_each(index);
            }
            None => self.emit(EventKind::StepSucceeded {
                step,
                record,
                output,
                event: None,
                traceparent: None,
            }),
        }
    }

    /// Completes a for_each step once every item succeeded.
    pub(super) fn maybe_finish_for_each(&mut self, index: usize) {
        let state = &self.state.steps[index];
        if state.status != StepStatus::Running || state.items.is_none() || self.remaining[index] > 0 {
            return;
        }
        let output = Value::Array(
            state
                .units
                .iter()
                .map(|u| u.output.clone().unwrap_or(Value::Null))
                .collect(),
        );
        self.emit(EventKind::StepSucceeded {
            step: self.id(index).to_string(),
            record: None,
            output,
            event: None,
            traceparent: None,
        });
    }
}

/// A command argument: strings as they are, other values as JSON.
fn arg_text(value: Value) -> String {
    match value {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

impl super::Executor {
    /// What an attempt of a step with `grants` and a rendered `env` may
    /// reach; `None` for nothing (most steps: no allocation). A grant this
    /// server no longer allows (it restarted with fewer `--allow-*`) is
    /// refused, naming it.
    pub(crate) fn access(
        &self,
        grants: &crate::grants::Grants,
        env: Vec<(String, String)>,
    ) -> Result<Option<Arc<crate::sandbox::Access>>, String> {
        if grants.is_empty() && env.is_empty() {
            return Ok(None);
        }
        let allowed = &self.caps.grants;
        if let Some(refusal) = grants.http.iter().find_map(|p| allowed.refuse_http(p)) {
            return Err(refusal);
        }
        let mut read = Vec::new();
        for name in &grants.read {
            match allowed.read.get(name) {
                Some(dir) => read.push((name.clone(), dir.dir.clone())),
                None => return Err(allowed.refuse_read(name).unwrap_or_default()),
            }
        }
        Ok(Some(Arc::new(crate::sandbox::Access {
            http: grants.http.clone(),
            read,
            scratch: grants.scratch,
            env,
        })))
    }
}
