//! Triggers: cron schedules and posted events that start runs. Each tick
//! and each event starts exactly one run, also across restarts: the run's
//! idempotency key derives from the schedule and tick, or from the event,
//! and a tick or event is marked done only after its run is stored.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use super::start::{RunRequest, Target};
use super::{RunError, Service};
use crate::run::event::Origin;
use crate::store::triggers::{ScheduleRow, TriggerRow};
use crate::workflow::definition::CatchUp;
use crate::workflow::template::Scope;
use crate::workflow::validate::{RunTrigger, MAX_CATCH_UP};
use crate::workflow::Workflow;

/// How often schedules are looked at, and undispatched events retried.
const TICK: Duration = Duration::from_millis(250);

/// A schedule as `GET /v1/schedules` lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    pub workflow: String,
    /// The workflow version whose trigger this is.
    pub version: i64,
    pub schedule: String,
    pub timezone: String,
    /// `latest`, `all` or `none`.
    #[schema(value_type = String)]
    pub catch_up: CatchUp,
    /// The next tick, RFC 3339 in the schedule's time zone.
    pub next_fire: Option<String>,
    /// The run the last tick started.
    pub last_run: Option<String>,
}

/// One trigger of a workflow version, as the workflow resource shows it.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct TriggerView {
    /// A cron schedule (`0 9 * * 1-5`), with its time zone and, while the
    /// version is the latest, its next tick (RFC 3339 in that zone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_fire: Option<String>,
    /// Every event posted with this topic starts a run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_event: Option<String>,
    /// A hook: `POST /hooks/{webhook}`, signed as `signature` says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// `github`, `stripe`, `hmac-sha256` or `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The topic the hook posts events to (instead of starting runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

impl Service {
    /// The triggers of one version of a workflow, with each schedule's next
    /// tick when they are the live ones.
    pub async fn triggers_of(
        &self,
        name: &str,
        version: i64,
        workflow: &Workflow,
    ) -> Result<Vec<TriggerView>, RunError> {
        let rows = self.store(self.db.schedules().await)?;
        let live = |idx: usize| {
            rows.iter()
                .find(|r| r.workflow == name && r.version == version && r.idx as usize == idx)
        };
        Ok(workflow
            .triggers
            .iter()
            .enumerate()
            .map(|(idx, trigger)| match trigger {
                RunTrigger::Schedule(schedule) => TriggerView {
                    schedule: Some(schedule.expression.clone()),
                    timezone: Some(schedule.timezone.name().to_string()),
                    next_fire: live(idx)
                        .and_then(|row| schedule.next_after(row.last_tick_ms).map(|t| schedule.format(t))),
                    ..TriggerView::default()
                },
                RunTrigger::OnEvent { topic, .. } => TriggerView {
                    on_event: Some(topic.clone()),
                    ..TriggerView::default()
                },
                RunTrigger::Webhook(hook) => TriggerView {
                    webhook: Some(hook.name.clone()),
                    signature: Some(hook.signature.name().to_string()),
                    event: hook.event.clone(),
                    ..TriggerView::default()
                },
            })
            .collect())
    }

    /// A new version's triggers replace the workflow's old ones.
    pub(super) async fn put_triggers(&self, name: &str, version: i64, workflow: &Workflow) -> Result<(), RunError> {
        let rows: Vec<TriggerRow> = workflow
            .triggers
            .iter()
            .map(|trigger| match trigger {
                RunTrigger::Schedule(schedule) => TriggerRow::Schedule {
                    schedule: schedule.expression.clone(),
                    timezone: schedule.timezone.name().to_string(),
                },
                RunTrigger::OnEvent { topic, .. } => TriggerRow::Event { topic: topic.clone() },
                RunTrigger::Webhook(hook) => TriggerRow::Webhook {
                    hook: hook.name.clone(),
                },
            })
            .collect();
        self.store(self.db.replace_triggers(name, version, &rows).await)?;
        self.triggered.notify_one();
        Ok(())
    }

    /// Every schedule with its next tick and last run.
    pub async fn list_schedules(&self) -> Result<Vec<ScheduleView>, RunError> {
        let mut views = Vec::new();
        for row in self.store(self.db.schedules().await)? {
            let (_, workflow) = self.workflow(&row.workflow, Some(row.version)).await?;
            if let Some(RunTrigger::Schedule(schedule)) = workflow.triggers.get(row.idx as usize) {
                views.push(ScheduleView {
                    workflow: row.workflow.clone(),
                    version: row.version,
                    schedule: schedule.expression.clone(),
                    timezone: schedule.timezone.name().to_string(),
                    catch_up: schedule.catch_up,
                    next_fire: schedule.next_after(row.last_tick_ms).map(|t| schedule.format(t)),
                    last_run: row.last_run_id.clone(),
                });
            }
        }
        Ok(views)
    }

