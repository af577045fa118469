//! The `ctx` interface workflow code imports: each call goes to the run's
//! [`WorkflowHost`]; a stop it answers is remembered and traps the code.

use super::bindings::{self, sandstep::workflow::types as wit};
use super::{CallResult, HostAnswer, HostCall, HostStop, WorkflowCtx};
use crate::sandbox::outcome::Level;

impl WorkflowCtx {
    /// One call to the host; a stop is remembered and traps the code.
    async fn ask(&mut self, call: HostCall) -> wasmtime::Result<HostAnswer> {
        let answer = self.host.call(call).await;
        self.remember(answer)
    }

    /// Submits a call and waits for its result.
    async fn submit_and_await(&mut self, call: HostCall) -> wasmtime::Result<CallResult> {
        let result = self.host.submit_and_await(call).await;
        self.remember(result)
    }

    /// The host's answer; a stop is remembered and traps the code.
    fn remember<T>(&mut self, answer: Result<T, HostStop>) -> wasmtime::Result<T> {
        answer.map_err(|stop| {
            let error = wasmtime::format_err!("{}: {}", stop.kind, stop.message);
            self.stopped = Some(stop);
            error
        })
    }

    async fn submit(&mut self, call: HostCall) -> wasmtime::Result<u32> {
        match self.ask(call).await? {
            HostAnswer::Submitted(id) => Ok(id),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(answer: HostAnswer) -> wasmtime::Error {
    wasmtime::format_err!("internal error: unexpected host answer {answer:?}")
}

pub(super) fn unexpected_answer(answer: HostAnswer) -> HostStop {
    HostStop {
        kind: "internal".into(),
        message: format!("unexpected host answer {answer:?}"),
    }
}

fn to_wit(result: CallResult) -> Result<String, wit::Failure> {
    result.map_err(|f| wit::Failure {
        kind: f.kind,
        message: f.message,
    })
}

impl wit::Host for WorkflowCtx {}

impl bindings::sandstep::workflow::ctx::Host for WorkflowCtx {
    async fn info(&mut self) -> wasmtime::Result<wit::RunInfo> {
        let info = self.host.info();
        Ok(wit::RunInfo {
            run_id: info.run_id,
            workflow: info.workflow,
            version: info.version,
            created_ms: info.created_ms,
            started_ms: info.started_ms,
            trigger: info.trigger,
            token: info.token,
            parent_run_id: info.parent_run_id,
        })
    }

    async fn step(
        &mut self,
        name: String,
        module: String,
        input: String,
        options: String,
    ) -> wasmtime::Result<Result<String, wit::Failure>> {
        let call = HostCall::Step {
            name,
            module,
            input,
            options,
        };
        self.submit_and_await(call).await.map(to_wit)
    }

    async fn submit_step(
        &mut self,
        name: String,
        module: String,
        input: String,
        options: String,
    ) -> wasmtime::Result<u32> {
        self.submit(HostCall::Step {
            name,
            module,
            input,
            options,
        })
        .await
    }

    async fn submit_child(
        &mut self,
        name: String,
        workflow: String,
        input: String,
        options: String,
    ) -> wasmtime::Result<u32> {
        self.submit(HostCall::Child {
            name,
            workflow,
            input,
            options,
        })
        .await
    }

    async fn await_next(&mut self, calls: Vec<u32>) -> wasmtime::Result<(u32, Result<String, wit::Failure>)> {
        match self.ask(HostCall::AwaitNext(calls)).await? {
            HostAnswer::Next(id, result) => Ok((id, to_wit(result))),
            other => Err(unexpected(other)),
        }
    }

    async fn await_all(&mut self, calls: Vec<u32>) -> wasmtime::Result<Vec<Result<String, wit::Failure>>> {
        match self.ask(HostCall::AwaitAll(calls)).await? {
            HostAnswer::All(results) => Ok(results.into_iter().map(to_wit).collect()),
            other => Err(unexpected(other)),
        }
    }

    async fn child(
        &mut self,
        name: String,
        workflow: String,
        input: String,
        options: String,
    ) -> wasmtime::Result<Result<String, wit::Failure>> {
        let call = HostCall::Child {
            name,
            workflow,
            input,
            options,
        };
        self.submit_and_await(call).await.map(to_wit)
    }

    async fn start_child(&mut self, name: String, workflow: String, input: String) -> wasmtime::Result<String> {
        match self.ask(HostCall::StartChild { name, workflow, input }).await? {
            HostAnswer::Text(run_id) => Ok(run_id),
            other => Err(unexpected(other)),
        }
    }

    async fn sleep(&mut self, name: String, duration_ms: u64) -> wasmtime::Result<()> {
        // A sleep ends, or the run stops (and this instance with it).
        let _ = self.submit_and_await(HostCall::Sleep { name, duration_ms }).await?;
        Ok(())
    }

    async fn wait_for_event(
        &mut self,
        name: String,
        topic: String,
        timeout_ms: Option<u64>,
    ) -> wasmtime::Result<Result<wit::Event, wit::Failure>> {
        let result = self
            .submit_and_await(HostCall::Wait {
                name,
                topic: topic.clone(),
                timeout_ms,
            })
            .await?;
        Ok(to_wit(result).map(|text| {
            // The host answers a wait with `{"id", "data"}`.
            let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            wit::Event {
                id: value["id"].as_str().unwrap_or_default().to_string(),
                topic,
                data: value["data"].to_string(),
            }
        }))
    }

    async fn now(&mut self) -> wasmtime::Result<u64> {
        match self.ask(HostCall::Now).await? {
            HostAnswer::Number(ms) => {
                self.clock.set(ms);
                Ok(ms)
            }
            other => Err(unexpected(other)),
        }
    }

    async fn random(&mut self) -> wasmtime::Result<u64> {
        match self.ask(HostCall::Random).await? {
            HostAnswer::Number(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    async fn log(&mut self, level: wit::Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            wit::Level::Trace => Level::Trace,
            wit::Level::Debug => Level::Debug,
            wit::Level::Info => Level::Info,
            wit::Level::Warn => Level::Warn,
            wit::Level::Error => Level::Error,
        };
        if let Err(stop) = self.host.log(level, message) {
            let error = wasmtime::format_err!("{}: {}", stop.kind, stop.message);
            self.stopped = Some(stop);
            return Err(error);
        }
        Ok(())
    }

    async fn patched(&mut self, id: String) -> wasmtime::Result<bool> {
        match self.ask(HostCall::Patched(id)).await? {
            HostAnswer::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }
}
