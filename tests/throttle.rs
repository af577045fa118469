//! Keyed concurrency and rate limits (`throttle:`): attempts of one key are
//! held to the limits while other keys proceed, waiting units show as
//! `throttled`, keys are served in turn, and the books outlive a restart.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::query;
use crate::support::server::TestServer;

/// Each definition is refused (422) with its first error at `location`.
async fn refused(server: &TestServer, cases: &[(&str, &str, &str)]) {
    for (yaml, location, message) in cases {
        let (status, body) = server.apply("t", yaml).await;
        assert_eq!(status, 422, "{yaml}: {body}");
        assert_eq!(
            (
                body["errors"][0]["location"].as_str(),
                body["errors"][0]["message"].as_str()
            ),
            (Some(*location), Some(*message)),
            "{yaml}: {body}"
        );
    }
}

/// One attempt as the stored events record it: (step, item, start, end) in ms.
#[derive(Debug, Clone)]
struct Span {
    item: Option<u64>,
    started: u64,
    ended: u64,
}

/// Every attempt of `run`, from the events table.
async fn spans(server: &TestServer, run: &str) -> Vec<Span> {
    let rows = query(
        &server.data_dir,
        &format!("SELECT type, at_ms, body FROM events WHERE run_id = '{run}' ORDER BY seq"),
    )
    .await;
    let mut open: HashMap<Option<u64>, u64> = HashMap::new();
    let mut spans = Vec::new();
    for row in rows {
        let body: Value = serde_json::from_str(row[2].as_str().unwrap()).unwrap();
        let at = row[1].as_u64().unwrap();
        let item = body["item"].as_u64();
        match row[0].as_str().unwrap() {
            "step.started" => {
                open.insert(item, at);
            }
            "step.item_succeeded" | "step.succeeded" | "step.failed" | "step.retrying" => {
                if let Some(started) = open.remove(&item) {
                    spans.push(Span {
                        item,
                        started,
                        ended: at,
                    });
                }
            }
            _ => {}
        }
    }
    spans
}

/// The most spans running at one moment.
fn most_at_once(spans: &[&Span]) -> usize {
    let mut edges: Vec<(u64, i32)> = spans.iter().flat_map(|s| [(s.started, 1), (s.ended, -1)]).collect();
    // An end at the same ms as a start comes first (the slot was given back).
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, change) in edges {
        now += change;
        most = most.max(now);
    }
    most as usize
}

