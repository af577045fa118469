//! Triggers, black-box on a real server: schedules start one run per tick
//! (in a time zone, catching up after a restart as `catch_up` says), posted
//! events start one run per `on_event` trigger, and a new version replaces
//! its triggers.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::server::*;
use crate::waits::send;

async fn runs_of(server: &TestServer, workflow: &str) -> Vec<Value> {
    let (_, listed) = server.get(&format!("/v1/runs?workflow={workflow}&limit=500")).await;
    let mut runs = Vec::new();
    for run in listed["runs"].as_array().unwrap() {
        runs.push(server.get(&format!("/v1/runs/{}", run["id"].as_str().unwrap())).await.1);
    }
    runs
}

fn ticks(runs: &[Value]) -> Vec<String> {
    let mut ticks: Vec<String> = runs
        .iter()
        .map(|r| r["trigger"]["tick"].as_str().unwrap_or_default().to_string())
        .collect();
    ticks.sort();
    ticks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_every_second_starts_one_run_per_tick() {
    let workflow = r#"
name: tick
triggers:
  - schedule: "* * * * * *"
    timezone: Europe/Paris
    input: { n: 1 }
steps:
  - id: s
    module: echo
    input: { n: "{{ inputs.n }}" }
output: "{{ steps.s.output.n }}"
"#;
    let server = TestServer::with_workflow("tick", workflow).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let runs = runs_of(&server, "tick").await;
    assert!((2..=5).contains(&runs.len()), "{} runs in 3.5 s", runs.len());
    let ticks = ticks(&runs);
    let mut distinct = ticks.clone();
    distinct.dedup();
    assert_eq!(distinct, ticks, "a tick ran twice");
    for run in &runs {
        assert_eq!(run["trigger"]["schedule"], "* * * * * *", "{run}");
        let tick = run["trigger"]["tick"].as_str().unwrap();
        assert!(
            tick.ends_with("+01:00") || tick.ends_with("+02:00"),
            "Paris time: {tick}"
        );
        assert_eq!(run["input"], json!({ "n": 1 }));
    }
    let done = server.wait_run(runs[0]["id"].as_str().unwrap()).await;
    assert_eq!(done["output"], 1);
    let (status, schedules) = server.get("/v1/schedules").await;
    assert_eq!(status, 200);
    let schedule = &schedules["schedules"][0];
    assert_eq!(schedule["workflow"], "tick");
    assert_eq!(schedule["schedule"], "* * * * * *");
    assert_eq!(schedule["timezone"], "Europe/Paris");
    assert_eq!(schedule["catch_up"], "latest");
    assert!(schedule["next_fire"].as_str().unwrap().len() >= 20, "{schedule}");
    assert!(schedule["last_run"].is_string(), "{schedule}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_ticks_are_caught_up_as_catch_up_says() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    server.push_test_modules().await;
    // Every two seconds, on even seconds.
    for policy in ["latest", "all", "none"] {
        let yaml = format!(
            "name: {policy}\ntriggers:\n  - schedule: \"*/2 * * * * *\"\n    catch_up: {policy}\nsteps:\n  - id: s\n    module: echo\n"
        );
        assert_eq!(server.apply(policy, &yaml).await.0, 201);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.stop().await;
    let down_from = chrono::Utc::now();
    // Down for about 9 s; back 0.2 s after an odd second, so that the
    // server is up before the next even tick.
    tokio::time::sleep(Duration::from_millis(8800)).await;
    let now = chrono::Utc::now();
    let into_second = now.timestamp_subsec_millis() as u64;
    let mut wait = (1000 - into_second + 200) % 1000;
    if (now.timestamp() + i64::from(into_second + wait >= 1000)) % 2 == 0 {
        wait += 1000;
    }
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let back = chrono::Utc::now();
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let missed_ticks = {
        let mut n = 0;
        let mut t = down_from.timestamp() + 1;
        while t < back.timestamp() {
            n += i64::from(t % 2 == 0);
            t += 1;
        }
        n as usize
    };
    assert!(missed_ticks >= 4, "{missed_ticks}");
    for (policy, expected) in [("latest", 1), ("all", missed_ticks), ("none", 0)] {
        let runs = runs_of(&server, policy).await;
        let all = ticks(&runs);
        let mut distinct = all.clone();
        distinct.dedup();
        assert_eq!(distinct, all, "{policy}: a tick ran twice");
        let in_downtime = all
            .iter()
            .filter(|t| {
                let t = chrono::DateTime::parse_from_rfc3339(t).unwrap();
                t > down_from && t < back
            })
            .count();
        assert_eq!(in_downtime, expected, "{policy}: runs for missed ticks: {all:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_posted_event_starts_one_run_per_trigger() {
    let greet = r#"
name: greet
triggers:
  - on_event: user.signup
    input: { who: "{{ event.data.name }}", via: "{{ event.topic }}" }
steps:
  - id: s
    module: echo
    input: { who: "{{ inputs.who }}" }
output: "{{ steps.s.output.who }}"
"#;
    let audit = "name: audit\ntriggers:\n  - on_event: user.signup\nsteps:\n  - id: s\n    module: echo\n    input: \"{{ inputs }}\"\noutput: \"{{ steps.s.output }}\"\n";
    let server = TestServer::with_workflow("greet", greet).await;
    assert_eq!(server.apply("audit", audit).await.0, 201);
    let (_, first) = send(&server, "user.signup", json!({ "name": "ana" }), Some("signup-1")).await;
    let (_, again) = send(&server, "user.signup", json!({ "name": "ana" }), Some("signup-1")).await;
    assert_eq!(again["id"], first["id"]);
    let (_, second) = send(&server, "user.signup", json!({ "name": "bo" }), None).await;
    let (_, other) = send(&server, "user.login", json!({ "name": "cy" }), None).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, events) = server.get("/v1/events?topic=user.signup").await;
        let started: Vec<usize> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["started"].as_array().unwrap().len())
            .collect();
        if started == [2, 2] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{events}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let greets = runs_of(&server, "greet").await;
    assert_eq!(greets.len(), 2);
    let mut outputs = Vec::new();
    for run in &greets {
        let done = server.wait_run(run["id"].as_str().unwrap()).await;
        assert_eq!(done["input"]["via"], "user.signup");
        outputs.push((
            done["trigger"]["event"].as_str().unwrap().to_string(),
            done["output"].to_string(),
        ));
    }
    outputs.sort();
    let mut expected = vec![
        (first["id"].as_str().unwrap().to_string(), json!("ana").to_string()),
        (second["id"].as_str().unwrap().to_string(), json!("bo").to_string()),
    ];
    expected.sort();
    assert_eq!(outputs, expected);
    let audits = runs_of(&server, "audit").await;
    assert_eq!(audits.len(), 2);
    let inputs: Vec<&Value> = audits.iter().map(|r| &r["input"]).collect();
    assert!(inputs.contains(&&json!({ "name": "bo" })), "{inputs:?}");
    let (_, events) = server.get("/v1/events?topic=user.login").await;
    assert_eq!(events["events"][0]["id"], other["id"]);
    assert_eq!(events["events"][0]["started"], json!([]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_replaces_the_triggers() {
    let v1 = "name: hooked\ntriggers:\n  - on_event: ping\nsteps:\n  - id: s\n    module: echo\n";
    let server = TestServer::with_workflow("hooked", v1).await;
    let v2 = "name: hooked\nsteps:\n  - id: s\n    module: echo\n    input: { v: 2 }\n";
    assert_eq!(server.apply("hooked", v2).await.0, 201);
    let (_, posted) = send(&server, "ping", json!({}), None).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, events) = server.get("/v1/events?topic=ping").await;
    assert_eq!(events["events"][0]["id"], posted["id"]);
    assert_eq!(events["events"][0]["started"], json!([]));
    assert!(runs_of(&server, "hooked").await.is_empty());
    let (_, schedules) = server.get("/v1/schedules").await;
    assert_eq!(schedules["schedules"], json!([]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_triggers_are_refused_with_their_location() {
    let server = TestServer::start().await;
    server.push_test_modules().await;
    for (trigger, location, message) in [
        (
            "schedule: \"61 * * * *\"",
            "triggers[0].schedule",
            "invalid cron expression",
        ),
        ("schedule: \"* * *\"", "triggers[0].schedule", "has 3"),
        ("schedule: \"0 0 * * * * 2030\"", "triggers[0].schedule", "has 7"),
        (
            "schedule: \"0 9 * * *\"\n    timezone: Mars/Olympus",
            "triggers[0].timezone",
            "unknown time zone \"Mars/Olympus\"",
        ),
        (
            "schedule: \"0 9 * * *\"\n    input: { x: \"{{ event.data }}\" }",
            "triggers[0].input",
            "not a template",
        ),
        (
            "schedule: \"0 9 * * *\"\n    catch_up: sometimes",
            "triggers[0].catch_up",
            "unknown variant",
        ),
        (
            "on_event: a\n    catch_up: all",
            "triggers[0].catch_up",
            "applies to `schedule` triggers only",
        ),
        ("on_event: \"a b\"", "triggers[0].on_event", "cannot contain"),
        (
            "on_event: a\n    input: { x: \"{{ event.other }}\" }",
            "triggers[0].input",
            "event has only",
        ),
        ("on_event: a\n    schedule: \"0 9 * * *\"", "triggers[0]", "not several"),
        ("timezone: UTC", "triggers[0]", "needs `schedule`"),
    ] {
        let yaml = format!("name: t\ntriggers:\n  - {trigger}\nsteps:\n  - id: s\n    module: echo\n");
        let (status, body) = server.apply("t", &yaml).await;
        assert_eq!(status, 422, "{trigger}: {body}");
        let errors = body["errors"].as_array().unwrap();
        assert!(
            errors
                .iter()
                .any(|e| e["location"] == location && e["message"].as_str().unwrap().contains(message)),
            "{trigger}: {body}"
        );
    }
    server.stop().await;
}
