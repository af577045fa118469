//! Untrusted definitions and inputs are bounded the same way in the CLI
//! and the server: 1 MiB and 128 levels of nesting, each refused with an
//! error naming the limit, quickly. A definition nested 100,000 deep kept
//! `sandstep validate` busy past 25 s before the depth was checked first.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::server::*;
use crate::support::*;

fn deep(levels: usize) -> String {
    format!(
        "name: deep\nsteps:\n  - id: a\n    sleep: 1s\n    note: {}{}\n",
        "[".repeat(levels),
        "]".repeat(levels)
    )
}

#[test]
fn the_cli_refuses_deep_and_large_documents_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deep.yaml");
    std::fs::write(&file, deep(100_000)).unwrap();
    let started = Instant::now();
    let out = sandstep(dir.path(), &["validate", file.to_str().unwrap()]);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "document: the definition nests arrays and objects deeper than the limit of 128 levels (line 5, column 139)"
        ),
        "{}",
        text(&out.stderr)
    );

    let large = dir.path().join("large.yaml");
    std::fs::write(&large, format!("name: large\n# {}\nsteps: []\n", "x".repeat(2 << 20))).unwrap();
    for command in ["validate", "run"] {
        let out = sandstep(dir.path(), &[command, large.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(
            text(&out.stderr).contains("bytes, over the limit of 1048576 (1.0 MiB) for definitions"),
            "{command}: {}",
            text(&out.stderr)
        );
    }

    let input = format!("{{\"a\": {}{}}}", "[".repeat(300), "]".repeat(300));
    let echo = guests().example("echo");
    let out = sandstep(dir.path(), &["exec", echo.to_str().unwrap(), "--input", &input]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: --input nests arrays and objects deeper than the limit of 128 levels (line 1, column 134)\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_a_deep_definition_naming_the_limit() {
    let server = TestServer::start().await;
    let (status, body) = server.apply("deep", &deep(100_000)).await;
    assert_eq!((status, problem(&body)), (422, "invalid-workflow"), "{body}");
    assert_eq!(
        body["errors"],
        json!([{ "location": "document", "message": "the definition nests arrays and objects deeper than the limit of 128 levels (line 5, column 139)" }])
    );
    server.stop().await;
}
