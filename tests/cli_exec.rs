//! The `sandstep` binary, black-box: `module add`, `exec`, exit codes.

use serde_json::{json, Value};

use crate::support::*;

#[test]
fn exec_file_prints_output_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let hello = guests().example("hello");
    let out = sandstep(
        dir.path(),
        &["exec", hello.to_str().unwrap(), "--input", r#"{"name": "Ada"}"#],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "{\"greeting\":\"Hello, Ada!\"}\n");
    assert_eq!(text(&out.stderr), "[info] greeting Ada (attempt 1)\n");
}

#[test]
fn exec_failure_exits_nonzero_with_kind() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = guests().hostile.to_str().unwrap().to_string();
    let out = sandstep(
        dir.path(),
        &["exec", &hostile, "--input", r#"{"mode": "loop"}"#, "--timeout", "200ms"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(text(&out.stderr), "error: timeout: timed out after 200ms\n");

    let out = sandstep(
        dir.path(),
        &[
            "exec",
            &hostile,
            "--input",
            r#"{"mode": "alloc", "mib": 64}"#,
            "--memory",
            "16MiB",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error: memory_limit: memory limit of 16777216 bytes exceeded"),
        "{}",
        text(&out.stderr)
    );

    let out = sandstep(
        dir.path(),
        &[
            "exec",
            &hostile,
            "--input",
            r#"{"mode": "spin", "n": 100000000000}"#,
            "--fuel",
            "1000000",
        ],
    );
    assert_eq!(
        text(&out.stderr),
        "error: fuel_exhausted: fuel exhausted after 1000000 units\n"
    );
}

#[test]
fn exec_json_prints_the_whole_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = guests().hostile.to_str().unwrap().to_string();
    let out = sandstep(
        dir.path(),
        &["exec", &hostile, "--input", r#"{"mode": "log", "lines": 1}"#, "--json"],
    );
    assert!(out.status.success());
    let attempt: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(attempt["status"], "succeeded");
    assert_eq!(attempt["output"], json!({ "logged": 1 }));
    assert_eq!(attempt["logs"], json!([{ "level": "info", "message": "line 0" }]));
    for field in ["duration_us", "fuel_consumed", "peak_memory"] {
        assert!(attempt[field].as_u64().unwrap() > 0, "{field}");
    }
}

#[test]
fn module_add_then_exec_by_name_and_digest() {
    let dir = tempfile::tempdir().unwrap();
    let stats = guests().example("stats-cmd");
    let out = sandstep(
        dir.path(),
        &[
            "module",
            "add",
            stats.to_str().unwrap(),
            "--name",
            "stats",
            "--tag",
            "v1",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let added: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(added["kind"], "command");
    let digest = added["digest"].as_str().unwrap().to_string();

    for reference in ["stats:v1", digest.as_str(), &format!("stats@{digest}")] {
        let out = sandstep(
            dir.path(),
            &[
                "exec",
                reference,
                "--input",
                r#"{"numbers": [2, 4]}"#,
                "--arg",
                "--round",
                "--arg",
                "1",
            ],
        );
        assert!(out.status.success(), "{reference}: {}", text(&out.stderr));
        let output: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
        assert_eq!(output["mean"], 3.0);
    }
    let out = sandstep(dir.path(), &["exec", "stats:v2"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr), "error: no module stats:v2 in the store\n");

    let list = sandstep(dir.path(), &["module", "list"]);
    assert_eq!(
        text(&list.stdout),
        format!(
            "stats:v1\tcommand\t{}\t{digest}\n",
            std::fs::metadata(&stats).unwrap().len()
        )
    );
}

/// A module is compiled once, when first added; adding the same bytes again
/// (another tag) loads the cached artifact.
#[test]
fn module_add_compiles_once() {
    let dir = tempfile::tempdir().unwrap();
    let hello = guests().example("hello");
    let add = |tag: &str| {
        let out = module_add(dir.path(), &hello, "hello", tag);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let size = std::fs::metadata(&hello).unwrap().len();
    let first = add("v1");
    assert!(first.starts_with("hello:v1 sha256:"), "{first}");
    assert!(first.contains(&format!("(step, {size} bytes, compiled in ")), "{first}");
    let second = add("v2");
    assert!(second.starts_with("hello:v2 sha256:"), "{second}");
    assert!(
        second.contains(&format!("(step, {size} bytes, loaded from the cache in ")),
        "{second}"
    );
}

#[test]
fn module_add_rejection_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"definitely not wasm").unwrap();
    let out = sandstep(dir.path(), &["module", "add", bad.to_str().unwrap(), "--name", "bad"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not a WebAssembly binary: it does not start with the `\\0asm` magic number"),
        "{}",
        text(&out.stderr)
    );
    let list = sandstep(dir.path(), &["module", "list"]);
    assert!(list.stdout.is_empty());
}

#[test]
fn exec_rejects_bad_input_json() {
    let dir = tempfile::tempdir().unwrap();
    let hello = guests().example("hello");
    let out = sandstep(dir.path(), &["exec", hello.to_str().unwrap(), "--input", "{name: 1}"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: --input is not valid JSON: key must be a string"),
        "{}",
        text(&out.stderr)
    );
}
