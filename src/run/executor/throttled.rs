//! `throttle:` in the driver. A unit of a throttled step renders its
//! claims (the workflow's key, the step's key) when it would start, and
//! waits in a queue of its key instead. Each round takes units from the
//! keys' queues in turn (one per key per pass, from a rotating start), up
//! to the room the step's and run's concurrency leave, and asks the
//! [`Throttle`](crate::run::throttle::Throttle) for them in one call:
//! granted units start, the others go back to the head of their queue and
//! their key waits until a slot is given back or its rate window moves.
//! One busy key therefore never holds back another.

use std::cmp::Reverse;
use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use indexmap::IndexMap;

use std::sync::Arc;

use super::{Driver, Executor, Timer};
use crate::run::event::{now_ms, ErrorKind, EventKind, StepError};
use crate::run::state::RunStatus;
use crate::run::throttle::{Answer, Ask, Claim, Throttle as Books};
use crate::workflow::template::Scope;
use crate::workflow::Throttle;

/// Longest rendered throttle key, in characters.
pub const MAX_THROTTLE_KEY: usize = 200;
/// How often a run whose keys wait asks again without being told of a
/// release (another process may have given a slot back).
const POLL: Duration = Duration::from_secs(1);

type Waiting = VecDeque<(Option<usize>, Vec<Claim>)>;

/// The driver's throttle bookkeeping.
pub(super) struct Throttled {
    /// Per step: units waiting, by joined key, in key order of arrival.
    waiting: Vec<IndexMap<String, Waiting>>,
    /// Where each step's next pass starts.
    cursor: Vec<usize>,
    /// Keys (per step) told to wait; asked again after a wake.
    blocked: HashSet<(usize, String)>,
    /// Units holding slots (their attempt may start or runs).
    held: HashSet<(usize, Option<usize>)>,
    /// Holders to give back at the next round.
    releases: Vec<String>,
    /// Releases seen, from the throttle.
    released: Option<tokio::sync::watch::Receiver<u64>>,
}

impl Throttled {
    pub(super) fn new(steps: usize) -> Self {
        Throttled {
            waiting: vec![IndexMap::new(); steps],
            cursor: vec![0; steps],
            blocked: HashSet::new(),
            held: HashSet::new(),
            releases: Vec::new(),
            released: None,
        }
    }

    /// Room for one more step (a code run's call).
    pub(super) fn push_step(&mut self) {
        self.waiting.push(IndexMap::new());
        self.cursor.push(0);
    }

    /// Whether some unit waits for a slot.
    pub(super) fn is_waiting(&self) -> bool {
        self.waiting.iter().any(|w| !w.is_empty())
    }

    /// Resolves when waiting keys should ask again: a release, or the poll.
    pub(super) async fn wake(released: &mut Option<tokio::sync::watch::Receiver<u64>>) {
        match released {
            Some(released) => {
                let _ = tokio::time::timeout(POLL, released.changed()).await;
            }
            None => tokio::time::sleep(POLL).await,
        }
    }

    pub(super) fn released(&mut self) -> &mut Option<tokio::sync::watch::Receiver<u64>> {
        &mut self.released
    }

    /// Every key asks again.
    pub(super) fn unblock(&mut self) {
        self.blocked.clear();
    }
}

impl Executor {
    /// Gives `throttle:` keys a place to keep their slots.
    pub fn with_throttle(mut self, throttle: Arc<dyn Books>) -> Self {
        self.throttle = Some(throttle);
        self
    }
}

fn holder(run_id: &str, step: &str, item: Option<usize>) -> String {
    match item {
        Some(i) => format!("{run_id}/{step}/{i}"),
        None => format!("{run_id}/{step}"),
    }
}

fn claim(scope: String, throttle: &Throttle, rendered: &Scope) -> Result<Claim, String> {
    let key = match throttle.key.render(rendered)? {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    };
    if key.chars().count() > MAX_THROTTLE_KEY {
        return Err(format!("the key is longer than {MAX_THROTTLE_KEY} characters"));
    }
    Ok(Claim {
        scope,
        key,
        concurrency: throttle.concurrency,
        rate: throttle.rate.map(|r| (r.limit, r.per.as_millis() as u64)),
    })
}