const KEYED: &str = r#"
name: keyed
steps:
  - id: each
    module: hostile
    for_each: [A, A, A, A, A, A, B, B]
    concurrency: 8
    throttle: { key: "{{ item }}", concurrency: 2 }
    input: { mode: sleep, ms: 300 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_limit_attempts_of_one_key_run_at_once_while_other_keys_proceed() {
    let server = TestServer::with_workflow("keyed", KEYED).await;
    let id = server.start_run("keyed").await;
    // While the first wave runs: 4 A items wait, shown as throttled.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let waiting = loop {
        let (_, run) = server.get(&format!("/v1/runs/{id}")).await;
        if run["steps"][0]["throttled_items"] == 4 {
            break run;
        }
        assert!(std::time::Instant::now() < deadline, "never 4 throttled: {run}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(waiting["steps"][0]["status"], "running");
    assert_eq!(waiting["steps"][0]["throttle_key"], "A", "{waiting}");
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert!(run["steps"][0].get("throttled_items").is_none(), "{run}");
    assert!(run["steps"][0].get("throttle_key").is_none(), "{run}");

    let spans = spans(&server, &id).await;
    assert_eq!(spans.len(), 8);
    let a: Vec<&Span> = spans.iter().filter(|s| s.item.unwrap() < 6).collect();
    let b: Vec<&Span> = spans.iter().filter(|s| s.item.unwrap() >= 6).collect();
    assert_eq!(most_at_once(&a), 2, "{spans:?}");
    assert_eq!(most_at_once(&b), 2, "{spans:?}");
    // B started with the first wave of A, not after it.
    let first_a = a.iter().map(|s| s.started).min().unwrap();
    let first_a_end = a.iter().map(|s| s.ended).min().unwrap();
    assert!(b.iter().all(|s| s.started < first_a_end), "{spans:?}");
    // Three waves of A, 300 ms each.
    let last_a = a.iter().map(|s| s.ended).max().unwrap();
    assert!(last_a - first_a >= 900, "{spans:?}");
    let throttled = query(
        &server.data_dir,
        &format!("SELECT COUNT(*) FROM events WHERE run_id = '{id}' AND type = 'step.throttled'"),
    )
    .await;
    assert_eq!(throttled[0][0], 4, "each waiting unit is recorded once");
    let holds = query(&server.data_dir, "SELECT COUNT(*) FROM throttle_holds").await;
    assert_eq!(holds[0][0], 0, "every slot was given back");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_spaces_starts_as_declared() {
    let yaml = r#"
name: rated
steps:
  - id: each
    module: echo
    for_each: [1, 2, 3, 4, 5]
    throttle: { key: api, rate: { limit: 2, per: 1s } }
    input: { n: "{{ item }}" }
"#;
    let server = TestServer::with_workflow("rated", yaml).await;
    let id = server.start_run("rated").await;
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let mut starts: Vec<u64> = spans(&server, &id).await.iter().map(|s| s.started).collect();
    starts.sort();
    assert_eq!(starts.len(), 5);
    // At most 2 within any second (starts are recorded when granted;
    // the events come a moment later, so allow for that moment).
    for i in 0..3 {
        assert!(starts[i + 2] - starts[i] >= 900, "{starts:?}");
    }
    assert!(starts[4] - starts[0] >= 1900, "{starts:?}");
    assert!(starts[1] - starts[0] < 500, "the first two at once: {starts:?}");
    server.stop().await;
}

/// 1,000 items of key A and 10 of key B: B's items take turns with A's and
/// finish long before A's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_key_does_not_starve_another() {
    let mut items = vec!["A"; 1000];
    items.extend(["B"; 10]);
    let yaml = format!(
        "name: fair\nsteps:\n  - id: each\n    module: hostile\n    for_each: {}\n    concurrency: 4\n    throttle: {{ key: \"{{{{ item }}}}\", concurrency: 2 }}\n    input: {{ mode: sleep, ms: 2 }}\n",
        serde_json::to_string(&items).unwrap()
    );
    let server = TestServer::with_workflow("fair", &yaml).await;
    let id = server.start_run("fair").await;
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["steps"][0]["output"].as_array().unwrap().len(), 1010);
    let mut spans = spans(&server, &id).await;
    spans.sort_by_key(|s| s.ended);
    let b_done = spans.iter().rposition(|s| s.item.unwrap() >= 1000).unwrap();
    // Taking turns, B's 10 items end within the first ~20 endings of
    // 1,010; first-come order would put them last.
    assert!(b_done < 40, "B's last item ended {b_done}th: {:?}", &spans[..50]);
    let a: Vec<&Span> = spans.iter().filter(|s| s.item.unwrap() < 1000).collect();
    assert_eq!(most_at_once(&a), 2);
    server.stop().await;
}

/// A workflow's throttle holds across its runs: one attempt per customer at
/// a time, another customer unaffected; a plain step waiting is `pending`
/// with `reason: throttled` and the key it waits under.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_throttle_holds_across_runs() {
    let yaml = r#"
name: per_customer
inputs:
  customer: { type: string }
throttle: { key: "{{ inputs.customer }}", concurrency: 1 }
steps:
  - { id: call, module: hostile, input: { mode: sleep, ms: 300 } }
"#;
    let server = TestServer::with_workflow("per_customer", yaml).await;
    let mut ids = Vec::new();
    for customer in ["c1", "c1", "c1", "c2"] {
        let (status, run) = server
            .post_json(
                "/v1/workflows/per_customer/runs",
                json!({ "input": { "customer": customer } }),
            )
            .await;
        assert_eq!(status, 201, "{run}");
        ids.push(run["id"].as_str().unwrap().to_string());
    }
    // Some c1 run waits, pending and throttled.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut reasons = Vec::new();
        for id in &ids[..3] {
            let (_, run) = server.get(&format!("/v1/runs/{id}")).await;
            let step = &run["steps"][0];
            reasons.push((
                step["status"].clone(),
                step["reason"].clone(),
                step["throttle_key"].clone(),
            ));
        }
        if reasons.contains(&(json!("pending"), json!("throttled"), json!("c1"))) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no run shown throttled: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut c1 = Vec::new();
    for id in &ids {
        assert_eq!(server.wait_run(id).await["status"], "completed");
    }
    for id in &ids[..3] {
        c1.extend(spans(&server, id).await);
    }
    let c1: Vec<&Span> = c1.iter().collect();
    assert_eq!(most_at_once(&c1), 1, "{c1:?}");
    let c2 = spans(&server, &ids[3]).await;
    let first_end = c1.iter().map(|s| s.ended).min().unwrap();
    assert!(c2[0].started < first_end, "c2 did not wait for c1: {c1:?} {c2:?}");
    server.stop().await;
}

