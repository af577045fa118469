//! The step result cache through a real server: hits and misses by input,
//! module and limits, TTL, for_each items, refusal with effectful grants,
//! clearing (API and CLI) and metrics.

use serde_json::{json, Value};

use crate::support::guests;
use crate::support::server::{answer, TestServer};

async fn run(server: &TestServer, workflow: &str, input: Value) -> Value {
    let (status, run) = server
        .post_json(&format!("/v1/workflows/{workflow}/runs"), json!({ "input": input }))
        .await;
    assert_eq!(status, 201, "{run}");
    server.wait_run(run["id"].as_str().unwrap()).await
}

/// A run of `cached` with input `{"x": x}`.
async fn echo(server: &TestServer, x: Value) -> Value {
    run(server, "cached", json!({ "x": x })).await
}

fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()
}

const ECHO: &str = r#"
name: cached
inputs:
  x: { type: any }
steps:
  - id: e
    module: m
    cache: true
    input: { x: "{{ inputs.x }}" }
output: "{{ steps.e.output }}"
"#;

#[tokio::test]
async fn a_hit_reuses_the_output_and_runs_no_wasm_and_changes_miss() {
    let server = TestServer::start().await;
    assert_eq!(server.push("m", &guests().example("echo")).await.0, 201);
    assert_eq!(server.apply("cached", ECHO).await.0, 201);

    let first = echo(&server, json!({ "a": 1.0, "b": [1, 2] })).await;
    assert_eq!(first["status"], "completed");
    assert_eq!(step(&first, "e")["attempts"].as_array().unwrap().len(), 1);
    assert!(step(&first, "e").get("cached").is_none());

    // The same input, keys reordered and 1.0 written 1: a hit.
    let second = echo(&server, json!({ "b": [1, 2], "a": 1 })).await;
    let e = step(&second, "e");
    assert_eq!(second["status"], "completed", "{second}");
    assert_eq!(second["output"], json!({ "x": { "a": 1.0, "b": [1, 2] } }));
    assert_eq!(
        (e["cached"].as_bool(), e["cached_from"].as_str()),
        (Some(true), first["id"].as_str()),
        "{e}"
    );
    assert!(e["attempts"].as_array().unwrap().is_empty(), "no attempt ran: {e}");
    let events = server
        .request(
            reqwest::Method::GET,
            &format!("/v1/runs/{}/events", second["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(events.contains("event: step.cached"), "{events}");
    assert!(!events.contains("event: step.started"), "{events}");

    // A changed input misses.
    let other = echo(&server, json!({ "a": 2 })).await;
    assert_eq!(step(&other, "e")["attempts"].as_array().unwrap().len(), 1);

    // A changed module (the name now holds another binary) misses.
    assert_eq!(server.push("m", &guests().example("hello")).await.0, 201);
    let moved = echo(&server, json!({ "a": 1 })).await;
    assert_eq!(step(&moved, "e")["attempts"].as_array().unwrap().len(), 1, "{moved}");

    // Changed limits miss.
    let limited = ECHO.replace("cache: true", "cache: true\n    limits: { fuel: 1000000000 }");
    assert_eq!(server.push("m", &guests().example("echo")).await.0, 201);
    assert_eq!(server.apply("cached", &limited).await.0, 201);
    let fuel = echo(&server, json!({ "a": 1 })).await;
    assert_eq!(step(&fuel, "e")["attempts"].as_array().unwrap().len(), 1, "{fuel}");
    let again = echo(&server, json!({ "a": 1 })).await;
    assert_eq!(step(&again, "e")["cached_from"], fuel["id"]);

    let metrics = server.metrics().await;
    assert!(metrics.contains("sandstep_cache_hits_total 2"), "{metrics}");
    assert!(metrics.contains("sandstep_cache_misses_total 4"), "{metrics}");
    server.stop().await;
}

#[tokio::test]
async fn entries_expire_after_their_ttl_and_can_be_cleared() {
    let server = TestServer::start().await;
    assert_eq!(server.push("m", &guests().example("echo")).await.0, 201);
    let ttl = ECHO.replace("cache: true", "cache: { ttl: 1s }");
    assert_eq!(server.apply("cached", &ttl).await.0, 201);
    echo(&server, json!(1)).await;
    let hit = echo(&server, json!(1)).await;
    assert_eq!(step(&hit, "e")["cached"], true);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let expired = echo(&server, json!(1)).await;
    assert!(step(&expired, "e").get("cached").is_none(), "{expired}");

    let (status, body) = answer(server.request(reqwest::Method::DELETE, "/v1/cache?module=other")).await;
    assert_eq!((status, body), (200, json!({ "deleted": 0 })));
    let (status, body) = answer(server.request(reqwest::Method::DELETE, "/v1/cache?module=m")).await;
    assert_eq!((status, body), (200, json!({ "deleted": 1 })));
    let cleared = echo(&server, json!(1)).await;
    assert!(step(&cleared, "e").get("cached").is_none(), "{cleared}");
    let (_, body) = answer(server.request(reqwest::Method::DELETE, "/v1/cache")).await;
    assert_eq!(body, json!({ "deleted": 1 }));
    server.stop().await;
}

#[tokio::test]
async fn for_each_items_are_cached_one_by_one() {
    let server = TestServer::start().await;
    assert_eq!(server.push("m", &guests().example("echo")).await.0, 201);
    let yaml = r#"
name: items
inputs:
  list: { type: array }
steps:
  - id: each
    module: m
    cache: true
    for_each: "{{ inputs.list }}"
    input: { n: "{{ item }}" }
output: "{{ steps.each.output }}"
"#;
    assert_eq!(server.apply("items", yaml).await.0, 201);
    let first = run(&server, "items", json!({ "list": [1, 2, 3] })).await;
    assert_eq!(first["status"], "completed");
    let second = run(&server, "items", json!({ "list": [3, 1, 4, 2] })).await;
    assert_eq!(
        second["output"],
        json!([{ "n": 3 }, { "n": 1 }, { "n": 4 }, { "n": 2 }])
    );
    let each = step(&second, "each");
    assert_eq!(each["cached_items"], 3, "{each}");
    assert!(each.get("cached").is_none(), "one item ran: {each}");
    let ran: Vec<&Value> = each["attempts"].as_array().unwrap().iter().collect();
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0]["item"], 2, "only the new item ran");
    let third = run(&server, "items", json!({ "list": [4, 3] })).await;
    assert_eq!(step(&third, "each")["cached"], true);
    server.stop().await;
}

#[tokio::test]
async fn effectful_grants_refuse_cache_unless_said_unsafe() {
    // Port 9 is never contacted: the definitions are only validated.
    let server = TestServer::start_with(|c| c.grants.allow_http("127.0.0.1:9").unwrap()).await;
    assert_eq!(server.push("m", &guests().example("echo")).await.0, 201);
    let yaml = r#"
name: effects
defaults:
  grants: { http: ["127.0.0.1:9"] }
steps:
  - { id: call, module: m, cache: true }
"#;
    let (status, body) = server.apply("effects", yaml).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["location"], "steps.call.cache");
    assert_eq!(
        body["errors"][0]["message"],
        "`cache` is refused for a step granted http (defaults.grants.http): a cached output would skip its effects; say `cache: { unsafe_effects: true }` if that is intended"
    );
    let unsafe_ok = yaml.replace("cache: true", "cache: { unsafe_effects: true }");
    assert_eq!(server.apply("effects", &unsafe_ok).await.0, 201);
    let (status, body) = server
        .apply(
            "sleepy",
            "name: sleepy\nsteps:\n  - { id: s, sleep: 1s, cache: true }\n",
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body["errors"][0]["message"],
        "`cache` applies to steps that run a module"
    );
    server.stop().await;
}