impl<'a> Driver<'a> {
    /// Whether the run's workflow or any of its steps has a `throttle:`.
    fn throttles(&self) -> bool {
        self.spec.workflow.throttle.is_some() || self.workflow.steps.iter().any(|s| s.throttle.is_some())
    }

    /// Whether the unit must wait for a slot first: then it is queued under
    /// its key (or fails, when a key cannot be rendered) and starts from
    /// [`Driver::throttle_round`]. A unit that holds its slots goes on.
    pub(super) fn throttle_gate(&mut self, index: usize, item: Option<usize>, scope: &Scope) -> bool {
        let step = &self.workflow.steps[index];
        if self.executor.throttle.is_none() || (step.throttle.is_none() && self.spec.workflow.throttle.is_none()) {
            return false;
        }
        if self.throttled.held.contains(&(index, item)) {
            return false;
        }
        let name = &self.workflow.name;
        let claims = [
            self.spec
                .workflow
                .throttle
                .as_ref()
                .map(|t| claim(name.clone(), t, scope)),
            step.throttle
                .as_ref()
                .map(|t| claim(format!("{name}/{}", step.id), t, scope)),
        ];
        let claims: Result<Vec<Claim>, String> = claims.into_iter().flatten().collect();
        match claims {
            Ok(claims) => {
                let joined = claims.iter().map(|c| c.key.as_str()).collect::<Vec<_>>().join("\u{1f}");
                self.throttled.waiting[index]
                    .entry(joined)
                    .or_default()
                    .push_back((item, claims));
            }
            Err(message) => {
                let error = StepError::new(ErrorKind::TemplateError, format!("throttle.key: {message}"), false);
                self.fail_step(index, item, None, error);
            }
        }
        true
    }

    /// Gives back slots of finished units (and of steps that ended), then
    /// asks for slots for waiting units in fair order until none can start.
    pub(super) async fn throttle_round(&mut self) {
        // Most rounds hold, give back and ask for nothing: no work then.
        if self.throttled.held.is_empty() && self.throttled.releases.is_empty() && !self.throttled.is_waiting() {
            return;
        }
        let Some(throttle) = self.executor.throttle.clone() else {
            return;
        };
        let steps = &self.state.steps;
        let run_id = &self.state.run_id;
        let workflow = self.workflow.clone();
        let releases = &mut self.throttled.releases;
        self.throttled.held.retain(|&(index, item)| {
            let ended = steps[index].status.is_terminal();
            if ended {
                releases.push(holder(run_id, &workflow.steps[index].id, item));
            }
            !ended
        });
        if !self.throttled.releases.is_empty() {
            let holders = std::mem::take(&mut self.throttled.releases);
            if let Err(error) = throttle.release(holders).await {
                tracing::warn!(run = %self.state.run_id, %error, "throttle slots not given back (the run's end gives them back)");
            }
        }
        if self.state.status != RunStatus::Running || !self.throttled.is_waiting() {
            return;
        }
        if self.throttled.released.is_none() {
            self.throttled.released = Some(throttle.releases());
        }
        loop {
            let picks = self.pick_throttled();
            if picks.is_empty() {
                return;
            }
            if let Some(released) = &mut self.throttled.released {
                released.borrow_and_update();
            }
            let asks = picks
                .iter()
                .map(|(index, _, item, claims)| Ask {
                    holder: holder(&self.state.run_id, &self.workflow.steps[*index].id, *item),
                    run_id: self.state.run_id.clone(),
                    claims: claims.clone(),
                })
                .collect();
            let answers = match throttle.acquire(asks, now_ms()).await {
                Ok(answers) => answers,
                Err(error) => {
                    tracing::warn!(run = %self.state.run_id, %error, "cannot ask for throttle slots; asking again");
                    vec![
                        Answer::Wait {
                            retry_at_ms: Some(now_ms() + POLL.as_millis() as u64)
                        };
                        picks.len()
                    ]
                }
            };
            for ((index, key, item, claims), answer) in picks.into_iter().zip(answers) {
                match answer {
                    Answer::Granted => {
                        self.throttled.held.insert((index, item));
                        self.start_attempt(index, item);
                    }
                    Answer::Wait { retry_at_ms } => {
                        let shown = claims.last().map(|c| c.key.clone()).unwrap_or_default();
                        self.throttled.waiting[index]
                            .entry(key.clone())
                            .or_default()
                            .push_front((item, claims));
                        self.throttled.blocked.insert((index, key));
                        if let Some(at) = retry_at_ms {
                            self.timers.push(Reverse((at, Timer::Throttle)));
                        }
                        let unit = self.state.steps[index].units.get(item.unwrap_or(0));
                        if unit.is_none_or(|u| u.throttled.is_none()) {
                            let step = self.workflow.steps[index].id.clone();
                            self.emit(EventKind::StepThrottled { step, item, key: shown });
                        }
                    }
                }
            }
        }
    }

