//! Live progress of a local run on stderr: a progress bar with the running
//! steps on a terminal, plain lines otherwise. With `--events`, every event
//! is also printed on stdout as a JSON line.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::run::{Event, EventKind};

/// A spinner with `message` on stderr while something slow runs (compiling
/// a large module), when stderr is a terminal. It ends when dropped.
pub fn spinner(message: String) -> Option<SpinnerGuard> {
    std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(100));
        SpinnerGuard(bar)
    })
}

pub struct SpinnerGuard(ProgressBar);

impl Drop for SpinnerGuard {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Follows `events` until the channel closes.
pub async fn follow(mut events: UnboundedReceiver<Event>, steps: Vec<String>, print_events: bool) {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(steps.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} steps {elapsed} {wide_msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    let mut running: Vec<String> = Vec::new();
    while let Some(event) = events.recv().await {
        if print_events {
            if let Ok(line) = serde_json::to_string(&event) {
                println!("{line}");
            }
        }
        let line = describe(&event.kind);
        match &event.kind {
            EventKind::StepStarted { step, .. } | EventKind::StepWaiting { step, .. } if !running.contains(step) => {
                running.push(step.clone())
            }
            EventKind::StepSucceeded { step, .. }
            | EventKind::StepFailed { step, .. }
            | EventKind::StepSkipped { step, .. }
            | EventKind::StepCanceled { step, .. } => {
                running.retain(|s| s != step);
                if let Some(bar) = &bar {
                    bar.inc(1);
                }
            }
            _ => {}
        }
        match &bar {
            Some(bar) => {
                if let Some(line) = line {
                    bar.println(line);
                }
                bar.set_message(if running.is_empty() {
                    String::new()
                } else {
                    format!("running: {}", running.join(", "))
                });
            }
            None => {
                if let Some(line) = line {
                    eprintln!("{line}");
                }
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

/// One human line per notable event.
fn describe(kind: &EventKind) -> Option<String> {
    let item = |item: &Option<usize>| item.map(|i| format!("[{i}]")).unwrap_or_default();
    Some(match kind {
        EventKind::RunStarted => "run started".into(),
        EventKind::StepStarted {
            step, item: i, attempt, ..
        } if *attempt > 1 => {
            format!("step {step}{} attempt {attempt} started", item(i))
        }
        EventKind::StepLog {
            step,
            item: i,
            level,
            message,
            ..
        } => {
            format!(
                "  {step}{} [{}] {message}",
                item(i),
                serde_json::to_value(level).ok()?.as_str()?
            )
        }
        EventKind::StepWaiting {
            step,
            event: Some(topic),
            ..
        } => format!("step {step} waiting for event {topic}"),
        EventKind::StepWaiting { step, .. } => format!("step {step} sleeping"),
        EventKind::RunPaused { .. } => "run paused".to_string(),
        EventKind::RunResumed => "run resumed".to_string(),
        EventKind::RunUpgraded { from, to, .. } => format!("run upgraded from version {from} to {to}"),
        EventKind::StepRetrying {
            step, item: i, record, ..
        } => format!(
            "step {step}{} attempt {} failed, retrying: {}",
            item(i),
            record.attempt,
            record.error.as_ref().map(ToString::to_string).unwrap_or_default()
        ),
        EventKind::StepSucceeded { step, record, .. } => match record {
            Some(r) => format!(
                "step {step} succeeded ({})",
                crate::units::format_duration(Duration::from_micros(r.duration_us))
            ),
            None => format!("step {step} succeeded"),
        },
        EventKind::StepFailed {
            step, item: i, error, ..
        } => format!("step {step}{} failed: {error}", item(i)),
        EventKind::StepThrottled { step, item: None, key } => format!("step {step} throttled (key {key:?})"),
        EventKind::StepSkipped { step, reason } => format!("step {step} skipped: {reason}"),
        EventKind::StepCanceled { step, reason } => format!("step {step} canceled: {reason}"),
        EventKind::RunCanceling { reason } => format!("run canceling: {reason}"),
        EventKind::RunCompleted { .. } => "run completed".into(),
        EventKind::RunFailed { error } => format!("run failed: {error}"),
        EventKind::RunCanceled { reason } => format!("run canceled: {reason}"),
        _ => return None,
    })
}
