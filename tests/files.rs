//! File grants: read-only directories the server exposes and a size-capped
//! scratch, through cap-std preopens; what a step can and cannot reach.

use serde_json::{json, Value};

use sandstep::grants::ServerGrants;
use sandstep::limits::Limits;
use sandstep::sandbox::{Access, Attempt};

use crate::support::{attempt_with, guests, kind, module};

/// A data directory with `a.txt`, beside a `secret.txt` it must not reach,
/// and a symlink inside it pointing at that secret.
struct Tree {
    _root: tempfile::TempDir,
    data: std::path::PathBuf,
    secret: std::path::PathBuf,
}

fn tree() -> Tree {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("a.txt"), "alpha").unwrap();
    let secret = root.path().join("secret.txt");
    std::fs::write(&secret, "do not read").unwrap();
    std::os::unix::fs::symlink("../secret.txt", data.join("link")).unwrap();
    Tree {
        _root: root,
        data,
        secret,
    }
}

fn access(tree: &Tree, scratch: Option<u64>) -> Access {
    let mut allowed = ServerGrants::default();
    allowed.allow_read(&format!("data={}", tree.data.display())).unwrap();
    Access {
        read: vec![("data".into(), allowed.read["data"].dir.clone())],
        scratch,
        ..Access::default()
    }
}

async fn probe(ops: Value, access: &Access) -> Attempt {
    let input = json!({ "ops": ops }).to_string();
    attempt_with(module(&guests().fsprobe), &input, &Limits::default(), access).await
}

fn results(attempt: &Attempt) -> Vec<Value> {
    attempt.output().unwrap_or_else(|| panic!("{attempt:?}"))["results"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_granted_directory_is_readable_and_nothing_outside_it_is() {
    let tree = tree();
    let attempt = probe(
        json!([
            { "op": "read", "path": "/data/a.txt" },
            { "op": "list", "path": "/data" },
            { "op": "write", "path": "/data/new.txt", "bytes": 3 },
            { "op": "read", "path": "/data/../secret.txt" },
            { "op": "read", "path": tree.secret.to_str().unwrap() },
            { "op": "read", "path": "/data/link" },
            { "op": "read", "path": "/etc/passwd" },
        ]),
        &access(&tree, None),
    )
    .await;
    let results = results(&attempt);
    assert_eq!(results[0], json!({ "ok": "alpha" }));
    assert_eq!(results[1], json!({ "ok": ["a.txt", "link"] }));
    for (i, what) in [
        (2, "write on read-only"),
        (3, ".."),
        (4, "absolute host path"),
        (5, "symlink out"),
        (6, "/etc"),
    ] {
        assert!(results[i].get("error").is_some(), "{what} must fail: {:?}", results[i]);
    }
    assert!(!tree.data.join("new.txt").exists(), "nothing was written on the host");
    let audit = attempt.audit.expect("an audit");
    assert_eq!(
        serde_json::to_value(&audit.files[0]).unwrap(),
        json!({ "grant": "data", "path": "/data/a.txt", "write": false })
    );
    assert!(audit.files.iter().all(|f| f.grant == "data"), "{audit:?}");
}

#[tokio::test]
async fn scratch_is_fresh_per_attempt_and_capped() {
    let tree = tree();
    let access = access(&tree, Some(1 << 20));
    let attempt = probe(
        json!([
            { "op": "write", "path": "/scratch/x", "bytes": 512 << 10 },
            { "op": "write", "path": "/scratch/x", "bytes": 512 << 10 },
            { "op": "list", "path": "/scratch" },
        ]),
        &access,
    )
    .await;
    let results = results(&attempt);
    assert_eq!(results[0], json!({ "ok": 512 << 10 }));
    assert_eq!(
        results[1],
        json!({ "ok": 512 << 10 }),
        "a file rewritten in place counts once"
    );
    assert_eq!(results[2], json!({ "ok": ["x"] }));
    let audit = attempt.audit.unwrap();
    assert!(
        audit
            .files
            .iter()
            .any(|f| f.grant == "scratch" && f.path == "/scratch/x" && f.write),
        "{audit:?}"
    );

    let attempt = probe(json!([{ "op": "list", "path": "/scratch" }]), &access).await;
    assert_eq!(
        results_of_first(&attempt),
        json!({ "ok": [] }),
        "each attempt gets an empty scratch"
    );

    let attempt = probe(
        json!([
            { "op": "write", "path": "/scratch/x", "bytes": 700 << 10 },
            { "op": "write", "path": "/scratch/y", "bytes": 700 << 10 },
        ]),
        &access,
    )
    .await;
    assert_eq!(kind(&attempt), "scratch_full", "{attempt:?}");
    assert_eq!(
        attempt.failure().unwrap().to_string(),
        "scratch directory full: the limit is 1048576 bytes"
    );
}

fn results_of_first(attempt: &Attempt) -> Value {
    results(attempt)[0].clone()
}

#[tokio::test]
async fn a_command_sees_exactly_its_granted_environment() {
    let access = Access {
        env: vec![("API_BASE".into(), "http://127.0.0.1:9".into())],
        ..Access::default()
    };
    let ops = json!([{ "op": "env", "name": "API_BASE" }, { "op": "env", "name": "HOME" }]);
    let attempt = probe(ops.clone(), &access).await;
    let results = results(&attempt);
    assert_eq!(results[0], json!({ "ok": "http://127.0.0.1:9" }));
    assert!(results[1].get("error").is_some(), "no host variable leaks: {results:?}");
    let attempt = probe(ops, &Access::default()).await;
    assert!(results_of_first(&attempt).get("error").is_some());
}

#[tokio::test]
async fn a_preview1_module_cannot_be_given_directories() {
    let tree = tree();
    let attempt = attempt_with(
        module(&guests().hostile_cmd_p1),
        "{}",
        &Limits::default(),
        &access(&tree, None),
    )
    .await;
    assert_eq!(kind(&attempt), "capability_denied");
    assert!(attempt.failure().unwrap().to_string().contains("wasm32-wasip2"));
}
