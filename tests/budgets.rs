//! Fuel budgets: a run's attempts together consume at most `budget.fuel`;
//! the run stops exactly where it runs out, with `budget_exhausted`.

use serde_json::{json, Value};

use crate::support::server::{answer, problem, TestServer};

const ITEMS: &str = r#"
name: items
steps:
  - id: each
    module: echo
    for_each: [1, 2, 3, 4, 5]
    concurrency: 1
    input: { n: "{{ item }}" }
"#;

async fn start(server: &TestServer, body: Value) -> Value {
    let (status, run) = server.post_json("/v1/workflows/items/runs", body).await;
    assert_eq!(status, 201, "{run}");
    server.wait_run(run["id"].as_str().unwrap()).await
}

fn attempt_fuel(run: &Value) -> Vec<u64> {
    run["steps"][0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["fuel_consumed"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_run_stops_exactly_where_its_fuel_budget_runs_out() {
    let server = TestServer::with_workflow("items", ITEMS).await;
    // Without a budget: what each item costs, and the sums reported.
    let free = start(&server, json!({})).await;
    assert_eq!(free["status"], "completed");
    let fuel = attempt_fuel(&free);
    let per_item = fuel[0];
    assert!(fuel.iter().all(|f| *f == per_item), "{fuel:?}");
    assert_eq!(free["fuel_consumed"], per_item * 5);
    assert_eq!(free["steps"][0]["fuel_consumed"], per_item * 5);
    assert!(free.get("budget_fuel").is_none());

    // A budget of two and a half items: two succeed, the third is stopped
    // where the budget ends.
    let budget = per_item * 5 / 2;
    let limited = ITEMS.replace("name: items\n", &format!("name: items\nbudget: {{ fuel: {budget} }}\n"));
    assert_eq!(server.apply("items", &limited).await.0, 201);
    let run = start(&server, json!({})).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(run["budget_fuel"], budget);
    assert_eq!(run["fuel_consumed"], budget, "exactly the budget: {run}");
    assert_eq!(attempt_fuel(&run), [per_item, per_item, budget - 2 * per_item]);
    let error = &run["steps"][0]["error"];
    assert_eq!(error["kind"], "budget_exhausted", "{run}");
    assert_eq!(
        error["message"],
        format!("the run's fuel budget of {budget} ran out ({budget} consumed)")
    );

    // The start request's budget wins when smaller, the definition's otherwise.
    let smaller = start(&server, json!({ "budget": { "fuel": per_item } })).await;
    assert_eq!(
        (smaller["budget_fuel"].as_u64(), smaller["fuel_consumed"].as_u64()),
        (Some(per_item), Some(per_item))
    );
    assert_eq!(smaller["steps"][0]["error"]["kind"], "budget_exhausted");
    let larger = start(&server, json!({ "budget": { "fuel": per_item * 100 } })).await;
    assert_eq!(larger["budget_fuel"], budget);

    let (status, body) = server
        .post_json("/v1/workflows/items/runs", json!({ "budget": { "fuel": 0 } }))
        .await;
    assert_eq!((status, body["field"].as_str()), (422, Some("budget.fuel")), "{body}");
    // Fuel is stored as a signed 64-bit number: 2^63 is refused, not wrapped.
    let (status, body) = server
        .post_json(
            "/v1/workflows/items/runs",
            json!({ "budget": { "fuel": 9_223_372_036_854_775_808u64 } }),
        )
        .await;
    assert_eq!((status, body["field"].as_str()), (422, Some("budget.fuel")), "{body}");
    let (status, body) = server
        .apply(
            "items",
            &ITEMS.replace("name: items\n", "name: items\nbudget: { fuel: 0 }\n"),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["location"], "budget.fuel");
    server.stop().await;
}

/// A budget enough for the whole run changes nothing.
#[tokio::test]
async fn a_sufficient_budget_lets_the_run_complete() {
    let server = TestServer::with_workflow("items", ITEMS).await;
    let run = start(&server, json!({ "budget": { "fuel": 1_000_000_000 } })).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["budget_fuel"], 1_000_000_000);
    // Whole written as a float, with 16 digits: parsed exactly, not one
    // unit of the last place off (schemathesis sent this one).
    let run = start(&server, json!({ "budget": { "fuel": 1_910_123_148_523_505.0 } })).await;
    assert_eq!(run["budget_fuel"], 1_910_123_148_523_505u64, "{run}");
    server.stop().await;
}

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789ab";

/// Starts a run of `items` with `token` and waits for its end; or the
/// refusal's status and problem.
async fn start_as(server: &TestServer, token: &str, body: Value) -> Result<Value, (u16, Value)> {
    let request = server
        .http
        .post(format!("{}/v1/workflows/items/runs", server.url))
        .bearer_auth(token)
        .json(&body);
    let (status, run) = answer(request).await;
    if status != 201 {
        return Err((status, run));
    }
    Ok(server.wait_run(run["id"].as_str().unwrap()).await)
}

/// A token's daily fuel budget: runs started with it are capped at what is
/// left, starts are refused with 429 once it is spent, other tokens go on,
/// and the usage equals the attempts' fuel.
#[tokio::test]
async fn a_tokens_daily_budget_refuses_starts_once_spent() {
    // Measure one item's fuel on a server without tokens.
    let probe = TestServer::with_workflow("items", ITEMS).await;
    let per_item = attempt_fuel(&start(&probe, json!({})).await)[0];
    probe.stop().await;

    let tokens = format!("# name:token:fuel_per_day\nalice:{ALICE}:{}\nbob:{BOB}\n", per_item * 7);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tokens"), &tokens).unwrap();
    let loaded = sandstep::server::auth::load_tokens(None, Some(&dir.path().join("tokens"))).unwrap();
    assert_eq!(
        loaded
            .iter()
            .map(|t| (t.name.as_str(), t.fuel_per_day))
            .collect::<Vec<_>>(),
        [("alice", Some(per_item * 7)), ("bob", None)]
    );
    assert!(!format!("{loaded:?}").contains(ALICE), "tokens are not printed");
    let server = TestServer::start_with(|c| c.tokens = loaded).await;
    server.push_test_modules().await;
    assert_eq!(server.apply("items", ITEMS).await.0, 201);

    // 5 items of 7: completes; the next run is capped at the 2 left.
    let first = start_as(&server, ALICE, json!({})).await.unwrap();
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["budget_fuel"], per_item * 7);
    let second = start_as(&server, ALICE, json!({})).await.unwrap();
    assert_eq!(second["status"], "failed", "{second}");
    assert_eq!(second["budget_fuel"], per_item * 2);
    assert_eq!(second["fuel_consumed"], per_item * 2);
    assert_eq!(second["steps"][0]["error"]["kind"], "budget_exhausted");

    // Spent: 429 budget-exhausted, for single and batch starts and re-runs.
    let response = server
        .http
        .post(format!("{}/v1/workflows/items/runs", server.url))
        .bearer_auth(ALICE)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry_after), "{retry_after}");
    let (status, body) = start_as(&server, ALICE, json!({})).await.unwrap_err();
    assert_eq!((status, problem(&body)), (429, "budget-exhausted"), "{body}");
    let day = body["detail"].as_str().unwrap().split(" on ").nth(1).unwrap()[..10].to_string();
    assert_eq!(
        body["detail"],
        format!(
            "token alice has consumed its daily fuel budget ({} of {} on {day} UTC); starts are refused until 00:00 UTC",
            per_item * 7,
            per_item * 7
        )
    );
    let batch = server
        .http
        .post(format!("{}/v1/workflows/items/runs/batch", server.url))
        .bearer_auth(ALICE)
        .json(&json!({ "runs": [{}] }));
    assert_eq!(answer(batch).await.0, 429);
    let rerun = server
        .http
        .post(format!(
            "{}/v1/runs/{}/rerun",
            server.url,
            first["id"].as_str().unwrap()
        ))
        .bearer_auth(ALICE)
        .json(&json!({ "from": "each" }));
    assert_eq!(answer(rerun).await.0, 429);

    // Bob is unaffected, and has no cap.
    let bobs = start_as(&server, BOB, json!({})).await.unwrap();
    assert_eq!(bobs["status"], "completed");
    assert!(bobs.get("budget_fuel").is_none(), "{bobs}");

    // Usage: per token and workflow, equal to the attempts' fuel.
    let (status, usage) = server.get(&format!("/v1/usage?day={day}")).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(
        usage,
        json!({ "usage": [
            { "token": "alice", "workflow": "items", "day": day, "fuel": per_item * 7, "runs": 2 },
            { "token": "bob", "workflow": "items", "day": day, "fuel": per_item * 5, "runs": 1 },
        ]})
    );
    let sum: u64 = [&first, &second, &bobs]
        .iter()
        .map(|r| r["fuel_consumed"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, per_item * 12);
    assert_eq!(server.get("/v1/usage").await.1, usage, "today by default");
    assert_eq!(server.get("/v1/usage?day=2001-01-01").await.1, json!({ "usage": [] }));
    let (status, body) = server.get("/v1/usage?day=yesterday").await;
    assert_eq!((status, body["field"].as_str()), (422, Some("day")), "{body}");
    assert_eq!(
        body["detail"],
        "day must be a date as YYYY-MM-DD (UTC), not \"yesterday\""
    );
    server.stop().await;
}