/// `sandstep cache clear` on the local data directory (no server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_clears_the_local_cache() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    assert_eq!(server.push("m", &guests().example("echo")).await.0, 201);
    assert_eq!(server.apply("cached", ECHO).await.0, 201);
    echo(&server, json!(1)).await;
    echo(&server, json!(2)).await;
    server.stop().await;
    let path = dir.path().to_path_buf();
    let out =
        tokio::task::spawn_blocking(move || crate::support::sandstep(&path, &["cache", "clear", "--module", "m"]))
            .await
            .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer, json!({ "deleted": 2 }));
}

/// A server holds the entries it uses in memory: `sandstep cache clear` on
/// its data directory without `SANDSTEP_URL` refuses, naming the server,
/// and deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_to_clear_a_served_directory() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    assert_eq!(server.push("m", &guests().example("echo")).await.0, 201);
    assert_eq!(server.apply("cached", ECHO).await.0, 201);
    echo(&server, json!(1)).await;
    let path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || crate::support::sandstep(&path, &["cache", "clear"]))
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let listen = server.url.trim_start_matches("http://");
    assert!(
        stderr.contains("a server is serving this data directory") && stderr.contains(listen),
        "{stderr}"
    );
    let hit = echo(&server, json!(1)).await;
    assert_eq!(step(&hit, "e")["cached"], true, "{hit}");
    server.stop().await;
}
