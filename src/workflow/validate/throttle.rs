//! `throttle:` on a workflow or a step: a key template and the limits
//! attempts sharing a key are held to (running at once, started per
//! interval).

use std::time::Duration;

use super::Errors;
use crate::workflow::definition::ThrottleDef;
use crate::workflow::template::Template;

/// Longest `rate.per`.
pub const MAX_RATE_PER: Duration = Duration::from_secs(24 * 3600);
/// Largest `concurrency` and `rate.limit`.
pub const MAX_THROTTLE_LIMIT: u32 = 100_000;

/// A validated `throttle:`.
#[derive(Debug)]
pub struct Throttle {
    /// Rendered per attempt (a step's: with its input's scope, `item`
    /// included; a workflow's: with the run's inputs).
    pub key: Template,
    pub concurrency: Option<u32>,
    pub rate: Option<Rate>,
}

/// At most `limit` attempt starts of one key within any `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub per: Duration,
}

/// Compiles `def` found at `location`; the key's paths are the caller's to check.
pub(super) fn compile_throttle(def: &ThrottleDef, location: &str, errors: &mut Errors) -> Option<Throttle> {
    let at = |field: &str| format!("{location}.{field}");
    let mut valid = true;
    if def.concurrency.is_none() && def.rate.is_none() {
        errors.add(location, "give `concurrency`, `rate` or both");
        valid = false;
    }
    let in_range = |n: u32| (1..=MAX_THROTTLE_LIMIT).contains(&n);
    if let Some(n) = def.concurrency.filter(|n| !in_range(*n)) {
        errors.add(at("concurrency"), format!("must be 1 to {MAX_THROTTLE_LIMIT}, not {n}"));
        valid = false;
    }
    if let Some(rate) = &def.rate {
        if !in_range(rate.limit) {
            errors.add(
                at("rate.limit"),
                format!("must be 1 to {MAX_THROTTLE_LIMIT}, not {}", rate.limit),
            );
            valid = false;
        }
        if rate.per.is_zero() || rate.per > MAX_RATE_PER {
            errors.add(at("rate.per"), "must be longer than zero and at most 24h");
            valid = false;
        }
    }
    if def.key.trim().is_empty() {
        errors.add(at("key"), "must not be empty");
        return None;
    }
    let key = match Template::compile(&def.key) {
        Ok(key) => key,
        Err(message) => {
            errors.add(at("key"), message);
            return None;
        }
    };
    if key.paths().iter().any(|p| p.split('.').next() == Some("secrets")) {
        errors.add(
            at("key"),
            "a throttle key may not read `secrets`: keys are stored and shown",
        );
        return None;
    }
    valid.then(|| Throttle {
        key,
        concurrency: def.concurrency,
        rate: def.rate.as_ref().map(|r| Rate {
            limit: r.limit,
            per: r.per,
        }),
    })
}
