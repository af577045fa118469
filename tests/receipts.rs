//! Hash-chained history and signed receipts, black-box on a real server:
//! the stored chain checks, a receipt's DSSE envelope and Ed25519
//! signature check with securesystemslib (a tool nobody here wrote), the
//! statement has the in-toto Statement v1 layout, `sandstep verify` checks
//! a receipt against its bundle, and editing one stored event is named.

use serde_json::{json, Value};

use crate::replay::export;
use crate::support::server::*;
use crate::support::*;

const FLOW: &str = r#"
name: proved
steps:
  - id: a
    module: hello
    input: { name: receipt }
  - id: b
    needs: [a]
    module: echo
    input: { said: "{{ steps.a.output.greeting }}" }
output: "{{ steps.b.output }}"
"#;

/// Runs `sandstep ARGS` against `server` (SANDSTEP_URL set): exit code
/// and stdout with stderr.
async fn cli(server: &TestServer, args: &[&str]) -> (i32, String) {
    let mut command = process::command();
    command.args(args).env("SANDSTEP_URL", &server.url);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

/// securesystemslib's own DSSE and Ed25519 code checks the envelope with
/// the key `GET /v1/keys` lists; prints the payload it accepted.
fn securesystemslib_verify(receipt: &std::path::Path, keyid: &str, public_hex: &str) -> Value {
    let python = crate::support::python("tests/receipts/requirements.txt");
    let script = "import json, sys\n\
        from securesystemslib.dsse import Envelope\n\
        from securesystemslib.signer import SSlibKey\n\
        envelope = Envelope.from_dict(json.load(open(sys.argv[1])))\n\
        key = SSlibKey(sys.argv[2], 'ed25519', 'ed25519', {'public': sys.argv[3]})\n\
        accepted = envelope.verify([key], 1)\n\
        assert list(accepted) == [sys.argv[2]], accepted\n\
        print(envelope.pae().decode()[:6] + ' ' + envelope.payload.decode())\n";
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .arg(receipt)
        .args([keyid, public_hex])
        .output()
        .unwrap();
    assert!(out.status.success(), "securesystemslib refused: {}", text(&out.stderr));
    let printed = text(&out.stdout);
    let (pae, payload) = printed.trim().split_once(' ').unwrap();
    assert_eq!(pae, "DSSEv1");
    serde_json::from_str(payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_is_signed_checks_with_securesystemslib_and_a_tampered_event_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    server.push_test_modules().await;
    let (status, body) = server.apply("proved", FLOW).await;
    assert_eq!(status, 201, "{body}");
    let (status, run) = server
        .post_json("/v1/workflows/proved/runs?wait=20s", json!({ "input": { "n": 1 } }))
        .await;
    assert_eq!((status, run["status"].clone()), (201, json!("completed")), "{run}");
    let id = run["id"].as_str().unwrap().to_string();

    // The stored chain checks, from the run id to its head.
    let (status, checked) = server.get(&format!("/v1/runs/{id}/verify")).await;
    assert_eq!(status, 200, "{checked}");
    assert_eq!(checked["ok"], true, "{checked}");
    let events = checked["events"].as_u64().unwrap();
    assert!(events >= 8, "{checked}");
    assert_eq!(checked["chained"], events);
    let head = checked["head"].as_str().unwrap().to_string();
    assert_eq!(head.len(), 64);

    // One key, this node's, with its id.
    let (status, keys) = server.get("/v1/keys").await;
    assert_eq!(status, 200, "{keys}");
    let key = &keys["keys"][0];
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "{keys}");
    let (keyid, public) = (key["keyid"].as_str().unwrap(), key["public_key"].as_str().unwrap());
    assert!(key["public_key_pem"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    let (status, nodes) = server.get("/v1/nodes").await;
    assert_eq!(status, 200);
    assert_eq!(key["node"], nodes["nodes"][0]["id"], "{nodes}");
    // The generated key is the owner's alone.
    let key_file = dir.path().join("signing-key.pem");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The receipt: a DSSE envelope, checked by securesystemslib.
    let response = server
        .request(reqwest::Method::GET, &format!("/v1/runs/{id}/receipt"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.dsse.envelope.v1+json"
    );
    let receipt = dir.path().join("receipt.json");
    let (code, out) = cli(&server, &["runs", "receipt", &id, "-o", receipt.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
    let envelope: Value = serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
    assert_eq!(envelope["signatures"][0]["keyid"], keyid);
    let statement = securesystemslib_verify(&receipt, keyid, public);
    // The in-toto Statement v1 layout: _type, subject (name, digest), predicateType, predicate.
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["predicateType"], "https://sandstep.dev/receipt/v1");
    let output = run["output"].to_string();
    assert_eq!(
        statement["subject"],
        json!([{ "name": "output", "digest": { "sha256": sandstep::service::receipt::sha256_hex(&output) } }])
    );
    let predicate = &statement["predicate"];
    assert_eq!(predicate["run"]["id"], id.as_str());
    assert_eq!(predicate["run"]["status"], "completed");
    assert_eq!(predicate["run"]["workflow"], "proved");
    assert_eq!(predicate["events"], events);
    assert_eq!(predicate["chain"]["head"], head.as_str());
    assert_eq!(
        predicate["definition"]["sha256"],
        sandstep::service::receipt::sha256_hex(FLOW)
    );
    assert_eq!(
        predicate["input"]["sha256"],
        sandstep::service::receipt::sha256_hex(r#"{"n":1}"#)
    );
    assert_eq!(predicate["module_digests"].as_array().unwrap().len(), 2, "{predicate}");
    assert_eq!(predicate["node"], key["node"]);

    // sandstep verify: with the key, or the server's key list; with the bundle.
    let bundle = export(&server, &id, dir.path()).await;
    let receipt_arg = receipt.to_str().unwrap();
    let with_bundle = |bundle: &std::path::Path| {
        let bundle = bundle.to_str().unwrap().to_string();
        let args = ["verify", receipt_arg, "--key", public, "--bundle"].map(str::to_string);
        args.into_iter().chain([bundle]).collect::<Vec<String>>()
    };
    let args = with_bundle(&bundle);
    let (code, out) = cli(&server, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("signature: good"), "{out}");
    assert!(out.contains("every digest matches"), "{out}");
    let (code, out) = cli(&server, &["verify", receipt_arg]).await;
    assert_eq!(code, 0, "the key from GET /v1/keys: {out}");
    // A bundle missing a module the receipt names.
    let stripped = dir.path().join("stripped.zip");
    let script = "import sys, zipfile\n\
        src, dst = zipfile.ZipFile(sys.argv[1]), zipfile.ZipFile(sys.argv[2], 'w')\n\
        gone = sorted(n for n in src.namelist() if n.endswith('.wasm'))[0]\n\
        [dst.writestr(n, src.read(n)) for n in src.namelist() if n != gone]\n\
        dst.close()\n\
        print(gone[len('modules/'):-len('.wasm')])\n";
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .args([&bundle, &stripped])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let gone = text(&out.stdout).trim().to_string();
    let args = with_bundle(&stripped);
    let (code, out) = cli(&server, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("module {gone} not in bundle")), "{out}");
    let other = tempfile::tempdir().unwrap();
    let stranger = sandstep::signing::SigningKey::load_or_generate(&other.path().join("k.pem")).unwrap();
    let (code, out) = cli(
        &server,
        &["verify", receipt_arg, "--key", &hex::encode(stranger.public)],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no signature by key"), "{out}");

    // The run page offers both downloads; the receipt link saves the same envelope.
    let browser = crate::support::browser::Browser::open().await;
    browser.goto(&format!("{}/ui#/runs/{id}", server.url)).await;
    assert_eq!(browser.text("#download-bundle").await, "Download bundle");
    // What the link saves: the blob it hands the browser, and its file name.
    browser
        .script(
            "window.saved = []; const create = URL.createObjectURL;\n\
             URL.createObjectURL = (blob) => { blob.text().then((t) => window.saved.push(t)); return create(blob); };\n\
             const click = HTMLAnchorElement.prototype.click;\n\
             HTMLAnchorElement.prototype.click = function () {\n\
               if (!this.download) return click.call(this);\n\
               window.saved.push(this.download);\n\
             };",
        )
        .await;
    browser.click("#download-receipt").await;
    browser.wait_until("window.saved.length === 2").await;
    let saved = browser.script("return window.saved;").await;
    let names: Vec<&str> = saved.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    let name = format!("receipt-{id}.json");
    let text = names.iter().find(|s| **s != name).unwrap();
    assert!(names.contains(&name.as_str()), "{saved}");
    let downloaded: Value = serde_json::from_str(text).unwrap();
    let downloaded: sandstep::signing::Envelope = serde_json::from_value(downloaded).unwrap();
    let raw = sandstep::signing::parse_public(public).unwrap();
    let payload: Value = serde_json::from_slice(&downloaded.verify(&raw).unwrap()).unwrap();
    assert_eq!(payload["predicate"]["run"]["id"], id.as_str());
    browser.close().await;

    // A running run has no receipt yet.
    let (status, body) = server
        .apply("slow", "name: slow\nsteps:\n  - id: w\n    wait: { event: never }\n")
        .await;
    assert_eq!(status, 201, "{body}");
    let slow = server.start_run("slow").await;
    let (status, body) = server.get(&format!("/v1/runs/{slow}/receipt")).await;
    assert_eq!((status, problem(&body)), (409, "run-not-ended"), "{body}");
    server.stop().await;

    // Someone edits one stored event: the chain check names it.
    let pool = store::pool(dir.path()).await;
    let edited =
        sqlx::query("UPDATE events SET body = REPLACE(body, 'receipt', 'forged') WHERE run_id = $1 AND seq = 3")
            .bind(&id)
            .execute(&pool)
            .await
            .unwrap();
    assert_eq!(edited.rows_affected(), 1);
    let server = TestServer::start_in(dir.path(), |_| {}).await;
    let (status, checked) = server.get(&format!("/v1/runs/{id}/verify")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&checked["ok"], &checked["broken"]),
        (&json!(false), &json!("event 3: hash does not chain")),
        "{checked}"
    );
    let (code, out) = cli(&server, &["runs", "verify", &id]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("event 3: hash does not chain"), "{out}");
    let (status, body) = server.get(&format!("/v1/runs/{id}/receipt")).await;
    assert_eq!((status, problem(&body)), (409, "chain-broken"), "{body}");
    // The bundle of the edited run no longer matches the receipt signed before.
    let forged = dir.path().join("forged");
    std::fs::create_dir(&forged).unwrap();
    let forged = export(&server, &id, &forged).await;
    let args = with_bundle(&forged);
    let (code, out) = cli(&server, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("event 3: hash does not chain"), "{out}");
    server.stop().await;
}
