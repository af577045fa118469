//! MCP tasks (the `io.modelcontextprotocol/tasks` extension) backed by
//! durable runs: a task's id is its run's, so `tasks/get` reads the run
//! from the store (on any node, after any restart) and `tasks/cancel`
//! cancels it. Nothing about a task is kept in memory.

use rmcp::model::{CreateTaskResult, DetailedTask, Task, TaskPayload, TaskStatus};
use rmcp::ErrorData;

use rmcp::service::RequestContext;
use rmcp::RoleServer;

use super::calls::{answer, ui_link};
use super::{internal, Tools};
use crate::run::RunStatus;
use crate::service::view::{rfc3339, RunView};
use crate::service::RunError;

/// How often a client is asked to poll a task, in ms.
const POLL_INTERVAL_MS: u64 = 1000;

impl Tools {
    /// The task a call answers for run `run_id`, just started.
    pub(super) async fn created_task(&self, run_id: &str) -> Result<CreateTaskResult, ErrorData> {
        let view = self.run(run_id).await?;
        Ok(CreateTaskResult::new(task_of(&view, TaskStatus::Working)))
    }

    /// `tasks/get`: the run as a task; once it has ended, with the tool
    /// result a call would have answered.
    pub(super) async fn task(
        &self,
        run_id: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<DetailedTask, ErrorData> {
        let view = self.run(run_id).await?;
        let payload = match RunStatus::parse(&view.row.status) {
            Some(RunStatus::Completed | RunStatus::Failed) => {
                let result = answer(&view, &ui_link(context, run_id));
                let result = serde_json::to_value(result).map_err(internal)?;
                let serde_json::Value::Object(result) = result else {
                    return Err(internal("a tool result is not an object"));
                };
                TaskPayload::Completed { result }
            }
            Some(RunStatus::Canceled) => TaskPayload::Cancelled,
            _ => TaskPayload::Working,
        };
        Ok(DetailedTask::new(task_of(&view, payload.status()), payload))
    }

    /// `tasks/cancel`: cancels the run (acknowledged once asked; the run
    /// ends as its steps stop).
    pub(super) async fn cancel(&self, run_id: &str) -> Result<(), ErrorData> {
        self.run(run_id).await?;
        match self.service.cancel(run_id, std::time::Duration::ZERO).await {
            Ok(()) | Err(RunError::Conflict(_) | RunError::Refused { .. }) => Ok(()),
            Err(error) => Err(internal(error)),
        }
    }

    /// The run behind a task id; an unknown one is the caller's error.
    async fn run(&self, run_id: &str) -> Result<RunView, ErrorData> {
        match self.service.get(run_id).await {
            Ok(view) => Ok(view),
            Err(RunError::NotFound(_)) => Err(ErrorData::invalid_params(format!("unknown task: {run_id}"), None)),
            Err(error) => Err(internal(error)),
        }
    }
}

fn task_of(view: &RunView, status: TaskStatus) -> Task {
    let mut task = Task::new(
        view.row.id.clone(),
        status,
        rfc3339(view.row.created_ms as u64),
        rfc3339(view.row.updated_ms as u64),
    )
    .with_status_message(format!("run {}", view.row.status));
    if !status.is_terminal() {
        task = task.with_poll_interval_ms(POLL_INTERVAL_MS);
    }
    task
}
