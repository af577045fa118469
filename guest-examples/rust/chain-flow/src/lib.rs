//! The benchmarks' workflow code: `{"n": N}` calls the step `echo` N times,
//! one after the other, each with the previous output's `n` plus one (the
//! code twin of the YAML chain); with `"topic"`, it then waits for an event
//! of that topic and makes `"after"` more calls (default 0). Its output is
//! the number of calls to `echo`.

use sandstep_workflow::serde_json::{json, Value};
use sandstep_workflow::{workflow, Ctx, Failure, Options};

fn chain(ctx: &Ctx, prefix: &str, calls: u64, mut n: u64) -> Result<u64, Failure> {
    for i in 0..calls {
        let out: Value = ctx.step(&format!("{prefix}{i}"), "echo", &json!({ "n": n }), Options::new())?;
        n = out["n"].as_u64().unwrap_or_default() + 1;
    }
    Ok(n)
}

fn run(ctx: &Ctx, input: Value) -> Result<Value, Failure> {
    let mut n = chain(ctx, "s", input["n"].as_u64().unwrap_or(40), 0)?;
    if let Some(topic) = input["topic"].as_str() {
        ctx.wait_for_event::<Value>("wait", topic, None)?;
        n = chain(ctx, "after", input["after"].as_u64().unwrap_or(0), n)?;
    }
    Ok(json!(n))
}

workflow!(run);
