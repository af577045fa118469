//! Sub-workflows, black-box on a real server: a step runs another workflow
//! as a child run linked both ways; its output, failure and cancellation
//! carry over; for_each starts one child per item; nesting is capped and a
//! cycle fails with a clear error.

use serde_json::{json, Value};

use crate::support::server::*;
use crate::waits::start;

const CHILD: &str = r#"
name: child
inputs:
  n: { type: integer }
  mode: { type: string, default: echo }
steps:
  - id: work
    module: hostile
    input: { mode: "{{ inputs.mode }}", n: "{{ inputs.n }}" }
output: "{{ steps.work.output.n }}"
"#;

async fn server_with(workflows: &[(&str, &str)]) -> TestServer {
    let server = TestServer::start().await;
    server.push_test_modules().await;
    for (name, yaml) in workflows {
        let (status, body) = server.apply(name, yaml).await;
        assert_eq!(status, 201, "{name}: {body}");
    }
    server
}

async fn run(server: &TestServer, workflow: &str, input: Value) -> Value {
    let id = start(server, workflow, input).await;
    server.wait_run(&id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_run_gives_its_output_and_is_linked_both_ways() {
    let parent = r#"
name: parent
steps:
  - id: sub
    workflow: child
    input: { n: "{{ inputs.n }}" }
  - id: after
    module: echo
    input: { got: "{{ steps.sub.output }}" }
output: "{{ steps.after.output.got }}"
"#;
    let server = server_with(&[("child", CHILD), ("parent", parent)]).await;
    let done = run(&server, "parent", json!({ "n": 7 })).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"], 7);
    let children = done["steps"][0]["child_run_ids"].as_array().unwrap().clone();
    assert_eq!(children.len(), 1, "{done}");
    let (_, child) = server.get(&format!("/v1/runs/{}", children[0].as_str().unwrap())).await;
    assert_eq!(child["workflow"], "child");
    assert_eq!(child["status"], "completed");
    assert_eq!(child["parent_run_id"], done["id"]);
    assert_eq!(child["parent_step_id"], "sub");
    assert_eq!(child["input"], json!({ "n": 7, "mode": "echo" }));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_each_starts_one_child_per_item_in_order() {
    let parent = r#"
name: fan
steps:
  - id: each
    workflow: child
    for_each: [3, 1, 4, 1, 5]
    concurrency: 2
    input: { n: "{{ item }}" }
output: "{{ steps.each.output }}"
"#;
    let server = server_with(&[("child", CHILD), ("fan", parent)]).await;
    let done = run(&server, "fan", json!({})).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"], json!([3, 1, 4, 1, 5]));
    let children = done["steps"][0]["child_run_ids"].as_array().unwrap();
    assert_eq!(children.len(), 5);
    let (_, listed) = server.get("/v1/runs?workflow=child").await;
    assert_eq!(listed["runs"].as_array().unwrap().len(), 5, "{listed}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_child_fails_the_step_with_child_failed() {
    let parent = r#"
name: fragile
steps:
  - id: sub
    workflow: child
    input: { n: 1, mode: error }
"#;
    let server = server_with(&[("child", CHILD), ("fragile", parent)]).await;
    let done = run(&server, "fragile", json!({})).await;
    assert_eq!(done["status"], "failed", "{done}");
    let error = &done["steps"][0]["error"];
    assert_eq!(error["kind"], "child_failed", "{done}");
    let child = done["steps"][0]["child_run_ids"][0].as_str().unwrap();
    let message = error["message"].as_str().unwrap();
    assert!(message.starts_with(&format!("child run {child} failed: ")), "{message}");
    assert!(
        message.ends_with("step work failed: guest_error: the guest says no"),
        "{message}"
    );
    // A child that cannot start (its input is wrong) fails the step too.
    let bad = "name: bad_input\nsteps:\n  - id: sub\n    workflow: child\n    input: { n: nope }\n";
    assert_eq!(server.apply("bad_input", bad).await.0, 201);
    let done = run(&server, "bad_input", json!({})).await;
    assert_eq!(done["steps"][0]["error"]["kind"], "child_failed", "{done}");
    assert_eq!(
        done["steps"][0]["error"]["message"], "child run of workflow child: input n must be an integer, got a string",
        "{done}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_the_parent_cancels_its_children() {
    let waiting = "name: waiting\nsteps:\n  - id: w\n    wait: { event: never }\n";
    let parent = r#"
name: boss
steps:
  - id: subs
    workflow: waiting
    for_each: [1, 2]
"#;
    let server = server_with(&[("waiting", waiting), ("boss", parent)]).await;
    let id = start(&server, "boss", json!({})).await;
    let (_, children) = {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (_, listed) = server.get("/v1/runs?workflow=waiting&status=paused").await;
            if listed["runs"].as_array().unwrap().len() == 2 {
                break (0, listed);
            }
            assert!(std::time::Instant::now() < deadline, "{listed}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let (status, _) = server.post_json(&format!("/v1/runs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 202);
    let parent = server.wait_run(&id).await;
    assert_eq!(parent["status"], "canceled", "{parent}");
    for child in children["runs"].as_array().unwrap() {
        let child = server.wait_run(child["id"].as_str().unwrap()).await;
        assert_eq!(child["status"], "canceled", "{child}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_is_capped_and_a_cycle_fails_clearly() {
    // w0 runs w1 runs ... w9: w9 is 9 levels below the root, one too many.
    let leaf =
        "name: w9\nsteps:\n  - id: s\n    module: echo\n    input: { deep: true }\noutput: \"{{ steps.s.output }}\"\n";
    let server = server_with(&[("w9", leaf)]).await;
    for level in (0..9).rev() {
        let yaml = format!(
            "name: w{level}\nsteps:\n  - id: s\n    workflow: w{}\noutput: \"{{{{ steps.s.output }}}}\"\n",
            level + 1
        );
        assert_eq!(server.apply(&format!("w{level}"), &yaml).await.0, 201);
    }
    let done = run(&server, "w1", json!({})).await;
    assert_eq!(done["status"], "completed", "8 levels below w1 are allowed: {done}");
    assert_eq!(done["output"], json!({ "deep": true }));
    let done = run(&server, "w0", json!({})).await;
    assert_eq!(done["status"], "failed", "{done}");
    let (_, deepest) = server.get("/v1/runs?workflow=w8&limit=1").await;
    let deepest = server.wait_run(deepest["runs"][0]["id"].as_str().unwrap()).await;
    assert_eq!(deepest["steps"][0]["error"]["kind"], "child_failed");
    assert_eq!(
        deepest["steps"][0]["error"]["message"],
        "sub-workflows nest at most 8 levels below the root run"
    );

    // ping runs pong, and pong (version 2) runs ping again.
    let pong_v1 = "name: pong\nsteps:\n  - id: s\n    module: echo\n";
    assert_eq!(server.apply("pong", pong_v1).await.0, 201);
    let ping = "name: ping\nsteps:\n  - id: s\n    workflow: pong\n";
    assert_eq!(server.apply("ping", ping).await.0, 201);
    let pong_v2 = "name: pong\nsteps:\n  - id: back\n    workflow: ping\n";
    assert_eq!(server.apply("pong", pong_v2).await.0, 201);
    let done = run(&server, "ping", json!({})).await;
    assert_eq!(done["status"], "failed", "{done}");
    let (_, pong) = server.get("/v1/runs?workflow=pong&limit=1").await;
    let pong = server.wait_run(pong["runs"][0]["id"].as_str().unwrap()).await;
    assert_eq!(
        pong["steps"][0]["error"]["message"], "workflow cycle: ping → pong → ping",
        "{pong}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_workflow_definitions_are_checked() {
    let server = server_with(&[("child", CHILD)]).await;
    for (step, location, message) in [
        (
            "workflow: nowhere",
            "steps.s.workflow",
            "no workflow named \"nowhere\" on this server",
        ),
        (
            "workflow: child\n    version: 9",
            "steps.s.workflow",
            "workflow child has no version 9 (its latest is 1)",
        ),
        (
            "workflow: child\n    version: 0",
            "steps.s.version",
            "versions start at 1",
        ),
        (
            "module: echo\n    version: 1",
            "steps.s.version",
            "applies to `workflow` steps only",
        ),
        (
            "workflow: child\n    args: [x]",
            "steps.s.args",
            "cannot be combined with `workflow`",
        ),
        ("workflow: child\n    module: echo", "steps.s", "not several"),
    ] {
        let yaml = format!("name: p\nsteps:\n  - id: s\n    {step}\n");
        let (status, body) = server.apply("p", &yaml).await;
        assert_eq!(status, 422, "{step}: {body}");
        let errors = body["errors"].as_array().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e["location"] == location && e["message"].as_str().unwrap().contains(message)),
            "{step}: {body}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_past_its_deadline_fails_and_cancels_its_child() {
    let waiting = "name: waiting\nsteps:\n  - id: w\n    wait: { event: never }\n";
    let parent = "name: hurried\ntimeout: 600ms\nsteps:\n  - id: sub\n    workflow: waiting\n";
    let server = server_with(&[("waiting", waiting), ("hurried", parent)]).await;
    let done = run(&server, "hurried", json!({})).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"], "the run timed out after 600ms");
    let child = done["steps"][0]["child_run_ids"][0].as_str().unwrap();
    let child = server.wait_run(child).await;
    assert_eq!(child["status"], "canceled", "{child}");
    server.stop().await;
}
