//! Run bundles, black-box on a real server: the zip a user downloads (or
//! `sandstep runs export` writes) holds the manifest, every event as
//! stored, each module the run and its child runs used, by digest, and the
//! child runs; Python's own `zipfile` reads it.

use serde_json::{json, Value};

use crate::support::server::*;

const CHILD: &str = r#"
name: child
steps:
  - id: c
    module: echo
    input: { from: child, n: "{{ inputs.n }}" }
output: "{{ steps.c.output }}"
"#;

const PARENT: &str = r#"
name: parent
secrets: [API_KEY]
steps:
  - id: a
    module: hello
    input: { name: bundle }
  - id: kid
    needs: [a]
    workflow: child
    input: { n: 7 }
output: { kid: "{{ steps.kid.output }}" }
"#;

/// Every file in the zip at `path`, read by Python's zipfile: text files
/// as text, modules as their SHA-256 digest.
fn unzip(path: &std::path::Path) -> Value {
    let script = "import hashlib, json, sys, zipfile\n\
        z = zipfile.ZipFile(sys.argv[1])\n\
        out = {}\n\
        for n in z.namelist():\n\
        \x20   b = z.read(n)\n\
        \x20   out[n] = 'sha256:' + hashlib.sha256(b).hexdigest() if n.endswith('.wasm') else b.decode()\n\
        print(json.dumps(out))\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_holds_the_run_its_children_and_every_module_by_digest() {
    let server = TestServer::start().await;
    server.push_test_modules().await;
    for (name, yaml) in [("child", CHILD), ("parent", PARENT)] {
        let (status, body) = server.apply(name, yaml).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, run) = server
        .post_json("/v1/workflows/parent/runs?wait=20s", json!({ "input": {} }))
        .await;
    assert_eq!((status, run["status"].clone()), (201, json!("completed")), "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let child = run["steps"][1]["child_run_id"]
        .as_str()
        .or(run["steps"][1]["items"][0]["child_run_id"].as_str())
        .map(str::to_string);

    let response = server
        .request(reqwest::Method::GET, &format!("/v1/runs/{id}/bundle"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    let bytes = response.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.zip");
    std::fs::write(&path, &bytes).unwrap();
    let files = unzip(&path);

    let manifest: Value = serde_json::from_str(files["manifest.json"].as_str().unwrap()).unwrap();
    assert_eq!(manifest["format"], 1);
    assert_eq!(manifest["run"]["id"], id.as_str());
    assert_eq!(manifest["run"]["status"], "completed");
    assert_eq!(manifest["run"]["output"], run["output"]);
    assert_eq!(manifest["definition"], PARENT);
    assert_eq!(manifest["secrets"], json!(["API_KEY"]), "names, never values");
    let digest = manifest["modules"]["hello"].as_str().unwrap();
    // Each module is there, under its digest, with those very bytes.
    assert_eq!(files[format!("modules/{digest}.wasm")], digest);
    let events: Vec<Value> = files["events.jsonl"]
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(manifest["events"], events.len());
    assert_eq!(events.first().unwrap()["type"], "run.queued");
    assert_eq!(events.last().unwrap()["type"], "run.completed");
    assert!(
        events.iter().enumerate().all(|(i, e)| e["seq"] == i + 1),
        "every event, in order"
    );

    // The child run, with its own manifest, events and module.
    let children = manifest["children"].as_array().unwrap();
    assert_eq!(children.len(), 1, "{manifest}");
    let child_id = children[0].as_str().unwrap();
    if let Some(child) = &child {
        assert_eq!(child, child_id);
    }
    let child_manifest: Value =
        serde_json::from_str(files[format!("children/{child_id}/manifest.json")].as_str().unwrap()).unwrap();
    assert_eq!(child_manifest["run"]["workflow"], "child");
    assert_eq!(child_manifest["definition"], CHILD);
    let echo = child_manifest["modules"]["echo"].as_str().unwrap();
    assert_eq!(files[format!("modules/{echo}.wasm")], echo);
    assert!(files[format!("children/{child_id}/events.jsonl")]
        .as_str()
        .unwrap()
        .contains("run.completed"));
    let index: Value = serde_json::from_str(files["modules/index.json"].as_str().unwrap()).unwrap();
    assert_eq!(index["missing_modules"], json!([]));

    // The CLI writes the same bundle.
    let out = crate::replay::export(&server, &id, dir.path()).await;
    assert_eq!(unzip(&out), files);

    let (status, body) = server.get("/v1/runs/0192ffff-0000-7000-8000-000000000000/bundle").await;
    assert_eq!((status, problem(&body)), (404, "not-found"), "{body}");
}
