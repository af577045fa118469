//! Usage per API token and daily fuel budgets: who may still start runs
//! today, and what each token's runs consumed.

use super::{RunError, Service};
use crate::store::usage::Usage;

/// Who asks for a start, as the transport authenticated them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (never the token).
    pub token: String,
    /// Fuel its runs may consume per UTC day.
    pub fuel_per_day: Option<u64>,
}

impl Service {
    /// The usage of runs started on `day` (`YYYY-MM-DD`, UTC; default today).
    pub async fn usage(&self, day: Option<&str>) -> Result<Vec<Usage>, RunError> {
        let day = match day {
            None => today(),
            Some(day) => chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| {
                RunError::invalid("day", format!("day must be a date as YYYY-MM-DD (UTC), not {day:?}"))
            })?,
        };
        self.store(self.db.usage(day).await)
    }

    /// The fuel `caller` may still consume today (`None`: no daily budget),
    /// or [`RunError::BudgetExhausted`] once its runs consumed it all.
    pub(super) async fn fuel_left(&self, caller: &Caller) -> Result<Option<u64>, RunError> {
        let Some(limit) = caller.fuel_per_day else {
            return Ok(None);
        };
        let day = today();
        let used = self.store(self.db.token_fuel(&caller.token, day).await)?;
        if used >= limit {
            return Err(RunError::BudgetExhausted(format!(
                "token {} has consumed its daily fuel budget ({used} of {limit} on {day} UTC); starts are refused until 00:00 UTC",
                caller.token
            )));
        }
        Ok(Some(limit - used))
    }
}

/// The UTC date now.
fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}
