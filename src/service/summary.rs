//! A run as the runs list shows it (`GET /v1/runs`): its row and how many
//! of its steps ended how, from the store's per-run counts (no events read).

use serde::Serialize;

use crate::store::runs::RunRow;

/// A run as lists show it: its row and how many of its steps ended how.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunSummary {
    #[serde(flatten)]
    pub row: RunRow,
    pub steps: StepCounts,
}

/// How many of a run's steps ended, and how (`succeeded` counts the steps
/// a re-run reused).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepCounts {
    /// Steps of the run's pinned version.
    pub total: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub canceled: usize,
}

impl StepCounts {
    pub fn new(total: usize, ends: crate::store::summary::StepEnds) -> Self {
        let n = |v: i64| usize::try_from(v).unwrap_or(0);
        let succeeded = n(ends.succeeded + ends.reused).min(total);
        let skipped = n(ends.skipped).min(total - succeeded);
        let canceled = n(ends.canceled).min(total - succeeded - skipped);
        StepCounts {
            total,
            succeeded,
            skipped,
            canceled,
            failed: n(ends.failed).min(total - succeeded - skipped - canceled),
        }
    }
}