    /// Starts the run of one trigger firing, or finds the one started
    /// before under the same key.
    pub(super) async fn start_triggered(
        self: &Arc<Self>,
        workflow: &str,
        version: i64,
        input: Value,
        key: String,
        trigger: Value,
        traceparent: Option<String>,
    ) -> Result<String, RunError> {
        let target = Target {
            name: workflow,
            version: Some(version),
            pinned: None,
        };
        let request = RunRequest {
            budget_fuel: None,
            caller: None,
            input,
            idempotency_key: Some(key),
            origin: Origin {
                trigger: Some(trigger),
                traceparent,
                ..Origin::default()
            },
        };
        let (_, mut launched) = self.start_runs(target, vec![request], false, false).await?;
        Ok(launched.remove(0).started.run.id)
    }

    /// Starts a run for every due tick of every schedule. Ticks from before
    /// this process started were missed (the server was down): `catch_up`
    /// says which of them start a run.
    async fn fire_schedules(self: &Arc<Self>, started_ms: i64) -> Result<(), RunError> {
        let now = crate::store::now_ms();
        for row in self.store(self.db.schedules().await)? {
            let (_, workflow) = self.workflow(&row.workflow, Some(row.version)).await?;
            let Some(RunTrigger::Schedule(schedule)) = workflow.triggers.get(row.idx as usize) else {
                continue;
            };
            let ticks = schedule.ticks_between(row.last_tick_ms, now, MAX_CATCH_UP);
            let Some(&latest) = ticks.last() else { continue };
            let (missed, on_time): (Vec<i64>, Vec<i64>) = ticks.into_iter().partition(|&t| t < started_ms);
            let mut fire: Vec<i64> = match schedule.catch_up {
                CatchUp::Latest => missed.last().copied().into_iter().collect(),
                CatchUp::All => missed,
                CatchUp::None => Vec::new(),
            };
            fire.extend(on_time);
            let mut last_run = None;
            for tick in fire {
                let at = schedule.format(tick);
                let key = format!("schedule {} {} {at}", schedule.expression, schedule.timezone.name());
                let trigger = json!({ "schedule": schedule.expression, "tick": at });
                match self
                    .start_triggered(&row.workflow, row.version, schedule.input.clone(), key, trigger, None)
                    .await
                {
                    Ok(run) => last_run = Some(run),
                    Err(RunError::Store(error)) => return Err(RunError::Store(error)),
                    Err(error) => {
                        tracing::error!(workflow = %row.workflow, tick = %at, %error, "the schedule's run could not start");
                    }
                }
            }
            self.fired(&row, latest, last_run.as_deref()).await?;
        }
        Ok(())
    }

    async fn fired(&self, row: &ScheduleRow, tick: i64, run: Option<&str>) -> Result<(), RunError> {
        self.store(self.db.schedule_fired(row, tick, run).await)
    }

    /// Starts, for every posted event not dispatched yet, a run of each
    /// workflow with an `on_event` trigger of its topic.
    async fn dispatch_events(self: &Arc<Self>) -> Result<(), RunError> {
        loop {
            let events = self.store(self.db.undispatched_events(100).await)?;
            if events.is_empty() {
                return Ok(());
            }
            for event in events {
                let mut started = Vec::new();
                for (name, idx, version) in self.store(self.db.event_triggers(&event.topic).await)? {
                    let (_, workflow) = self.workflow(&name, Some(version)).await?;
                    let Some(RunTrigger::OnEvent { input, .. }) = workflow.triggers.get(idx as usize) else {
                        continue;
                    };
                    let seen = json!({ "id": event.id, "topic": event.topic, "data": event.data });
                    let input = match input {
                        None => Ok(event.data.clone()),
                        Some(template) => {
                            let mut names = serde_json::Map::new();
                            names.insert("event".into(), seen);
                            template.render(&Scope::new(names))
                        }
                    };
                    let input = match input {
                        Ok(input) => input,
                        Err(message) => {
                            tracing::error!(workflow = %name, event = %event.id, %message, "the trigger's input could not be rendered");
                            continue;
                        }
                    };
                    let key = format!("event {}", event.id);
                    let trigger = json!({ "event": event.id });
                    let traceparent = event.traceparent.clone();
                    match self
                        .start_triggered(&name, version, input, key, trigger, traceparent)
                        .await
                    {
                        Ok(run) => started.push(run),
                        Err(RunError::Store(error)) => return Err(RunError::Store(error)),
                        Err(error) => {
                            tracing::error!(workflow = %name, event = %event.id, %error, "the event's run could not start");
                        }
                    }
                }
                self.store(self.db.event_dispatched(&event.id, &started).await)?;
            }
        }
    }
}

/// Fires schedules and dispatches events until the service drains or is
/// dropped: every [`TICK`], and at once when an event is posted.
pub(super) fn run(service: &Arc<Service>) {
    let weak: Weak<Service> = Arc::downgrade(service);
    let drain = service.drain.clone();
    let notified = service.triggered.clone();
    let started_ms = crate::store::now_ms();
    tokio::spawn(async move {
        loop {
            let Some(service) = weak.upgrade() else { return };
            if let Err(error) = service.dispatch_events().await {
                tracing::error!(%error, "cannot dispatch posted events to their triggers");
            }
            if let Err(error) = service.fire_schedules(started_ms).await {
                tracing::error!(%error, "cannot fire schedules");
            }
            drop(service);
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = notified.notified() => {}
                _ = drain.cancelled() => return,
            }
        }
    });
}
