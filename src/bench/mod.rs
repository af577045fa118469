//! Benchmarks behind `sandstep bench`. Each prints its figures next to a
//! baseline measured in the same process, so ratios hold across machines.

pub mod sandbox;
pub mod server;
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
