//! Offline replay of run bundles: a run exported from a real server on one
//! data directory replays in a fresh `sandstep replay` process with another
//! and no server, each recorded attempt with its verdict.

use serde_json::{json, Value};

use crate::support::server::*;
use crate::support::*;

/// `sandstep runs export RUN -o FILE` against `server`; the bundle's path.
pub async fn export(server: &TestServer, run_id: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let file = dir.join(format!("{run_id}.zip"));
    let (url, run_id, path) = (server.url.clone(), run_id.to_string(), file.clone());
    let out = tokio::task::spawn_blocking(move || {
        process::command()
            .args(["runs", "export", &run_id, "-o"])
            .arg(&path)
            .env("SANDSTEP_URL", &url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    file
}

/// `sandstep replay FILE ARGS...` in a fresh process on an empty data
/// directory of its own: its exit code, stdout and stderr.
pub async fn replay(bundle: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let elsewhere = tempfile::tempdir().unwrap();
    let mut command = process::command();
    command
        .arg("--data-dir")
        .arg(elsewhere.path())
        .arg("replay")
        .arg(bundle)
        .args(args);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        std::fs::read_dir(elsewhere.path()).unwrap().next().is_none(),
        "replay needs no data directory and writes none"
    );
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// Starts a run of `workflow` with `input`, waits for it to complete, and
/// exports it into `dir`; the run id and the bundle's path.
async fn completed_bundle(
    server: &TestServer,
    workflow: &str,
    input: Value,
    dir: &std::path::Path,
) -> (String, std::path::PathBuf) {
    let (status, run) = server
        .post_json(
            &format!("/v1/workflows/{workflow}/runs?wait=30s"),
            json!({ "input": input }),
        )
        .await;
    assert_eq!((status, run["status"].clone()), (201, json!("completed")), "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let bundle = export(server, &id, dir).await;
    (id, bundle)
}

pub fn verdicts(report: &Value) -> Vec<(String, Value, u64, String)> {
    report["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["step"].as_str().unwrap().to_string(),
                a["item"].clone(),
                a["attempt"].as_u64().unwrap(),
                a["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const REPRO: &str = r#"
name: repro
steps:
  - id: greet
    module: hello
    input: { name: replay }
  - id: each
    module: hostile
    for_each: [1000, 2000, 3000]
    input: { mode: spin, n: "{{ item }}" }
  - id: flaky
    module: hostile
    input: { mode: flaky, succeed_at: 3 }
    retry: { max_attempts: 3, initial_interval: 10ms, backoff: 1.0, max_interval: 10ms, jitter: 0 }
  - id: burn
    module: hostile
    input: { mode: loop }
    limits: { fuel: 2000000 }
    on_failure: continue
  - id: clock
    module: hostile
    needs: [greet]
    grants: { env: { REGION: "{{ steps.greet.output.greeting }}" } }
    input: { mode: snoop }
  - id: call
    module: hostile
    grants: { http: ["127.0.0.1:9"] }
    input: { mode: ok }
"#;

/// Every kind of verdict from one exported YAML run: attempts that
/// reproduce (retries and for_each items with their context, a
/// fuel_exhausted one), one whose output reads the clock (different
/// output, with a JSON Patch), one granted http (not replayable); then
/// `--step` with its logs and `--input` for a changed input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_run_replays_offline_in_another_process_with_a_verdict_per_attempt() {
    let server = TestServer::start_with(|c| c.grants.allow_http("127.0.0.1:9").unwrap()).await;
    server.push_test_modules().await;
    let (status, body) = server.apply("repro", REPRO).await;
    assert_eq!(status, 201, "{body}");
    let dir = tempfile::tempdir().unwrap();
    let (id, bundle) = completed_bundle(&server, "repro", json!({}), dir.path()).await;
    let id = id.as_str();
    server.stop().await;

    let (code, stdout, stderr) = replay(&bundle, &["--json"]).await;
    assert_eq!(code, 1, "the clock step differs: {stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    assert_eq!(report["run"], id);
    let mut got = verdicts(&report);
    got.sort_by(|a, b| (&a.0, a.1.as_u64(), a.2).cmp(&(&b.0, b.1.as_u64(), b.2)));
    let want: Vec<(String, Value, u64, String)> = [
        ("burn", Value::Null, 1, "same"),
        ("call", Value::Null, 1, "not_replayable"),
        ("clock", Value::Null, 1, "different_output"),
        ("each", json!(0), 1, "same"),
        ("each", json!(1), 1, "same"),
        ("each", json!(2), 1, "same"),
        ("flaky", Value::Null, 1, "same"),
        ("flaky", Value::Null, 2, "same"),
        ("flaky", Value::Null, 3, "same"),
        ("greet", Value::Null, 1, "same"),
    ]
    .into_iter()
    .map(|(s, i, a, v)| (s.to_string(), i, a, v.to_string()))
    .collect();
    assert_eq!(got, want, "{report:#}");
    assert_eq!(
        (&report["same"], &report["different"], &report["not_replayable"]),
        (&json!(8), &json!(1), &json!(1))
    );
    let find = |step: &str, attempt: u64| {
        report["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["step"] == step && a["attempt"] == attempt)
            .unwrap()
            .clone()
    };
    // The fuel-exhausted attempt ends the same way after exactly its limit.
    let burn = find("burn", 1);
    assert_eq!(burn["recorded"]["error"]["kind"], "fuel_exhausted", "{burn}");
    assert_eq!(burn["replayed"], burn["recorded"]);
    assert_eq!(burn["replayed"]["fuel_consumed"], 2_000_000);
    // A retried attempt sees its own attempt number again.
    let flaky = find("flaky", 2);
    assert_eq!(flaky["replayed"]["error"]["message"], "flaky failure on attempt 2");
    assert_eq!(find("flaky", 3)["replayed"]["output"]["attempt"], 3);
    // The clock differs, and only the clock: the environment came back.
    let clock = find("clock", 1);
    let diff = clock["diff"].as_array().unwrap();
    assert_eq!(diff.len(), 1, "{clock}");
    assert_eq!(
        (&diff[0]["op"], &diff[0]["path"]),
        (&json!("replace"), &json!("/now_ms"))
    );
    assert_eq!(clock["replayed"]["output"]["env"], json!(["REGION"]), "{clock}");
    assert!(find("call", 1)["reason"].as_str().unwrap().contains("granted http"));

    // Human output: one line per attempt, then the totals.
    let (code, stdout, _) = replay(&bundle, &[]).await;
    assert_eq!(code, 1);
    assert!(stdout.contains("each[1] attempt 1: same output and fuel"), "{stdout}");
    assert!(stdout.contains("clock attempt 1: different output"), "{stdout}");
    assert!(stdout.contains("    replace /now_ms "), "{stdout}");
    assert!(
        stdout.trim_end().ends_with("8 reproduced, 1 differ, 1 not replayable"),
        "{stdout}"
    );

    // One step: its attempts only, and they reproduce.
    let (code, stdout, stderr) = replay(&bundle, &["--step", "flaky"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("flaky attempt")).count(),
        3,
        "{stdout}"
    );
    // A changed input: the last attempt's context, this input.
    let (code, stdout, stderr) = replay(
        &bundle,
        &["--step", "each", "--input", r#"{"mode":"echo","x":1}"#, "--json"],
    )
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(report["attempts"][0]["verdict"], "changed_input");
    assert_eq!(
        report["attempts"][0]["replayed"]["output"],
        json!({"mode": "echo", "x": 1})
    );
    let (code, _, stderr) = replay(&bundle, &["--step", "nope"]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains(r#"no attempt of a module step named "nope""#),
        "{stderr}"
    );
    let (code, _, stderr) = replay(&dir.path().join("missing.zip"), &[]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot open"), "{stderr}");
}

/// A code run: its code replays against its journal to the same output
/// after the same fuel, and its steps' attempts reproduce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_run_replays_its_code_against_its_journal_and_its_attempts() {
    let server = TestServer::start().await;
    server.push_test_modules().await;
    let (status, body) = server.push("flow-probe", &guests().flow_probe).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.apply("probe", crate::upgrades::PROBE).await;
    assert_eq!(status, 201, "{body}");
    let dir = tempfile::tempdir().unwrap();
    let input = json!({ "mode": "chain", "n": 2, "spin": 5000 });
    let (_, bundle) = completed_bundle(&server, "probe", input, dir.path()).await;
    server.stop().await;

    let (code, stdout, stderr) = replay(&bundle, &["--json"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let code_verdict = &report["code"][0];
    assert_eq!(code_verdict["verdict"], "same", "{report:#}");
    assert!(code_verdict["recorded_fuel"].as_u64().unwrap() > 0);
    assert_eq!(code_verdict["recorded_fuel"], code_verdict["replayed_fuel"]);
    let mut steps: Vec<String> = verdicts(&report)
        .into_iter()
        .map(|(step, _, _, verdict)| format!("{step}:{verdict}"))
        .collect();
    steps.sort();
    assert_eq!(steps, ["k-0:same", "k-1:same", "s-0:same", "s-1:same"], "{report:#}");
}

/// Twelve items for each language's example module, one guest error each
/// way it is refused, and a step that runs out of fuel.
fn languages_workflow() -> String {
    let each = [
        (
            "filter-orders",
            r#"{ orders: [{ id: A, customer: Ada, items: [{ sku: pen, qty: "{{ item + 1 }}", price: 1.5 }] }], min_total: 2 }"#,
        ),
        (
            "rank-customers",
            r#"{ orders: [{ customer: Ada, total: "{{ item }}" }, { customer: Bob, total: 4.5 }] }"#,
        ),
        ("statistics", r#"{ values: ["{{ item }}", 2, 3.5] }"#),
        ("histogram", r#"{ values: ["{{ item }}", 1, 2, 8], buckets: 2 }"#),
        (
            "invoice",
            r#"{ customers: [{ customer: Ada, total: "{{ item * 10 }}" }], tax_rate: 0.2, currency: EUR }"#,
        ),
        ("format-money", r#"{ amounts: ["{{ item * 1.25 }}"], currency: EUR }"#),
        ("checksum", r#"{ document: { n: "{{ item }}" }, algorithm: sha256 }"#),
        ("checksum-step", r#"{ document: { n: "{{ item }}" } }"#),
        ("top-words", r#"{ text: "a b b c c c {{ item }}", top: 2 }"#),
    ];
    let mut yaml = String::from("name: languages\nsteps:\n");
    for (module, input) in each {
        let id = module.replace('-', "_");
        yaml += &format!("  - id: {id}\n    module: {module}\n    for_each: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\n    input: {input}\n");
        yaml += &format!(
            "  - id: {id}_refused\n    module: {module}\n    input: {{ simulate_failure: {{ message: no, retryable: false }} }}\n    on_failure: continue\n"
        );
    }
    yaml += "  - id: burn\n    module: hostile\n    input: { mode: loop }\n    limits: { fuel: 3000000 }\n    on_failure: continue\n";
    yaml
}

/// Fuel is deterministic: 100 and more recorded attempts of the example
/// guests in six languages (and a fuel_exhausted one) replay to the same
/// output and exactly the same fuel, in another process. Go's runtime
/// seeds its maps from WASI randomness and reads the clock, so its
/// attempts replay to the same output after slightly different fuel.
#[tokio::test(flavor = "multi_thread")]
async fn attempts_in_seven_languages_replay_to_the_same_output_and_exactly_the_same_fuel() {
    let server = TestServer::start().await;
    server.push_test_modules().await;
    for (name, path) in language_guests() {
        let (status, module) = server.push(name, path).await;
        assert_eq!(status, 201, "{name}: {module}");
    }
    let (status, body) = server.apply("languages", &languages_workflow()).await;
    assert_eq!(status, 201, "{body}");
    let (status, run) = server
        .post_json("/v1/workflows/languages/runs", json!({ "input": {} }))
        .await;
    assert_eq!(status, 201, "{run}");
    let run = server.wait_run(run["id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "completed", "{run:#}");
    let id = run["id"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = export(&server, id, dir.path()).await;
    server.stop().await;

    let (code, stdout, stderr) = replay(&bundle, &["--json"]).await;
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    let (go, attempts): (Vec<&Value>, Vec<&Value>) = report["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .partition(|a| a["step"].as_str().unwrap().starts_with("invoice"));
    let differ: Vec<&&Value> = attempts.iter().filter(|a| a["verdict"] != "same").collect();
    assert!(differ.is_empty(), "{differ:#?}");
    assert!(attempts.len() >= 100, "{} attempts", attempts.len());
    for attempt in &attempts {
        assert_eq!(attempt["replayed"], attempt["recorded"], "{attempt}");
    }
    assert_eq!(go.len(), 13);
    for attempt in &go {
        let verdict = attempt["verdict"].as_str().unwrap();
        assert!(["same", "different_fuel"].contains(&verdict), "{attempt}");
        let (before, after) = (&attempt["recorded"], &attempt["replayed"]);
        assert_eq!(
            (&before["output"], &before["error"]),
            (&after["output"], &after["error"])
        );
    }
    // Exit 0 only when every replayable attempt reproduces.
    let reproduced = go.iter().all(|a| a["verdict"] == "same");
    assert_eq!(code == 0, reproduced, "{stderr}");
    let failed = |kind: &str| {
        attempts
            .iter()
            .filter(|a| a["recorded"]["error"]["kind"] == kind)
            .count()
    };
    assert_eq!((failed("guest_error"), failed("fuel_exhausted")), (8, 1));
}
