//! A step sees nothing it was not granted: no files, no environment, no
//! network, and nothing of another attempt.

use sandstep::limits::Limits;
use sandstep::sandbox::ModuleError;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_sees_no_files_env_or_args() {
    // The test process has environment variables and /etc/passwd exists.
    assert!(std::env::vars().count() > 0 && std::path::Path::new("/etc/passwd").exists());
    let attempt = attempt(hostile(), r#"{"mode": "snoop"}"#, &Limits::default()).await;
    let out = attempt.output().unwrap_or_else(|| panic!("{attempt:?}"));
    assert_eq!(out["passwd"], false);
    assert_eq!(out["root_listing"], false);
    assert_eq!(out["cwd_listing"], false);
    assert_eq!(out["env"], json!([]));
    assert_eq!(out["args"], json!([]));
    // Clocks are available: the wall clock is a real time after 2024.
    assert!(out["now_ms"].as_u64().unwrap() > 1_700_000_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_sees_no_files_or_env() {
    for path in [&guests().hostile_cmd_p1, &guests().hostile_cmd_p2] {
        let attempt = attempt_with_args(module(path), "{}", &["snoop"], &Limits::default()).await;
        assert_eq!(
            attempt.output(),
            Some(&json!({ "passwd": false, "root_listing": false, "env": [] })),
            "{}",
            path.display()
        );
    }
}

#[test]
fn network_is_not_linked() {
    // Rust's std reaches TCP through wasi:sockets, which the host never links:
    // the module is refused before it can run.
    let bytes = std::fs::read(&guests().netprobe).unwrap();
    let Err(ModuleError::UnsupportedImports(imports)) = sandbox().load(&bytes) else {
        panic!("a component importing wasi:sockets must be rejected")
    };
    assert!(imports.iter().any(|i| i.starts_with("wasi:sockets/")), "{imports:?}");
    assert!(
        imports.iter().all(|i| !i.starts_with("wasi:cli/")),
        "only refused imports are named: {imports:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_of_one_module_share_nothing() {
    for _ in 0..3 {
        let attempt = attempt(hostile(), r#"{"mode": "counter"}"#, &Limits::default()).await;
        assert_eq!(attempt.output(), Some(&json!({ "calls": 1, "secret_was_set": false })));
    }
    // Concurrently too.
    let handles: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async {
                let limits = Limits::default();
                attempt(hostile(), r#"{"mode": "counter"}"#, &limits).await
            })
        })
        .collect();
    for handle in handles {
        let attempt = handle.await.unwrap();
        assert_eq!(attempt.output(), Some(&json!({ "calls": 1, "secret_was_set": false })));
    }
}