/// The rate window is in the store: after a restart, a start within it
/// still waits; canceling a throttled run ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_windows_hold_across_a_restart() {
    let yaml = r#"
name: hourly
steps:
  - { id: call, module: echo, input: { n: 1 }, throttle: { key: report, rate: { limit: 1, per: 1h } } }
"#;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    server.push_test_modules().await;
    assert_eq!(server.apply("hourly", yaml).await.0, 201);
    let first = server.start_run("hourly").await;
    assert_eq!(server.wait_run(&first).await["status"], "completed");
    server.stop().await;

    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let second = server.start_run("hourly").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, run) = server.get(&format!("/v1/runs/{second}")).await;
    assert_eq!(run["status"], "running", "{run}");
    assert_eq!(
        (run["steps"][0]["status"].as_str(), run["steps"][0]["reason"].as_str()),
        (Some("pending"), Some("throttled")),
        "{run}"
    );
    assert_eq!(run["steps"][0]["attempts"], json!([]));
    let (status, _) = server.post_json(&format!("/v1/runs/{second}/cancel"), json!({})).await;
    assert_eq!(status, 202);
    assert_eq!(server.wait_run(&second).await["status"], "canceled");
    server.stop().await;
}

#[tokio::test]
async fn throttle_definitions_are_checked() {
    let server = TestServer::start().await;
    server.push_test_modules().await;
    let cases = [
        (
            "name: t\nsteps:\n  - { id: a, module: echo, throttle: { key: k } }\n",
            "steps.a.throttle",
            "give `concurrency`, `rate` or both",
        ),
        (
            "name: t\nsteps:\n  - { id: a, module: echo, throttle: { key: k, concurrency: 0 } }\n",
            "steps.a.throttle.concurrency",
            "must be 1 to 100000, not 0",
        ),
        (
            "name: t\nsteps:\n  - { id: a, module: echo, throttle: { key: k, rate: { limit: 1, per: 0s } } }\n",
            "steps.a.throttle.rate.per",
            "must be longer than zero and at most 24h",
        ),
        (
            "name: t\nsteps:\n  - { id: a, sleep: 1s, throttle: { key: k, concurrency: 1 } }\n",
            "steps.a.throttle",
            "`throttle` applies to steps that run a module",
        ),
        (
            "name: t\nsteps:\n  - { id: a, module: echo, throttle: { key: \"{{ item }}\", concurrency: 1 } }\n",
            "steps.a.throttle.key",
            "\"{{ item }}\": `item` exists only in the input and args of a for_each step",
        ),
        (
            "name: t\nsteps:\n  - { id: a, module: echo, throttle: { key: \"{{ secrets.K }}\", concurrency: 1 } }\n",
            "steps.a.throttle.key",
            "a throttle key may not read `secrets`: keys are stored and shown",
        ),
        (
            "name: t\nthrottle: { key: \"{{ steps.a.output }}\", concurrency: 1 }\nsteps:\n  - { id: a, module: echo }\n",
            "throttle.key",
            "a workflow's throttle key may read `inputs`, `run` and `workflow`, not steps (give the step its own `throttle`)",
        ),
    ];
    refused(&server, &cases).await;
    server.stop().await;
}

