//! Workflow runs end to end with real guests: exact statuses, outputs and
//! event order.

use std::time::Duration;

use sandstep::run::{EventKind, MemoryJournal, RunState, RunStatus, Secrets};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::workflows::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_chain_passes_data_along() {
    let run = run(
        r#"
name: chain
inputs:
  who: { type: string, required: true }
steps:
  - id: greet
    module: hello
    input: { name: "{{ inputs.who }}" }
  - id: wrap
    module: echo
    input: { message: "{{ steps.greet.output.greeting }}", length: "{{ steps.greet.output.greeting | length }}" }
  - id: last
    module: echo
    input: { got: "{{ steps.wrap.output }}" }
output: "{{ steps.last.output.got.message }}"
"#,
        json!({ "who": "Ada" }),
    )
    .await;
    assert_eq!(run.state.status, RunStatus::Completed);
    assert_eq!(run.state.output, Some(json!("Hello, Ada!")));
    assert_eq!(
        run.step("wrap").output,
        Some(json!({ "message": "Hello, Ada!", "length": 11 }))
    );
    assert_eq!(
        run.trace(),
        [
            "run.queued",
            "run.started",
            "step.started greet",
            "step.succeeded greet",
            "step.started wrap",
            "step.succeeded wrap",
            "step.started last",
            "step.succeeded last",
            "run.completed"
        ]
    );
    let greet = &run.step("greet").units[0];
    assert_eq!(greet.attempts.len(), 1);
    assert!(greet.attempts[0].fuel_consumed > 0 && greet.attempts[0].duration_us > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diamond_branches_run_concurrently() {
    let run = run(
        r#"
name: diamond
steps:
  - id: top
    module: echo
    input: { n: 1 }
  - id: left
    module: hostile
    input: { mode: sleep, ms: 400, from: "{{ steps.top.output.n }}" }
  - id: right
    module: hostile
    input: { mode: sleep, ms: 400, from: "{{ steps.top.output.n }}" }
  - id: bottom
    module: echo
    needs: [left, right]
    input: { left: "{{ steps.left.output.slept_ms }}", right: "{{ steps.right.output.slept_ms }}" }
output: "{{ steps.bottom.output }}"
"#,
        json!({}),
    )
    .await;
    assert_eq!(run.state.output, Some(json!({ "left": 400, "right": 400 })));
    // Both branches started before either finished, and the whole run took
    // far less than the two sleeps in sequence.
    let first_done = run
        .position("step.succeeded left")
        .min(run.position("step.succeeded right"));
    assert!(run.position("step.started left") < first_done && run.position("step.started right") < first_done);
    assert!(run.elapsed < Duration::from_millis(750), "took {:?}", run.elapsed);
    assert!(
        run.position("step.started bottom")
            > run
                .position("step.succeeded left")
                .max(run.position("step.succeeded right"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complementary_when_runs_exactly_one_handler() {
    let yaml = r#"
name: classify
inputs:
  tier: { type: string, required: true }
steps:
  - id: classify
    module: echo
    input: { tier: "{{ inputs.tier }}" }
  - id: pro
    module: echo
    when: "steps.classify.output.tier == 'pro'"
    input: { handled: pro }
  - id: free
    module: echo
    when: "{{ steps.classify.output.tier != 'pro' }}"
    input: { handled: free }
"#;
    let pro = run(yaml, json!({ "tier": "pro" })).await;
    assert_eq!((pro.status("pro"), pro.status("free")), ("succeeded", "skipped"));
    assert_eq!(
        pro.step("free").reason.as_deref(),
        Some("when `{{ steps.classify.output.tier != 'pro' }}` is false")
    );
    let free = run(yaml, json!({ "tier": "basic" })).await;
    assert_eq!((free.status("pro"), free.status("free")), ("skipped", "succeeded"));
    assert_eq!(
        free.step("pro").reason.as_deref(),
        Some("when `steps.classify.output.tier == 'pro'` is false")
    );
    assert_eq!(free.state.status, RunStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_each_bounds_concurrency_and_keeps_order() {
    let run = run(
        r#"
name: fan
steps:
  - id: list
    module: echo
    input: { items: [{ ms: 250 }, { ms: 50 }, { ms: 150 }, { ms: 10 }, { ms: 100 }] }
  - id: each
    module: hostile
    for_each: "{{ steps.list.output.items }}"
    concurrency: 2
    input: { mode: sleep, ms: "{{ item.ms }}", position: "{{ index }}" }
output: "{{ steps.each.output | map(attribute='slept_ms') | list }}"
"#,
        json!({}),
    )
    .await;
    assert_eq!(run.state.status, RunStatus::Completed);
    assert_eq!(run.state.output, Some(json!([250, 50, 150, 10, 100])));
    assert_eq!(run.step("each").items, Some(5));
    // Never more than two items running at once.
    let mut running = 0i32;
    let mut peak = 0;
    for entry in run.trace() {
        if entry.starts_with("step.started each[") {
            running += 1;
        } else if entry.starts_with("step.item_succeeded each[") {
            running -= 1;
        }
        peak = peak.max(running);
    }
    assert_eq!(peak, 2, "{:?}", run.trace());
    // Items finished out of order (item 1 before item 0).
    assert!(run.position("step.item_succeeded each[1]") < run.position("step.item_succeeded each[0]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_each_failures_are_clear() {
    let not_array = run(
        r#"
name: bad-list
steps:
  - id: list
    module: echo
    input: { items: { not: list } }
  - id: each
    module: echo
    for_each: "{{ steps.list.output.items }}"
    input: { x: "{{ item }}" }
"#,
        json!({}),
    )
    .await;
    let error = not_array.step("each").error.clone().unwrap();
    assert_eq!(
        (error.kind.as_str(), error.message.as_str()),
        ("for_each_error", "for_each must produce an array, got an object")
    );
    assert_eq!(not_array.state.status, RunStatus::Failed);

    let empty = run("name: empty\nsteps:\n  - { id: each, module: echo, for_each: [], input: {} }\noutput: \"{{ steps.each.output }}\"\n", json!({})).await;
    assert_eq!(empty.state.output, Some(json!([])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_then_success() {
    let run = run(
        r#"
name: flaky
steps:
  - id: flaky
    module: hostile
    input: { mode: flaky, succeed_at: 3 }
    retry: { max_attempts: 3, initial_interval: 20ms, backoff: 2.0, max_interval: 1s, jitter: 0 }
output: "{{ steps.flaky.output }}"
"#,
        json!({}),
    )
    .await;
    assert_eq!(run.state.status, RunStatus::Completed);
    assert_eq!(
        run.state.output,
        Some(json!({ "attempt": 3, "idempotency_key": "run-test/flaky" }))
    );
    assert_eq!(
        run.trace(),
        [
            "run.queued",
            "run.started",
            "step.started flaky",
            "step.retrying flaky",
            "step.started flaky",
            "step.retrying flaky",
            "step.started flaky",
            "step.succeeded flaky",
            "run.completed"
        ]
    );
    let attempts = &run.step("flaky").units[0].attempts;
    assert_eq!(attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        attempts[0].error.as_ref().unwrap().message,
        "flaky failure on attempt 1"
    );
    // Backoff: 20 ms, then 40 ms.
    let retry_gaps: Vec<u64> = run
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepRetrying { retry_at_ms, .. } => Some(retry_at_ms - e.at_ms),
            _ => None,
        })
        .collect();
    assert!(
        retry_gaps[0] >= 19 && retry_gaps[0] <= 25 && retry_gaps[1] >= 39 && retry_gaps[1] <= 45,
        "{retry_gaps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_exhausted_fails_the_run() {
    let run = run(
        r#"
name: exhausted
defaults:
  retry: { max_attempts: 2, initial_interval: 10ms }
steps:
  - id: flaky
    module: hostile
    input: { mode: flaky, succeed_at: 5 }
"#,
        json!({}),
    )
    .await;
    assert_eq!(run.state.status, RunStatus::Failed);
    assert_eq!(run.status("flaky"), "failed");
    assert_eq!(run.step("flaky").units[0].attempts.len(), 2);
    assert_eq!(
        run.state.error.as_deref(),
        Some("step flaky failed: guest_error: flaky failure on attempt 2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_failures_are_not_retried() {
    for (input, kind) in [
        (json!({ "mode": "error", "retryable": false }), "guest_error"),
        (json!({ "mode": "spin", "n": 100000000000u64 }), "fuel_exhausted"),
        (json!({ "mode": "alloc", "mib": 100 }), "memory_limit"),
    ] {
        let yaml = format!(
            "name: once\nsteps:\n  - id: s\n    module: hostile\n    input: {input}\n    on_failure: retry\n    limits: {{ fuel: 100000000, memory: 32MiB }}\n"
        );
        let run = run(&yaml, json!({})).await;
        let unit = &run.step("s").units[0];
        assert_eq!(unit.attempts.len(), 1, "{kind} must not be retried");
        assert_eq!(unit.error.as_ref().unwrap().kind, kind);
        assert_eq!(run.state.status, RunStatus::Failed);
    }
    // A template error is not retried either.
    let run = run(
        "name: tmpl\nsteps:\n  - id: a\n    module: echo\n  - id: b\n    module: echo\n    on_failure: retry\n    input: { x: \"{{ steps.a.output.nope }}\" }\n",
        json!({}),
    )
    .await;
    let error = run.step("b").error.clone().unwrap();
    assert_eq!(error.kind, "template_error");
    assert_eq!(
        error.message,
        "input: steps.a.output.nope does not exist (steps.a.output is an empty object)"
    );
    assert_eq!(run.step("b").attempt_count(), 0, "no attempt ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_skips_dependents_and_completes() {
    let run = run(
        r#"
name: cont
steps:
  - id: bad
    module: hostile
    input: { mode: error, retryable: false }
    on_failure: continue
  - id: after_bad
    module: echo
    needs: [bad]
  - id: cleanup
    module: echo
    needs: [bad]
    trigger: all_done
    input: { bad_status: "{{ steps.bad.status }}" }
  - id: independent
    module: echo
    input: { ok: true }
output: { cleanup: "{{ steps.cleanup.output }}", independent: "{{ steps.independent.output.ok }}" }
"#,
        json!({}),
    )
    .await;
    assert_eq!(run.state.status, RunStatus::Completed);
    assert_eq!(run.status("bad"), "failed");
    assert_eq!(run.status("after_bad"), "skipped");
    assert_eq!(run.step("after_bad").reason.as_deref(), Some("dependency bad failed"));
    assert_eq!(
        run.state.output,
        Some(json!({ "cleanup": { "bad_status": "failed" }, "independent": true }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_cancels_running_siblings() {
    let run = run(
        r#"
name: stop
steps:
  - id: slow
    module: hostile
    input: { mode: sleep, ms: 5000 }
  - id: bad
    module: hostile
    input: { mode: error, retryable: false }
  - id: later
    module: echo
    needs: [bad]
"#,
        json!({}),
    )
    .await;
    assert_eq!(run.state.status, RunStatus::Failed);
    assert_eq!(
        run.state.error.as_deref(),
        Some("step bad failed: guest_error: the guest says no")
    );
    assert_eq!(
        (run.status("slow"), run.status("bad"), run.status("later")),
        ("canceled", "failed", "skipped")
    );
    assert!(
        run.elapsed < Duration::from_secs(2),
        "the sleeping sibling was interrupted, took {:?}",
        run.elapsed
    );
    assert_eq!(run.trace().last().map(String::as_str), Some("run.failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skips_propagate_with_reasons() {
    let run = run(
        r#"
name: skips
steps:
  - id: a
    module: echo
    when: "false"
  - id: b
    module: echo
    needs: [a]
  - id: c
    module: echo
    input: { from_b: "{{ steps.b.output }}" }
  - id: d
    module: echo
    needs: [c]
    trigger: all_done
    input: { c: "{{ steps.c.status }}" }
output: "{{ steps.d.output }}"
"#,
        json!({}),
    )
    .await;
    assert_eq!(run.state.status, RunStatus::Completed);
    let reasons: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|s| run.step(s).reason.clone().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["when `false` is false", "dependency a skipped", "dependency b skipped"]
    );
    assert_eq!(run.state.output, Some(json!({ "c": "skipped" })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_timeout_fails_the_step() {
    let run = run(
        "name: st\nsteps:\n  - id: slow\n    module: hostile\n    timeout: 200ms\n    input: { mode: sleep, ms: 5000 }\n",
        json!({}),
    )
    .await;
    let error = run.step("slow").error.clone().unwrap();
    assert_eq!(
        (error.kind.as_str(), error.message.as_str()),
        ("timeout", "timed out after 200ms")
    );
    assert_eq!(run.state.status, RunStatus::Failed);
    assert!(run.elapsed < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_timeout_fails_the_run() {
    let run = run(
        "name: rt\ntimeout: 300ms\nsteps:\n  - id: slow\n    module: hostile\n    input: { mode: sleep, ms: 5000 }\n  - id: after\n    module: echo\n    needs: [slow]\n",
        json!({}),
    )
    .await;
    assert_eq!(run.state.status, RunStatus::Failed);
    assert_eq!(run.state.error.as_deref(), Some("the run timed out after 300ms"));
    assert_eq!((run.status("slow"), run.status("after")), ("canceled", "skipped"));
    assert!(
        run.elapsed >= Duration::from_millis(300) && run.elapsed < Duration::from_secs(2),
        "{:?}",
        run.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_interrupts_running_attempts() {
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let yaml = "name: c\nsteps:\n  - id: slow\n    module: hostile\n    input: { mode: loop }\n    limits: { fuel: 100000000000 }\n  - id: nap\n    sleep: 1h\n  - id: after\n    module: echo\n    needs: [slow]\n";
    let run = run_with(yaml, json!({}), Secrets::default(), cancel).await;
    assert_eq!(run.state.status, RunStatus::Canceled);
    assert_eq!(
        (run.status("slow"), run.status("nap"), run.status("after")),
        ("canceled", "canceled", "canceled")
    );
    let trace = run.trace();
    let canceling = run.position("run.canceling");
    assert!(canceling < run.position("step.canceled slow"));
    assert_eq!(trace.last().map(String::as_str), Some("run.canceled"));
    assert!(run.elapsed < Duration::from_secs(2), "{:?}", run.elapsed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_produce_typed_values() {
    let run = run(
        r#"
name: types
inputs:
  n: { type: integer, default: 21 }
  tags: { type: array, default: [x, y] }
steps:
  - id: src
    module: echo
    input: { list: [1, 2, 3], obj: { k: v }, flag: true }
  - id: use
    module: echo
    input:
      whole: "{{ steps.src.output }}"
      list: "{{ steps.src.output.list }}"
      number: "{{ inputs.n * 2 }}"
      flag: "{{ steps.src.output.flag }}"
      text: "n={{ inputs.n }} tags={{ inputs.tags }}"
      nested: [ "{{ steps.src.output.obj.k }}", { deep: "{{ steps.src.output.list[1] }}" } ]
      run: "{{ run.id }} of {{ workflow.name }}"
      literal: "no template here"
output: "{{ steps.use.output }}"
"#,
        json!({}),
    )
    .await;
    assert_eq!(
        run.state.output,
        Some(json!({
            "whole": { "list": [1, 2, 3], "obj": { "k": "v" }, "flag": true },
            "list": [1, 2, 3],
            "number": 42,
            "flag": true,
            "text": "n=21 tags=[\"x\",\"y\"]",
            "nested": ["v", { "deep": 2 }],
            "run": "run-test of types",
            "literal": "no template here"
        }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_path_in_output_fails_the_run_naming_it() {
    let run = run(
        "name: out\nsteps:\n  - { id: a, module: echo, input: { x: 1 } }\noutput: \"{{ steps.a.output.y }}\"\n",
        json!({}),
    )
    .await;
    assert_eq!(run.state.status, RunStatus::Failed);
    assert_eq!(
        run.state.error.as_deref(),
        Some("output: steps.a.output.y does not exist (steps.a.output has x)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_inputs_are_checked_before_the_run() {
    let spec = spec(
        "name: in\ninputs:\n  id: { type: string, required: true }\n  n: { type: integer, default: 3 }\nsteps:\n  - { id: a, module: echo }\n",
        Secrets::default(),
    );
    let refused = |input: serde_json::Value| sandstep::run::Executor::queue(&spec, &input).unwrap_err();
    assert_eq!(refused(json!({})), ["input id is required"]);
    assert_eq!(refused(json!({ "id": 7 })), ["input id must be a string, got a number"]);
    assert_eq!(
        refused(json!({ "id": "x", "m": 1 })),
        ["unknown input m (declared: id, n)"]
    );
    assert_eq!(
        refused(json!([1])),
        ["the run input must be a JSON object, got an array"]
    );
    let accepted = sandstep::run::Executor::queue(&spec, &json!({ "id": "x" })).unwrap();
    assert!(matches!(accepted.kind, EventKind::RunQueued { input, .. } if input == json!({ "id": "x", "n": 3 })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_steps_but_never_events() {
    let secrets = Secrets::new([("API_KEY".to_string(), "s3cr3t-value".to_string())].into());
    let run = run_with(
        "name: sec\nsteps:\n  - id: use\n    module: echo\n    input: { header: \"Bearer {{ secrets.API_KEY }}\" }\noutput: \"{{ steps.use.output }}\"\n",
        json!({}),
        secrets,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(run.state.status, RunStatus::Completed);
    assert_eq!(run.state.output, Some(json!({ "header": "Bearer [redacted]" })));
    let all = serde_json::to_string(&run.events).unwrap();
    assert!(!all.contains("s3cr3t-value"), "a secret leaked into events");
    // A missing secret is named, not rendered empty.
    let missing = run_with(
        "name: sec2\nsteps:\n  - { id: use, module: echo, input: { k: \"{{ secrets.OTHER }}\" } }\n",
        json!({}),
        Secrets::new([("API_KEY".to_string(), "v".to_string())].into()),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(
        missing.step("use").error.as_ref().unwrap().message,
        "input: secret OTHER is not set"
    );
}

/// Regression: a secret holding a quote or a backslash leaked when it was
/// written inside a JSON text (escaped) or a URL (percent-encoded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_redacted_in_json_and_url_forms() {
    let secret = "p\"a\\ss wörd!";
    let secrets = Secrets::new([("API_KEY".to_string(), secret.to_string())].into());
    let run = run_with(
        "name: sec\nsteps:\n  - id: use\n    module: echo\n    input: { json: \"{{ {'k': secrets.API_KEY} | tojson }}\", url: \"https://h/?k={{ secrets.API_KEY | urlencode }}\", raw: \"{{ secrets.API_KEY }}\" }\noutput: \"{{ steps.use.output }}\"\n",
        json!({}),
        secrets,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(run.state.status, RunStatus::Completed, "{:?}", run.state.error);
    assert_eq!(
        run.state.output,
        Some(json!({ "json": "{\"k\":\"[redacted]\"}", "url": "https://h/?k=[redacted]", "raw": "[redacted]" }))
    );
    let all = serde_json::to_string(&run.events).unwrap();
    for leaked in ["ss wörd", "ss w\\u00f6rd", "ss%20w%C3%B6rd", "ss+w%C3%B6rd"] {
        assert!(!all.contains(leaked), "{leaked} leaked into events: {all}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_steps_wait_then_succeed() {
    let run = run(
        "name: nap\nsteps:\n  - { id: nap, sleep: 150ms }\n  - { id: after, module: echo, needs: [nap] }\n",
        json!({}),
    )
    .await;
    assert_eq!(run.state.status, RunStatus::Completed);
    assert!(run.elapsed >= Duration::from_millis(150));
    assert!(run.position("step.waiting nap") < run.position("step.succeeded nap"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_get_templated_args() {
    let run = run(
        "name: cmd\ninputs:\n  places: { type: integer, default: 1 }\nsteps:\n  - id: stats\n    module: stats\n    args: [\"--round\", \"{{ inputs.places }}\"]\n    input: { numbers: [1, 2, 2] }\noutput: \"{{ steps.stats.output.mean }}\"\n",
        json!({}),
    )
    .await;
    assert_eq!(run.state.output, Some(json!(1.7)));
}

/// An interrupted run continues from its events: recorded steps are not run
/// again; the step in flight runs again as a new attempt with the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_from_stored_events() {
    let yaml = r#"
name: resume
steps:
  - id: first
    module: hostile
    input: { mode: context }
  - id: slow
    module: hostile
    input: { mode: sleep, ms: 300, after: "{{ steps.first.output.attempt }}" }
  - id: last
    module: hostile
    input: { mode: context, before: "{{ steps.slow.output }}" }
output: { first: "{{ steps.first.output }}", last: "{{ steps.last.output }}" }
"#;
    let spec = std::sync::Arc::new(spec(yaml, Secrets::default()));
    let journal = std::sync::Arc::new(MemoryJournal::new());
    let state = queued(&spec, json!({}), journal.as_ref()).await;
    // "Crash" while `slow` is in flight: drop the executor mid-run.
    let (spec2, journal2) = (spec.clone(), journal.clone());
    let running = tokio::spawn(async move {
        let executor = executor();
        executor
            .execute(&spec2, state, journal2.as_ref(), CancellationToken::new())
            .await
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !journal
        .events()
        .iter()
        .any(|e| matches!(&e.kind, EventKind::StepStarted { step, .. } if step == "slow"))
    {
        assert!(std::time::Instant::now() < deadline, "slow never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.abort();
    let _ = running.await;

    let stored = journal.events();
    let rebuilt = RunState::from_events(&spec.run_id, &spec.workflow, &stored);
    assert_eq!(rebuilt.steps["first"].status.as_str(), "succeeded");
    assert_eq!(rebuilt.steps["slow"].units[0].running, Some(1));

    let resumed_journal = MemoryJournal::new();
    let finished = executor()
        .execute(&spec, rebuilt, &resumed_journal, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(finished.status, RunStatus::Completed);
    let after: Vec<_> = resumed_journal.events();
    let started: Vec<(String, u32, String)> = after
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepStarted {
                step,
                attempt,
                idempotency_key,
                ..
            } => Some((step.clone(), *attempt, idempotency_key.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        started,
        [
            ("slow".to_string(), 2, "run-test/slow".to_string()),
            ("last".to_string(), 1, "run-test/last".to_string())
        ],
        "first is not run again; slow runs again as attempt 2 with the same key"
    );
    assert_eq!(
        after[0].seq,
        stored.last().unwrap().seq + 1,
        "events continue the sequence"
    );
    assert_eq!(finished.output.unwrap()["first"]["attempt"], 1);
}
