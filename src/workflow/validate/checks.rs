//! Limits, retry policies and dependency cycles of a definition.

use std::time::Duration;

use super::{Errors, RetryPolicy};
use crate::limits::{Caps, Limits};
use crate::workflow::definition::LimitsDef;

pub(super) fn apply_limits(
    mut limits: Limits,
    def: &LimitsDef,
    timeout: Option<Duration>,
    location: &str,
    caps: &Caps,
    errors: &mut Errors,
) -> Limits {
    let above = |what: &str, value: String, cap: String| format!("{what} {value} is above the cap of {cap}");
    if let Some(requests) = def.http_requests {
        if requests > caps.http_requests {
            errors.add(
                format!("{location}.limits.http_requests"),
                above("http_requests", requests.to_string(), caps.http_requests.to_string()),
            );
        }
        limits.http_requests = requests;
    }
    if let Some(fuel) = def.fuel {
        if fuel > caps.fuel {
            errors.add(
                format!("{location}.limits.fuel"),
                above("fuel", fuel.to_string(), caps.fuel.to_string()),
            );
        }
        limits.fuel = fuel;
    }
    let sizes = [
        ("memory", def.memory, caps.memory, &mut limits.memory),
        ("output", def.output, caps.output_bytes, &mut limits.output_bytes),
        ("logs", def.logs, caps.log_bytes, &mut limits.log_bytes),
        ("http_bytes", def.http_bytes, caps.http_bytes, &mut limits.http_bytes),
    ];
    for (field, value, cap, slot) in sizes {
        if let Some(value) = value {
            if value > cap {
                errors.add(
                    format!("{location}.limits.{field}"),
                    above(field, crate::units::format_size(value), crate::units::format_size(cap)),
                );
            }
            *slot = value;
        }
    }
    if let Some(timeout) = timeout {
        if timeout > caps.timeout {
            errors.add(
                format!("{location}.timeout"),
                above(
                    "timeout",
                    crate::units::format_duration(timeout),
                    crate::units::format_duration(caps.timeout),
                ),
            );
        } else if timeout.is_zero() {
            errors.add(format!("{location}.timeout"), "must be longer than zero");
        }
        limits.timeout = timeout;
    }
    limits
}

pub(super) fn check_retry(policy: RetryPolicy, location: &str, caps: &Caps, errors: &mut Errors) -> RetryPolicy {
    if policy.max_attempts == 0 || policy.max_attempts > caps.max_attempts {
        errors.add(
            format!("{location}.max_attempts"),
            format!("must be between 1 and {}", caps.max_attempts),
        );
    }
    if !(policy.backoff >= 1.0 && policy.backoff.is_finite()) {
        errors.add(format!("{location}.backoff"), "must be at least 1.0");
    }
    if !(0.0..=1.0).contains(&policy.jitter) {
        errors.add(format!("{location}.jitter"), "must be between 0.0 and 1.0");
    }
    if policy.max_interval < policy.initial_interval {
        errors.add(
            format!("{location}.max_interval"),
            "must not be shorter than initial_interval",
        );
    }
    policy
}

/// Every elementary cycle found by depth-first search, each once, starting
/// at its first step in definition order.
pub(super) fn find_cycles(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(node: usize, deps: &[Vec<usize>], marks: &mut [Mark], stack: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        marks[node] = Mark::Active;
        stack.push(node);
        for &dep in &deps[node] {
            match marks[dep] {
                Mark::New => visit(dep, deps, marks, stack, out),
                Mark::Active => {
                    let start = stack
                        .iter()
                        .position(|&n| n == dep)
                        .expect("active nodes are on the stack");
                    let mut cycle: Vec<usize> = stack[start..].to_vec();
                    // Report it following `needs`, starting at its earliest step.
                    let first = cycle
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, &n)| n)
                        .map(|(i, _)| i)
                        .unwrap_or(0);
                    cycle.rotate_left(first);
                    if !out.contains(&cycle) {
                        out.push(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[node] = Mark::Done;
    }
    let mut marks = vec![Mark::New; deps.len()];
    let mut out = Vec::new();
    for node in 0..deps.len() {
        if marks[node] == Mark::New {
            visit(node, deps, &mut marks, &mut Vec::new(), &mut out);
        }
    }
    out
}
