//! Secrets never leave the executor: every event is redacted before it is
//! applied or journaled.

use crate::run::event::{AttemptRecord, EventKind};
use crate::run::secrets::Secrets;

pub(super) fn redact(secrets: &Secrets, kind: &mut EventKind) {
    match kind {
        EventKind::StepStarted { input, env, .. } => {
            if let Some(input) = input {
                secrets.redact_value(input);
            }
            for value in env.iter_mut().flat_map(|env| env.values_mut()) {
                *value = secrets.redact(value);
            }
        }
        EventKind::StepLog { message, .. } => *message = secrets.redact(message),
        EventKind::StepRetrying { record, .. } => redact_record(secrets, record),
        EventKind::ItemSucceeded { record, output, .. } => {
            if let Some(record) = record {
                redact_record(secrets, record);
            }
            secrets.redact_value(output);
        }
        EventKind::StepSucceeded { output, .. } | EventKind::RunCompleted { output } => secrets.redact_value(output),
        EventKind::StepFailed { record, error, .. } => {
            if let Some(record) = record {
                redact_record(secrets, record);
            }
            error.message = secrets.redact(&error.message);
        }
        EventKind::RunFailed { error } => *error = secrets.redact(error),
        _ => {}
    }
}

fn redact_record(secrets: &Secrets, record: &mut AttemptRecord) {
    if let Some(error) = &mut record.error {
        error.message = secrets.redact(&error.message);
    }
    if let Some(audit) = &mut record.audit {
        for used in &mut audit.http {
            used.host = secrets.redact(&used.host);
            used.error = used.error.as_deref().map(|e| secrets.redact(e));
        }
        for file in &mut audit.files {
            file.path = secrets.redact(&file.path);
        }
    }
}
