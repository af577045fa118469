//! Fuel budgets: a run's attempts together consume at most `budget.fuel`;
//! the run stops exactly where it runs out, with `budget_exhausted`.

use serde_json::{json, Value};

use crate::support::server::TestServer;

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
    server.stop().await;
}
