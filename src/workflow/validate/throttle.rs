//! `throttle:` on a workflow or a step: a key template and the limits
//! attempts sharing a key are held to (running at once, started per
//! interval).

use std::time::Duration;

use super::Errors;
use crate::workflow::definition::{KeyedConcurrencyDef, KeyedRateDef, RateDef, ThrottleDef};
use crate::workflow::template::Template;

/// Longest `rate.per`.
pub const MAX_RATE_PER: Duration = Duration::from_secs(24 * 3600);
/// Largest `concurrency` and `rate.limit`.
pub const MAX_THROTTLE_LIMIT: u32 = 100_000;

/// A validated `throttle:`.
#[derive(Debug, Clone)]
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

/// The limits a workflow or step declares: `throttle:`, or the keyed
/// `concurrency: { key, limit }` and `rate: { key, limit, per }` (one key:
/// both must name the same template). The compiled throttle and where its
/// key is, for the caller's path checks.
pub(super) fn declared(
    throttle: Option<&ThrottleDef>,
    concurrency: Option<&KeyedConcurrencyDef>,
    rate: Option<&KeyedRateDef>,
    location: &str,
    errors: &mut Errors,
) -> Option<(Throttle, String)> {
    let at = |field: &str| {
        if location.is_empty() {
            field.to_string()
        } else {
            format!("{location}.{field}")
        }
    };
    if let Some(throttle) = throttle {
        if concurrency.is_some() || rate.is_some() {
            let field = if concurrency.is_some() { "concurrency" } else { "rate" };
            errors.add(
                at(field),
                "give `throttle:` or the keyed `concurrency: { key, limit }` and `rate: { key, limit, per }`, not both",
            );
            return None;
        }
        return compile_throttle(throttle, &at("throttle"), errors).map(|t| (t, at("throttle.key")));
    }
    let (key, field) = match (concurrency, rate) {
        (None, None) => return None,
        (Some(c), Some(r)) if c.key != r.key => {
            errors.add(
                at("rate.key"),
                format!(
                    "a keyed `concurrency` and `rate` share one key: {:?} is not {:?} (use `throttle:`)",
                    r.key, c.key
                ),
            );
            return None;
        }
        (Some(c), _) => (c.key.clone(), "concurrency"),
        (None, Some(r)) => (r.key.clone(), "rate"),
    };
    let def = ThrottleDef {
        key,
        concurrency: concurrency.map(|c| c.limit),
        rate: rate.map(|r| RateDef {
            limit: r.limit,
            per: r.per,
        }),
    };
    // Limits checked at their own fields, then the key at `<field>.key`.
    if !check_limits(
        def.concurrency,
        def.rate.as_ref(),
        &at("concurrency.limit"),
        &at("rate"),
        errors,
    ) {
        return None;
    }
    compile_throttle(&def, &at(field), errors).map(|t| (t, at(&format!("{field}.key"))))
}

/// Compiles `def` found at `location`; the key's paths are the caller's to check.
pub(super) fn compile_throttle(def: &ThrottleDef, location: &str, errors: &mut Errors) -> Option<Throttle> {
    let at = |field: &str| format!("{location}.{field}");
    let mut valid = true;
    if def.concurrency.is_none() && def.rate.is_none() {
        errors.add(location, "give `concurrency`, `rate` or both");
        valid = false;
    }
    valid &= check_limits(
        def.concurrency,
        def.rate.as_ref(),
        &at("concurrency"),
        &at("rate"),
        errors,
    );
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

/// Checks a concurrency (reported at `concurrency_at`) and a rate (its
/// `limit` and `per` under `rate_at`); whether both are valid.
fn check_limits(
    concurrency: Option<u32>,
    rate: Option<&RateDef>,
    concurrency_at: &str,
    rate_at: &str,
    errors: &mut Errors,
) -> bool {
    let mut valid = true;
    let in_range = |n: u32| (1..=MAX_THROTTLE_LIMIT).contains(&n);
    if let Some(n) = concurrency.filter(|n| !in_range(*n)) {
        errors.add(concurrency_at, format!("must be 1 to {MAX_THROTTLE_LIMIT}, not {n}"));
        valid = false;
    }
    if let Some(rate) = rate {
        if !in_range(rate.limit) {
            errors.add(
                format!("{rate_at}.limit"),
                format!("must be 1 to {MAX_THROTTLE_LIMIT}, not {}", rate.limit),
            );
            valid = false;
        }
        if rate.per.is_zero() || rate.per > MAX_RATE_PER {
            errors.add(format!("{rate_at}.per"), "must be longer than zero and at most 24h");
            valid = false;
        }
    }
    valid
}
