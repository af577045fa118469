//! Deciding steps: which pending steps are ready, whether each is skipped,
//! fails before it starts or is queued (with its for_each items), and the
//! template scope each one sees.

use std::cmp::Reverse;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Driver, Timer};
use crate::run::event::{now_ms, ErrorKind, EventKind, StepError};
use crate::run::state::{RunStatus, StepState, StepStatus};
use crate::workflow::definition::Trigger;
use crate::workflow::template::{kind_of, Scope};
use crate::workflow::{Action, ForEach};

impl<'a> Driver<'a> {
    /// Decides every pending step whose dependencies are all done.
    pub(super) fn schedule(&mut self) {
        if self.state.status != RunStatus::Running {
            return;
        }
        loop {
            let mut changed = false;
            for index in 0..self.workflow.steps.len() {
                if self.decided[index] || self.state.steps[index].status != StepStatus::Pending {
                    continue;
                }
                let workflow = self.workflow.clone();
                let step = &workflow.steps[index];
                if step.deps.iter().any(|&d| !self.state.steps[d].status.is_terminal()) {
                    continue;
                }
                changed = true;
                self.decided[index] = true;
                self.start_step(index);
                if self.state.status != RunStatus::Running {
                    return;
                }
            }
            if !changed {
                return;
            }
        }
    }

    pub(super) fn start_step(&mut self, index: usize) {
        let workflow = self.workflow.clone();
        let step = &workflow.steps[index];
        if step.trigger == Trigger::AllSucceeded {
            let blocked = step
                .deps
                .iter()
                .find(|&&d| self.state.steps[d].status != StepStatus::Succeeded);
            if let Some(&dep) = blocked {
                let reason = format!("dependency {} {}", self.id(dep), self.state.steps[dep].status.as_str());
                self.emit(EventKind::StepSkipped {
                    step: step.id.clone(),
                    reason,
                });
                return;
            }
        }
        let scope = self.scope(index);
        if let Some(when) = &step.when {
            match when.is_true(&scope) {
                Ok(true) => {}
                Ok(false) => {
                    let reason = format!("when `{}` is false", when.source().trim());
                    self.emit(EventKind::StepSkipped {
                        step: step.id.clone(),
                        reason,
                    });
                    return;
                }
                Err(message) => {
                    self.fail_step(
                        index,
                        None,
                        None,
                        StepError::new(ErrorKind::TemplateError, format!("when: {message}"), false),
                    );
                    return;
                }
            }
        }
        match &step.action {
            Action::Sleep(duration) => {
                let until = now_ms() + duration.as_millis() as u64;
                self.emit(EventKind::StepWaiting {
                    step: step.id.clone(),
                    until_ms: Some(until),
                    event: None,
                });
                self.timers.push(Reverse((until, Timer::Sleep { step: index })));
            }
            Action::Module { .. } | Action::Workflow { .. } if step.for_each.is_some() => {
                match self.evaluate_items(index, &scope) {
                    Err(error) => self.fail_step(index, None, None, error),
                    Ok(items) => {
                        let count = items.len();
                        self.emit(EventKind::StepExpanded {
                            step: step.id.clone(),
                            items: count,
                        });
                        if count == 0 {
                            self.emit(EventKind::StepSucceeded {
                                step: step.id.clone(),
                                record: None,
                                output: Value::Array(vec![]),
                                event: None,
                                traceparent: None,
                            });
                            return;
                        }
                        self.items[index] = Some(Arc::new(items));
                        self.scopes[index] = Some(scope);
                        self.remaining[index] = count;
                        self.queued[index].extend((0..count).map(Some));
                    }
                }
            }
            Action::Module { .. } | Action::Workflow { .. } => {
                self.scopes[index] = Some(scope);
                self.queued[index].push_back(None);
            }
            Action::Wait { .. } => self.start_wait(index, scope),
        }
    }

    pub(super) fn evaluate_items(&self, index: usize, scope: &Scope) -> Result<Vec<Value>, StepError> {
        let workflow = self.workflow.clone();
        let step = &workflow.steps[index];
        let value = match &step.for_each {
            Some(ForEach::Items(items)) => Value::Array(items.clone()),
            Some(ForEach::Template(template)) => template
                .render(scope)
                .map_err(|message| StepError::new(ErrorKind::TemplateError, format!("for_each: {message}"), false))?,
            None => return Ok(Vec::new()),
        };
        let Value::Array(items) = value else {
            return Err(StepError::new(
                ErrorKind::ForEachError,
                format!("for_each must produce an array, got {}", kind_of(&value)),
                false,
            ));
        };
        if items.len() > self.executor.caps.for_each_items {
            return Err(StepError::new(
                ErrorKind::ForEachError,
                format!(
                    "for_each has {} items, more than the cap of {}",
                    items.len(),
                    self.executor.caps.for_each_items
                ),
                false,
            ));
        }
        Ok(items)
    }

    /// The template scope of a step: the run, its inputs, secrets, and the
    /// result of each step it depends on. A step that renders nothing
    /// (every call of a code workflow) gets none: building one would cost
    /// more than the rest of its start.
    pub(super) fn scope(&self, index: usize) -> Scope {
        if self.workflow.steps[index].renders_literally() && self.spec.workflow.throttle.is_none() {
            return Scope::empty();
        }
        let steps = self.workflow.steps[index]
            .deps
            .iter()
            .map(|&dep| (self.id(dep).to_string(), step_entry(&self.state.steps[dep])))
            .collect();
        self.base_scope(steps)
    }

    pub(super) fn base_scope(&self, steps: Map<String, Value>) -> Scope {
        let mut scope = Map::new();
        scope.insert("inputs".into(), self.state.input.clone());
        scope.insert("steps".into(), Value::Object(steps));
        scope.insert("run".into(), serde_json::json!({ "id": self.state.run_id }));
        scope.insert("workflow".into(), serde_json::json!({ "name": self.workflow.name }));
        if !self.spec.secrets.is_empty() {
            scope.insert("secrets".into(), self.spec.secrets.to_json());
        }
        Scope::new(scope)
    }
}

/// What templates see of a finished step: `output` (alias `result`) and `status`.
pub(super) fn step_entry(state: &StepState) -> Value {
    let output = state.output.clone().unwrap_or(Value::Null);
    serde_json::json!({ "output": output.clone(), "result": output, "status": state.status.as_str() })
}
