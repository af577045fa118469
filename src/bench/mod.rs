//! Benchmarks behind `sandstep bench`. Each prints its figures next to a
//! baseline measured in the same process, so ratios hold across machines.

pub mod sandbox;
pub mod server;
pub mod waits;
pub mod workflow;

/// The step context of every benchmark attempt.
pub(crate) fn bench_context() -> crate::sandbox::StepContext {
    crate::sandbox::StepContext {
        run_id: "bench".into(),
        step_id: "bench".into(),
        attempt: 1,
        idempotency_key: "bench".into(),
    }
}

/// A sequential chain of `steps` trivial `echo` steps, each reading the
/// previous one's output through a template.
pub(crate) fn chain_yaml(steps: usize) -> String {
    let mut yaml = String::from("name: chain\nsteps:\n  - { id: s0, module: echo, input: { n: 0 } }\n");
    for i in 1..steps {
        yaml.push_str(&format!(
            "  - {{ id: s{i}, module: echo, input: {{ n: \"{{{{ steps.s{}.output.n + 1 }}}}\" }} }}\n",
            i - 1
        ));
    }
    yaml.push_str(&format!("output: \"{{{{ steps.s{}.output.n }}}}\"\n", steps - 1));
    yaml
}

/// A step that lists `items` objects (`echo` of a literal list), then a
/// `for_each` with concurrency 64 of a trivial step over that list.
pub(crate) fn fan_out_yaml(items: usize) -> String {
    let list: Vec<String> = (0..items).map(|i| format!("{{i: {i}}}")).collect();
    format!(
        "name: fan\nconcurrency: 64\nsteps:\n  - id: list\n    module: echo\n    input: {{ items: [{}] }}\n  - id: each\n    module: echo\n    for_each: \"{{{{ steps.list.output.items }}}}\"\n    concurrency: 64\n    input: {{ i: \"{{{{ item.i }}}}\" }}\noutput: \"{{{{ steps.each.output | length }}}}\"\n",
        list.join(", ")
    )
}

/// The median, min and max of a figure over rounds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Spread {
            median: sorted[sorted.len() / 2],
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let precision = if self.median >= 100.0 { 0 } else { 1 };
        write!(
            f,
            "{:8.p$}  (min {:.p$}, max {:.p$})",
            self.median,
            self.min,
            self.max,
            p = precision
        )
    }
}
