//! What a capability costs a workflow that does not use it: `bench
//! server`'s durable figure (256 40-step chains at once) measured again, in
//! the same round, for chains that carry each capability without engaging
//! it, against the plain chain measured first in the round (the variants
//! in an order that turns each round; `none`, the plain chain again, shows
//! how far two measures of the same work differ).
//!
//! - `throttle`, `cache`, `wait`: the chain plus one step with that
//!   capability whose `when` is false (it is skipped; the run's driver and
//!   journal still know the workflow throttles, caches or waits);
//! - `budget`: the plain chain started with a fuel budget it never reaches
//!   (the run's fuel is checked against it at every attempt);
//! - `grants`: every step granted an HTTP host it never calls (each
//!   attempt's sandbox carries `wasi:http` and the allow-list);
//! - `none`: the plain chain again, for the spread between two measures
//!   of the same work.

use serde::Serialize;
use serde_json::{json, Value};

use super::Spread;

/// The host the `grants` variant grants (never called; the bench server
/// allows it).
pub const GRANTED_HOST: &str = "127.0.0.1:9";

/// One capability declared and not used.
pub struct Variant {
    pub capability: &'static str,
    /// The workflow the variant runs.
    pub workflow: &'static str,
    /// Each start's body.
    pub body: Value,
}

/// The variants' workflows, from the plain `chain` definition.
pub fn workflows(chain: &str) -> Vec<(&'static str, String)> {
    let skipped = |name: &str, step: &str| {
        let mut yaml = chain.replace("name: chain", &format!("name: {name}"));
        let output = yaml.find("output:").unwrap_or(yaml.len());
        yaml.insert_str(output, &format!("  - {{ id: never, when: \"false\", {step} }}\n"));
        yaml
    };
    vec![
        (
            "uthrottle",
            skipped(
                "uthrottle",
                "module: echo, throttle: { key: never, concurrency: 1 }, input: {}",
            ),
        ),
        ("ucache", skipped("ucache", "module: echo, cache: true, input: {}")),
        ("uwait", skipped("uwait", "wait: { event: never, timeout: 1h }")),
        (
            "ugrants",
            chain.replace("name: chain", "name: ugrants").replace(
                "module: echo,",
                &format!("module: echo, grants: {{ http: [\"{GRANTED_HOST}\"] }},"),
            ),
        ),
    ]
}

/// The variants, in the order they are measured.
pub fn variants() -> Vec<Variant> {
    let plain = |capability, workflow| Variant {
        capability,
        workflow,
        body: json!({}),
    };
    vec![
        // The plain chain again: how far two measures of the same work
        // differ in a round.
        plain("none", "chain"),
        plain("throttle", "uthrottle"),
        plain("cache", "ucache"),
        plain("wait", "uwait"),
        plain("grants", "ugrants"),
        Variant {
            capability: "budget",
            workflow: "chain",
            body: json!({ "budget": { "fuel": 1_000_000_000_000_000u64 } }),
        },
    ]
}

/// A capability's durable figure and its ratio to the plain chain's in the
/// same round (below 1: slower).
#[derive(Debug, Serialize)]
pub struct Unused {
    pub capability: &'static str,
    pub durable_completions_per_s: Spread,
    pub vs_plain: Spread,
}

/// Per variant, per round: (its durable figure, the plain one's).
#[derive(Default)]
pub struct Measured {
    rounds: Vec<Vec<(f64, f64)>>,
}

impl Measured {
    pub fn push(&mut self, variant: usize, value: f64, plain: f64) {
        if self.rounds.len() <= variant {
            self.rounds.resize_with(variant + 1, Vec::new);
        }
        self.rounds[variant].push((value, plain));
    }

    pub fn report(&self, variants: &[Variant]) -> Vec<Unused> {
        variants
            .iter()
            .zip(&self.rounds)
            .map(|(variant, rounds)| Unused {
                capability: variant.capability,
                durable_completions_per_s: Spread::of(&rounds.iter().map(|(v, _)| *v).collect::<Vec<_>>()),
                vs_plain: Spread::of(&rounds.iter().map(|(v, p)| v / p).collect::<Vec<_>>()),
            })
            .collect()
    }
}

pub fn display(f: &mut std::fmt::Formatter<'_>, unused: &[Unused]) -> std::fmt::Result {
    writeln!(
        f,
        "  declared, not used (the durable figure, then its ratio to the plain chain's in the same round):"
    )?;
    for line in unused {
        writeln!(
            f,
            "    {:<10} {} /s  {:.2}x (min {:.2}, max {:.2})",
            line.capability, line.durable_completions_per_s, line.vs_plain.median, line.vs_plain.min, line.vs_plain.max
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::workflow::Action;

    #[test]
    fn every_variant_is_the_chain_with_its_capability_declared() {
        let chain = super::super::chain_yaml(40);
        let mut caps = crate::limits::Caps::default();
        caps.grants.allow_http(super::GRANTED_HOST).unwrap();
        for (name, yaml) in super::workflows(&chain) {
            let workflow =
                crate::workflow::load(&yaml, &caps, None).unwrap_or_else(|e| panic!("{name}: {e:?}\n{yaml}"));
            let declared = |step: &crate::workflow::Step| match name {
                "uthrottle" => step.throttle.is_some(),
                "ucache" => step.cache.is_some(),
                "uwait" => matches!(step.action, Action::Wait { .. }),
                _ => !step.grants.is_empty(),
            };
            let steps: Vec<_> = workflow
                .steps
                .iter()
                .filter(|s| declared(s))
                .map(|s| s.id.as_str())
                .collect();
            let expected = if name == "ugrants" { 40 } else { 1 };
            assert_eq!(steps.len(), expected, "{name}: {steps:?}");
            if name != "ugrants" {
                assert_eq!(steps, ["never"], "{name}");
                assert_eq!(workflow.steps.len(), 41, "{name}");
            }
        }
    }
}