/// SPEC.md's keyed forms: `concurrency: { key, limit }` and `rate: { key,
/// limit, per }` on a step (one key) or a workflow, the same limits as
/// `throttle:`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_concurrency_and_rate_forms_limit_like_throttle() {
    let yaml = r#"
name: spec_form
steps:
  - id: each
    module: hostile
    for_each: [A, A, A, B]
    concurrency: { key: "{{ item }}", limit: 1 }
    input: { mode: sleep, ms: 200 }
"#;
    let server = TestServer::with_workflow("spec_form", yaml).await;
    let id = server.start_run("spec_form").await;
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let spans = spans(&server, &id).await;
    let a: Vec<&Span> = spans.iter().filter(|s| s.item.unwrap() < 3).collect();
    assert_eq!(most_at_once(&a), 1, "{spans:?}");
    let b = spans.iter().find(|s| s.item == Some(3)).unwrap();
    assert!(b.started < a.iter().map(|s| s.ended).min().unwrap(), "{spans:?}");

    let cases = [
        (
            "name: t\nsteps:\n  - { id: a, module: echo, concurrency: { key: x, limit: 1 }, rate: { key: y, limit: 1, per: 1s } }\n",
            "steps.a.rate.key",
            "a keyed `concurrency` and `rate` share one key: \"y\" is not \"x\" (use `throttle:`)",
        ),
        (
            "name: t\nsteps:\n  - { id: a, module: echo, concurrency: { key: x, limit: 0 } }\n",
            "steps.a.concurrency.limit",
            "must be 1 to 100000, not 0",
        ),
        (
            "name: t\nsteps:\n  - { id: a, module: echo, rate: { key: x, limit: 1, per: 0s } }\n",
            "steps.a.rate.per",
            "must be longer than zero and at most 24h",
        ),
        (
            "name: t\nsteps:\n  - { id: a, module: echo, concurrency: { key: x, limit: 1 }, throttle: { key: x, concurrency: 1 } }\n",
            "steps.a.concurrency",
            "give `throttle:` or the keyed `concurrency: { key, limit }` and `rate: { key, limit, per }`, not both",
        ),
        (
            "name: t\nsteps:\n  - { id: a, module: echo, concurrency: { key: \"{{ steps.zz.output }}\", limit: 1 } }\n",
            "steps.a.concurrency.key",
            "\"{{ steps.zz.output }}\" refers to unknown step \"zz\"",
        ),
        (
            "name: t\nsteps:\n  - { id: a, module: echo, concurrency: \"two\" }\n",
            "steps.a.concurrency",
            "expected a number, or { key, limit } for a keyed limit, got a string",
        ),
        (
            "name: t\nrate: { key: \"{{ steps.a.output }}\", limit: 1, per: 1s }\nsteps:\n  - { id: a, module: echo }\n",
            "rate.key",
            "a workflow's throttle key may read `inputs`, `run` and `workflow`, not steps (give the step its own `throttle`)",
        ),
    ];
    refused(&server, &cases).await;
    // A workflow's keyed rate: accepted, its runs held to it.
    let (status, body) = server
        .apply(
            "t",
            "name: t\ninputs:\n  c: { type: string }\nrate: { key: \"{{ inputs.c }}\", limit: 1, per: 1h }\nsteps:\n  - { id: a, module: echo, input: { n: 1 } }\n",
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, run) = server
            .post_json("/v1/workflows/t/runs", json!({ "input": { "c": "x" } }))
            .await;
        assert_eq!(status, 201, "{run}");
        ids.push(run["id"].as_str().unwrap().to_string());
    }
    assert_eq!(server.wait_run(&ids[0]).await["status"], "completed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, second) = server.get(&format!("/v1/runs/{}", ids[1])).await;
    assert_eq!(second["steps"][0]["reason"], "throttled", "{second}");
    server.stop().await;
}