/// Bad tokens file lines are refused naming the line.
#[test]
fn tokens_file_lines_are_checked() {
    use sandstep::server::auth::load_tokens;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    for (text, error) in [
        (
            "a:short",
            "line 1: API tokens must be at least 16 characters (this one has 5)",
        ),
        (
            "\na:0123456789abcdef:lots",
            "line 2: fuel_per_day must be a whole number of at least 1, not \"lots\"",
        ),
        (
            "a:0123456789abcdef:0",
            "line 1: fuel_per_day must be a whole number of at least 1, not \"0\"",
        ),
        (
            "a b:0123456789abcdef",
            "line 1: token name \"a b\" must be 1 to 64 letters, digits, '-', '_' or '.'",
        ),
        (
            "a:0123456789abcdef\na:0123456789abcdeg",
            "two API tokens are named \"a\": names must be unique",
        ),
        (
            "a:b:c:d",
            "line 1: expected `token`, `name:token` or `name:token:fuel_per_day`",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let found = load_tokens(None, Some(&file)).unwrap_err();
        assert!(found.ends_with(error), "{text:?}: {found}");
    }
    std::fs::write(&file, "0123456789abcdef\nci:0123456789abcdeg:1_000_000\n").unwrap();
    let tokens = load_tokens(Some("env:0123456789abcdeh"), Some(&file)).unwrap();
    let named: Vec<_> = tokens.iter().map(|t| (t.name.clone(), t.fuel_per_day)).collect();
    assert_eq!(named[0], ("env".to_string(), None));
    assert!(named[1].0.starts_with("token-") && named[1].0.len() == 14, "{named:?}");
    assert_eq!(named[2], ("ci".to_string(), Some(1_000_000)));
}
