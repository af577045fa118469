//! Workflow code that does what its input asks, for the code-workflow
//! tests: `{"mode": "...", ...}`.

use std::time::Duration;

use sandstep_workflow::serde_json::{json, Value};
use sandstep_workflow::{workflow, Ctx, Failure, Options};

fn run(ctx: &Ctx, input: Value) -> Result<Value, Failure> {
    let mode = input["mode"].as_str().unwrap_or("chain");
    match mode {
        // `n` pairs of steps one after the other: `s-{i}` spins `spin`
        // iterations, or with `ping` (a URL), POSTs to `{ping}/s-{i}` with
        // httpprobe (a guest-side count of the times each step ran);
        // `k-{i}` reports its idempotency key.
        "chain" => {
            let n = input["n"].as_u64().unwrap_or(3);
            let spin = input["spin"].as_u64().unwrap_or(0);
            let mut keys = Vec::new();
            for i in 0..n {
                let name = format!("s-{i}");
                let _: Value = match input["ping"].as_str() {
                    Some(url) => {
                        let host = url.trim_start_matches("http://").split('/').next().unwrap_or_default();
                        let request = json!({ "requests": [{ "url": format!("{url}/{name}"), "method": "POST" }] });
                        let grants = json!({ "http": [host] });
                        ctx.step(&name, "httpprobe", &request, Options::new().set("grants", grants))?
                    }
                    None => ctx.step(&name, "hostile", &json!({ "mode": "spin", "n": spin }), Options::new())?,
                };
                let key: Value = ctx.step(&format!("k-{i}"), "hostile", &json!({ "mode": "context" }), Options::new())?;
                keys.push(key["idempotency_key"].clone());
            }
            Ok(json!({ "steps": n * 2, "last_key": keys.last() }))
        }
        // A slow call submitted first and a quick one second: the quick one
        // ends first, and await-next says so (then a sleep, to park).
        "race" => {
            let slow = ctx.submit_step("slow", "hostile", &json!({ "mode": "spin", "n": 300_000_000u64 }), Options::new());
            let quick = ctx.submit_step("quick", "hostile", &json!({ "mode": "ok" }), Options::new());
            let (first, _) = ctx.next::<Value>(&[slow, quick]);
            let (second, _) = ctx.next::<Value>(&[slow]);
            ctx.sleep("nap", Duration::from_millis(input["nap_ms"].as_u64().unwrap_or(10)));
            Ok(json!({ "first": if first == quick { "quick" } else { "slow" }, "second": second.0 }))
        }
        "wait" => {
            let event = ctx.wait_for_event::<Value>("approval", input["topic"].as_str().unwrap_or("go"), None)?;
            Ok(json!({ "event": event.id, "data": event.data, "now": ctx.now() > 0, "random": ctx.random() > 0 }))
        }
        // Code as it evolves across workflow versions (the version is the
        // run's): from version 2 on an `audit` step follows `first`, kept
        // off runs recorded before it by `patched` (mode `patch`) or not
        // (mode `unguarded`, whose old runs diverge); `after` runs after
        // the approval from version 2 on, behind `patched` too.
        "patch" | "unguarded" => {
            let new = ctx.info().version >= 2;
            let _: Value = ctx.step("first", "hostile", &json!({ "mode": "ok" }), Options::new())?;
            let audit = new && (mode == "unguarded" || ctx.patched("audit"));
            if audit {
                let _: Value = ctx.step("audit", "hostile", &json!({ "mode": "ok" }), Options::new())?;
            }
            let approval = ctx.wait_for_event::<Value>("approval", input["topic"].as_str().unwrap_or("go"), None)?;
            let after = new && ctx.patched("after");
            if after {
                let _: Value = ctx.step("after", "hostile", &json!({ "mode": "ok" }), Options::new())?;
            }
            Ok(json!({ "audit": audit, "after": after, "approval": approval.data }))
        }
        "twice" => {
            let _: Value = ctx.step("same", "hostile", &json!({ "mode": "ok" }), Options::new())?;
            let _: Value = ctx.step("same", "hostile", &json!({ "mode": "ok" }), Options::new())?;
            Ok(Value::Null)
        }
        "grant" => {
            let options = Options::new().set("grants", json!({ "http": ["example.com"] }));
            match ctx.step::<_, Value>("fetch", "hostile", &json!({ "mode": "ok" }), options) {
                Ok(_) => Ok(json!("granted")),
                Err(failure) => Ok(json!({ "kind": failure.kind, "message": failure.message })),
            }
        }
        "step-error" => {
            let _: Value = ctx.step("no", "hostile", &json!({ "mode": "error", "retryable": false }), Options::new())?;
            Ok(Value::Null)
        }
        "error" => Err(Failure::error("the order was refused")),
        "panic" => panic!("the workflow gave up"),
        "spin" => {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "grow" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        other => Err(Failure::error(format!("unknown mode {other}"))),
    }
}

workflow!(run);