    /// Units to ask for now: per step, one per unblocked key per pass from
    /// the step's cursor, up to the room its and the run's concurrency
    /// leave.
    fn pick_throttled(&mut self) -> Vec<(usize, String, Option<usize>, Vec<Claim>)> {
        let mut total: u32 = self.running.iter().sum();
        let mut picks = Vec::new();
        for index in 0..self.workflow.steps.len() {
            let waiting = &mut self.throttled.waiting[index];
            if waiting.is_empty() {
                continue;
            }
            if self.state.steps[index].status.is_terminal() {
                waiting.clear();
                continue;
            }
            let step_limit = self.workflow.steps[index].concurrency.unwrap_or(u32::MAX);
            let mut room = step_limit
                .saturating_sub(self.running[index])
                .min(self.workflow.concurrency.saturating_sub(total));
            while room > 0 {
                let mut took = false;
                let keys = waiting.len();
                let start = self.throttled.cursor[index] % keys;
                for offset in 0..keys {
                    if room == 0 {
                        break;
                    }
                    let (key, queue) = waiting.get_index_mut((start + offset) % keys).expect("in range");
                    if self.throttled.blocked.contains(&(index, key.clone())) {
                        continue;
                    }
                    if let Some((item, claims)) = queue.pop_front() {
                        picks.push((index, key.clone(), item, claims));
                        room -= 1;
                        total += 1;
                        took = true;
                    }
                }
                self.throttled.cursor[index] = start + 1;
                if !took {
                    break;
                }
            }
            waiting.retain(|_, queue| !queue.is_empty());
        }
        picks
    }

    /// A finished unit's slots are given back at the next round.
    pub(super) fn throttle_finished(&mut self, index: usize, item: Option<usize>) {
        if self.throttled.held.remove(&(index, item)) {
            let holder = holder(&self.state.run_id, &self.workflow.steps[index].id, item);
            self.throttled.releases.push(holder);
        }
    }

    /// After the driver returns: slots still to give back, and every slot
    /// of a run that ended.
    pub(super) async fn throttle_settle(&mut self) {
        let Some(throttle) = self.executor.throttle.clone() else {
            return;
        };
        if !self.throttles() {
            return;
        }
        let outcome = if self.state.status.is_terminal() {
            throttle.release_run(&self.state.run_id).await
        } else {
            let holders = std::mem::take(&mut self.throttled.releases);
            match holders.is_empty() {
                true => Ok(()),
                false => throttle.release(holders).await,
            }
        };
        if let Err(error) = outcome {
            tracing::warn!(run = %self.state.run_id, %error, "throttle slots not given back");
        }
    }

    /// A run picked up again gives back what it held: its units ask anew.
    pub(super) async fn throttle_resume(&mut self) {
        let Some(throttle) = self.executor.throttle.clone() else {
            return;
        };
        if self.throttles() && self.state.status != RunStatus::Queued {
            if let Err(error) = throttle.release_run(&self.state.run_id).await {
                tracing::warn!(run = %self.state.run_id, %error, "throttle slots of a resumed run not given back");
            }
        }
    }
}
