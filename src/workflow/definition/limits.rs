//! What a run may do and how often: a code workflow's own limits, keyed
//! concurrency and rate limits, `throttle:` and the fuel budget, as written.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// `workflow_limits: { fuel, memory, calls }` of a code workflow.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowLimitsDef {
    #[serde(default)]
    pub fuel: Option<u64>,
    #[serde(default, deserialize_with = "super::size_opt")]
    pub memory: Option<u64>,
    #[serde(default)]
    pub calls: Option<u32>,
}

/// `throttle: { key: "{{ inputs.customer }}", concurrency: 2, rate: { limit: 10, per: 1m } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleDef {
    /// A template: attempts whose keys are equal share the limits.
    pub key: String,
    /// Attempts of one key running at once.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Attempt starts of one key within any `per` interval.
    #[serde(default)]
    pub rate: Option<RateDef>,
}

/// `concurrency:`: a count (a run's attempts, a for_each's items in
/// flight) or a keyed limit `{ key, limit }`.
#[derive(Debug, Clone)]
pub enum ConcurrencyDef {
    Count(u32),
    Keyed(KeyedConcurrencyDef),
}

impl ConcurrencyDef {
    pub fn count(&self) -> Option<u32> {
        match self {
            ConcurrencyDef::Count(n) => Some(*n),
            ConcurrencyDef::Keyed(_) => None,
        }
    }

    pub fn keyed(&self) -> Option<&KeyedConcurrencyDef> {
        match self {
            ConcurrencyDef::Keyed(keyed) => Some(keyed),
            ConcurrencyDef::Count(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for ConcurrencyDef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(ConcurrencyDef::Count)
                .ok_or_else(|| serde::de::Error::custom(format!("expected a whole number, got {n}"))),
            Value::Object(map) => serde_json::from_value(Value::Object(map))
                .map(ConcurrencyDef::Keyed)
                .map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "expected a number, or {{ key, limit }} for a keyed limit, got {}",
                crate::workflow::template::kind_of(&other)
            ))),
        }
    }
}

/// `concurrency: { key: "{{ inputs.customer }}", limit: 2 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyedConcurrencyDef {
    pub key: String,
    pub limit: u32,
}

/// `rate: { key: "{{ inputs.customer }}", limit: 10, per: 1m }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyedRateDef {
    pub key: String,
    pub limit: u32,
    #[serde(deserialize_with = "super::duration")]
    pub per: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateDef {
    pub limit: u32,
    #[serde(deserialize_with = "super::duration")]
    pub per: Duration,
}

/// `budget: { fuel: N }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetDef {
    pub fuel: u64,
}
