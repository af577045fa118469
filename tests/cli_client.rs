//! Client commands against a real server: `module push`, `workflow apply`,
//! `runs start|get|list|watch|cancel`; and graceful shutdown on SIGTERM.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::support::server::TestServer;
use crate::support::*;

fn client(server: &str, args: &[&str]) -> Output {
    process::command()
        .args(args)
        .env("SANDSTEP_URL", server)
        .output()
        .expect("the binary runs")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_apply_start_get_list_watch_cancel() {
    let server = TestServer::start().await;
    let url = server.url.clone();
    let hostile = guests().hostile.to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("wf.yaml");
    std::fs::write(
        &wf,
        "name: cli\ninputs:\n  ms: { type: integer, default: 10 }\nsteps:\n  - { id: nap, module: \"hostile:v1\", input: { mode: sleep, ms: \"{{ inputs.ms }}\" } }\noutput: \"{{ steps.nap.output.slept_ms }}\"\n",
    )
    .unwrap();
    let wf = wf.to_str().unwrap().to_string();
    let dir_path = dir.path().to_path_buf();

    let result = tokio::task::spawn_blocking(move || {
        let pushed = client(&url, &["module", "push", &hostile, "--name", "hostile", "--tag", "v1"]);
        assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
        assert_eq!(json(&pushed)["kind"], "step");

        let applied = client(&url, &["workflow", "apply", &wf]);
        assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
        assert_eq!(json(&applied)["version"], 1);

        let started = client(
            &url,
            &["runs", "start", "cli", "--input", r#"{"ms": 20}"#, "--wait", "10s"],
        );
        assert!(started.status.success());
        let run = json(&started);
        assert_eq!(
            (run["status"].as_str(), run["output"].as_i64()),
            (Some("completed"), Some(20))
        );
        let id = run["id"].as_str().unwrap().to_string();

        let got = client(&url, &["runs", "get", &id]);
        assert_eq!(json(&got)["steps"][0]["attempts"][0]["status"], "succeeded");
        let listed = client(&url, &["runs", "list", "--workflow", "cli", "--status", "completed"]);
        assert_eq!(json(&listed)["runs"][0]["id"], id.as_str());

        let watched = client(&url, &["runs", "watch", &id]);
        assert!(watched.status.success());
        assert_eq!(String::from_utf8_lossy(&watched.stdout), "20\n");
        let progress = String::from_utf8_lossy(&watched.stderr).to_string();
        assert!(
            progress.contains("step nap succeeded") && progress.contains("run completed"),
            "{progress}"
        );

        // A batch from a JSON-lines file: one run per line, all or nothing.
        let lines = dir_path.join("runs.jsonl");
        std::fs::write(
            &lines,
            "{\"input\": {\"ms\": 1}, \"idempotency_key\": \"b1\"}\n\n{\"input\": {\"ms\": 2}}\n",
        )
        .unwrap();
        let batch = client(&url, &["runs", "start", "cli", "--batch", lines.to_str().unwrap()]);
        assert!(batch.status.success(), "{}", String::from_utf8_lossy(&batch.stderr));
        let runs = json(&batch)["runs"].as_array().unwrap().clone();
        assert_eq!(runs.len(), 2);
        assert!(
            runs.iter().all(|r| r["created"] == true && r["id"].is_string()),
            "{runs:?}"
        );
        std::fs::write(&lines, "{\"input\": {\"ms\": 1}}\n{\"input\": {\"ms\": \"x\"}}\n").unwrap();
        let refused = client(&url, &["runs", "start", "cli", "--batch", lines.to_str().unwrap()]);
        assert_eq!(refused.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("runs[1].input.ms: input ms must be an integer"),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );
        std::fs::write(&lines, "{\"input\": {}, \"key\": 1}\n").unwrap();
        let malformed = client(&url, &["runs", "start", "cli", "--batch", lines.to_str().unwrap()]);
        assert!(
            String::from_utf8_lossy(&malformed.stderr).contains("runs.jsonl line 1: unknown field `key`"),
            "{}",
            String::from_utf8_lossy(&malformed.stderr)
        );

        // A long run, canceled from another command; watch exits 3.
        let slow = json(&client(&url, &["runs", "start", "cli", "--input", r#"{"ms": 20000}"#]));
        let slow_id = slow["id"].as_str().unwrap().to_string();
        let (watch_url, watch_id) = (url.clone(), slow_id.clone());
        let watcher = std::thread::spawn(move || client(&watch_url, &["runs", "watch", &watch_id]));
        std::thread::sleep(Duration::from_millis(300));
        let canceled = client(&url, &["runs", "cancel", &slow_id]);
        assert_eq!(json(&canceled)["status"], "canceled");
        let watched = watcher.join().unwrap();
        assert_eq!(watched.status.code(), Some(3));

        // Errors come back as the problem's detail, with a non-zero exit.
        let missing = client(&url, &["runs", "get", "no-such-run"]);
        assert_eq!(missing.status.code(), Some(2));
        assert_eq!(
            String::from_utf8_lossy(&missing.stderr),
            "error: 404 Not Found: run no-such-run\n"
        );
        let bad = client(&url, &["runs", "start", "cli", "--input", r#"{"ms": "x"}"#]);
        assert!(String::from_utf8_lossy(&bad.stderr)
            .contains("422 Unprocessable Entity: input ms must be an integer, got a string"));
    })
    .await;
    server.stop().await;
    result.unwrap();
}

/// SIGTERM: the server stops accepting, lets the running attempt finish and
/// records it, and exits; the run continues after a restart without running
/// the finished step again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_restart_continues() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let served = process::Served::start(dir.path(), &["--grace", "10s"]);
        let url = served.url.clone();
        (served, url)
    };
    let (mut served, url) = start();
    let http = reqwest::Client::new();
    let bytes = std::fs::read(&guests().hostile).unwrap();
    http.post(format!("{url}/v1/modules?name=hostile"))
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .unwrap();
    http.put(format!("{url}/v1/workflows/drain"))
        .header("content-type", "application/yaml")
        .body("name: drain\nsteps:\n  - { id: a, module: hostile, input: { mode: sleep, ms: 800 } }\n  - { id: b, module: hostile, input: { mode: context, after: \"{{ steps.a.output }}\" } }\n")
        .send()
        .await
        .unwrap();
    let run: Value = http
        .post(format!("{url}/v1/workflows/drain/runs"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = run["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // SAFETY: sending a signal to our own child process.
    unsafe { libc_kill(served.child.id() as i32, 15) };
    let status = tokio::task::block_in_place(|| served.child.wait().unwrap());
    assert!(status.success(), "the server exits cleanly on SIGTERM");
    let log = served.stderr.take().unwrap().join().unwrap().join("\n");
    assert!(log.contains("sandstep stopped"), "{log}");

    let (served, url) = start();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let run = loop {
        let run: Value = http
            .get(format!("{url}/v1/runs/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if run["status"] == "completed" {
            break run;
        }
        assert!(std::time::Instant::now() < deadline, "{run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let a = run["steps"][0]["attempts"].as_array().unwrap();
    assert_eq!(
        a.len(),
        1,
        "the attempt running at SIGTERM finished and was recorded: {run}"
    );
    assert_eq!(a[0]["status"], "succeeded");
    assert_eq!(run["steps"][1]["attempts"].as_array().unwrap().len(), 1);
    drop(served);
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}
