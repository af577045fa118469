//! Triggers: cron schedules (in a time zone, with a catch-up policy),
//! posted events and webhooks (`hooks`) that start runs of the workflow.

use std::str::FromStr as _;

use chrono::{DateTime, TimeZone as _, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::hooks::{compile_hook, Hook};
use super::paths::{check_paths, compile_value, Known, Situational};
use super::step::check_topic;
use super::Errors;
use crate::limits::Caps;
use crate::workflow::definition::{CatchUp, InputDef, TriggerDef};
use crate::workflow::template::TemplateValue;

/// Most missed ticks `catch_up: all` starts runs for.
pub const MAX_CATCH_UP: usize = 100;

/// A compiled trigger.
#[derive(Debug)]
pub enum RunTrigger {
    Schedule(Box<Schedule>),
    /// Every event posted with `topic` starts a run; `input` renders over
    /// `event` (default: the event's data).
    OnEvent {
        topic: String,
        input: Option<TemplateValue>,
    },
    /// `POST /hooks/NAME`, signed as the hook says, starts a run or posts
    /// an event.
    Webhook(Box<Hook>),
}

#[derive(Debug)]
pub struct Schedule {
    /// The expression as written (`0 9 * * 1-5`).
    pub expression: String,
    pub timezone: Tz,
    pub catch_up: CatchUp,
    /// The input of each run it starts.
    pub input: Value,
    cron: croner::Cron,
}

impl Schedule {
    /// The first tick strictly after `after_ms` (ms since the epoch).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        // Ticks fall on whole seconds: the next one after a second's start
        // is the next one after any instant within it.
        let after = self
            .timezone
            .timestamp_millis_opt(after_ms.div_euclid(1000) * 1000)
            .single()?;
        self.cron
            .find_next_occurrence(&after, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    /// The ticks in `(after_ms, now_ms]`, oldest first, at most `limit`
    /// (the most recent ones when there are more).
    pub fn ticks_between(&self, after_ms: i64, now_ms: i64, limit: usize) -> Vec<i64> {
        let mut ticks = std::collections::VecDeque::new();
        let mut at = after_ms;
        while let Some(next) = self.next_after(at).filter(|&t| t <= now_ms) {
            ticks.push_back(next);
            if ticks.len() > limit {
                ticks.pop_front();
            }
            at = next;
        }
        ticks.into()
    }

    /// A tick as RFC 3339 in the schedule's time zone.
    pub fn format(&self, at_ms: i64) -> String {
        match self.timezone.timestamp_millis_opt(at_ms).single() {
            Some(time) => time.to_rfc3339(),
            None => DateTime::<Utc>::from_timestamp_millis(at_ms)
                .unwrap_or_default()
                .to_rfc3339(),
        }
    }
}

pub(super) fn compile_triggers(
    defs: &[TriggerDef],
    inputs: &indexmap::IndexMap<String, InputDef>,
    caps: &Caps,
    errors: &mut Errors,
) -> Vec<RunTrigger> {
    let mut triggers = Vec::new();
    let index = std::collections::HashMap::new();
    let known = Known {
        index: &index,
        inputs,
        secrets: None,
    };
    for (i, def) in defs.iter().enumerate() {
        let at = |field: &str| format!("triggers[{i}].{field}");
        if let Some(name) = &def.webhook {
            if def.schedule.is_some() || def.on_event.is_some() {
                errors.add(
                    format!("triggers[{i}]"),
                    "a trigger has one of `schedule`, `on_event` or `webhook`, not several",
                );
            } else if let Some(hook) = compile_hook(name, def, &at, &known, caps, errors) {
                if triggers
                    .iter()
                    .any(|t| matches!(t, RunTrigger::Webhook(other) if other.name == hook.name))
                {
                    errors.add(at("webhook"), format!("hook {name:?} is named twice in `triggers:`"));
                }
                triggers.push(RunTrigger::Webhook(Box::new(hook)));
            }
            continue;
        }
        for (field, present) in [
            ("secret", def.secret.is_some()),
            ("signature", def.signature.is_some()),
            ("header", def.header.is_some()),
            ("tolerance", def.tolerance.is_some()),
            ("headers", !def.headers.is_empty()),
            ("event", def.event.is_some()),
        ] {
            if present {
                errors.add(at(field), format!("`{field}` applies to `webhook` triggers only"));
            }
        }
        match (&def.schedule, &def.on_event) {
            (Some(expression), None) => {
                let timezone = match def.timezone.as_deref() {
                    None => Some(Tz::UTC),
                    Some(name) => match Tz::from_str(name) {
                        Ok(tz) => Some(tz),
                        Err(_) => {
                            errors.add(
                                at("timezone"),
                                format!("unknown time zone {name:?} (an IANA name such as Europe/Paris)"),
                            );
                            None
                        }
                    },
                };
                let cron = parse_cron(expression)
                    .map_err(|message| errors.add(at("schedule"), message))
                    .ok();
                let input = def.input.clone().unwrap_or_else(|| Value::Object(Default::default()));
                if let Some(template) = compile_value(&input, &at("input"), errors) {
                    if !template.templates().is_empty() {
                        errors.add(at("input"), "a schedule's input is JSON, not a template");
                    }
                }
                if let (Some(timezone), Some(cron)) = (timezone, cron) {
                    triggers.push(RunTrigger::Schedule(Box::new(Schedule {
                        expression: expression.clone(),
                        timezone,
                        catch_up: def.catch_up.unwrap_or_default(),
                        input,
                        cron,
                    })));
                }
            }
            (None, Some(topic)) => {
                if let Err(message) = check_topic(topic) {
                    errors.add(at("on_event"), message);
                }
                schedule_fields_only_for_schedules(def, &at, errors);
                let input = def
                    .input
                    .as_ref()
                    .and_then(|value| compile_value(value, &at("input"), errors));
                if let Some(input) = &input {
                    let event = Situational {
                        event: true,
                        ..Situational::default()
                    };
                    for template in input.templates() {
                        check_paths(template, &at("input"), None, event, &known, errors);
                    }
                }
                triggers.push(RunTrigger::OnEvent {
                    topic: topic.clone(),
                    input,
                });
            }
            (Some(_), Some(_)) => errors.add(
                format!("triggers[{i}]"),
                "a trigger has one of `schedule`, `on_event` or `webhook`, not several",
            ),
            (None, None) => errors.add(
                format!("triggers[{i}]"),
                "a trigger needs `schedule` (a cron expression), `on_event` (a topic) or `webhook` (a hook name)",
            ),
        }
    }
    triggers
}

/// Refuses `timezone` and `catch_up` on a trigger that is not a schedule.
pub(super) fn schedule_fields_only_for_schedules(def: &TriggerDef, at: &dyn Fn(&str) -> String, errors: &mut Errors) {
    for (field, present) in [
        ("timezone", def.timezone.is_some()),
        ("catch_up", def.catch_up.is_some()),
    ] {
        if present {
            errors.add(at(field), format!("`{field}` applies to `schedule` triggers only"));
        }
    }
}

/// A cron expression of 5 fields, or 6 with seconds first.
fn parse_cron(expression: &str) -> Result<croner::Cron, String> {
    use croner::parser::{CronParser, Seconds, Year};
    let fields = expression.split_whitespace().count();
    if !(expression.trim_start().starts_with('@') || fields == 5 || fields == 6) {
        return Err(format!(
            "a cron expression has 5 fields (minute hour day month weekday), or 6 with seconds first; {expression:?} has {fields}"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| format!("invalid cron expression {expression:?}: {e}"))
}
