//! The typed outcome of an attempt: outputs, guest errors, traps, invalid
//! output, and how commands map onto steps.

use sandstep::limits::Limits;
use sandstep::sandbox::{Failure, Level};
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_steps_produce_their_outputs() {
    let g = guests();
    let hello = attempt(module(&g.example("hello")), r#"{"name": "Ada"}"#, &Limits::default()).await;
    assert_eq!(hello.output(), Some(&json!({ "greeting": "Hello, Ada!" })));
    assert_eq!(hello.logs[0].message, "greeting Ada (attempt 1)");

    let input = json!({
        "items": [{"n": "a", "s": 3}, {"n": "b", "s": 1}, {"n": "c", "s": 5}, {"n": "d", "s": 2}],
        "where": {"field": "s", "gte": 2}, "sort_by": "s", "descending": true, "limit": 2
    });
    let transform = attempt(module(&g.example("transform")), &input.to_string(), &Limits::default()).await;
    assert_eq!(
        transform.output(),
        Some(&json!({ "count": 2, "total": 3, "items": [{"n": "c", "s": 5}, {"n": "a", "s": 3}] }))
    );

    let words = attempt(
        module(&g.example("wordcount")),
        r#"{"text": "the cat and the hat\nthe end", "top": 1}"#,
        &Limits::default(),
    )
    .await;
    assert_eq!(
        words.output(),
        Some(&json!({ "words": 7, "lines": 2, "chars": 27, "unique": 5, "top": [{"word": "the", "count": 3}] }))
    );

    let stats = attempt_with_args(
        module(&g.example("stats-cmd")),
        r#"{"numbers": [1, 2, 4]}"#,
        &["--round", "2"],
        &Limits::default(),
    )
    .await;
    assert_eq!(
        stats.output(),
        Some(&json!({ "count": 3, "sum": 7.0, "mean": 2.33, "min": 1.0, "max": 4.0 }))
    );
    assert_eq!(stats.logs[0].message, "summarising 3 numbers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_error_carries_message_and_retryable() {
    let no_retry = attempt(
        hostile(),
        r#"{"mode": "error", "retryable": false}"#,
        &Limits::default(),
    )
    .await;
    assert_eq!(
        no_retry.failure(),
        Some(&Failure::GuestError {
            message: "the guest says no".into(),
            retryable: false
        })
    );
    assert!(!no_retry.failure().unwrap().retryable());
    let retry = attempt(hostile(), r#"{"mode": "error", "retryable": true}"#, &Limits::default()).await;
    assert!(retry.failure().unwrap().retryable());
    let hello = attempt(module(&guests().example("hello")), r#"{}"#, &Limits::default()).await;
    assert_eq!(
        hello.failure(),
        Some(&Failure::GuestError {
            message: "input.name must be a string".into(),
            retryable: false
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_is_a_trap_with_the_panic_message() {
    let attempt = beside_healthy(hostile(), r#"{"mode": "panic"}"#, &[], &Limits::default()).await;
    let Some(Failure::Trap { message }) = attempt.failure() else {
        panic!("{attempt:?}")
    };
    assert!(message.contains("unreachable"), "{message}");
    assert!(message.contains("the guest panicked on purpose"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_output_is_invalid_output() {
    let attempt = attempt(hostile(), r#"{"mode": "non_json"}"#, &Limits::default()).await;
    let Some(Failure::InvalidOutput { message }) = attempt.failure() else {
        panic!("{attempt:?}")
    };
    assert!(message.starts_with("output is not JSON: expected ident"), "{message}");
    let command = attempt_with_args(
        module(&guests().hostile_cmd_p1),
        "{}",
        &["non_json"],
        &Limits::default(),
    )
    .await;
    assert_eq!(kind(&command), "invalid_output");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_output_is_invalid_output() {
    let attempt = attempt(hostile(), r#"{"mode": "invalid_utf8"}"#, &Limits::default()).await;
    assert_eq!(kind(&attempt), "invalid_output", "{attempt:?}");
    let command = attempt_with_args(
        module(&guests().hostile_cmd_p1),
        "{}",
        &["invalid_utf8"],
        &Limits::default(),
    )
    .await;
    let Some(Failure::InvalidOutput { message }) = command.failure() else {
        panic!("{command:?}")
    };
    assert!(message.starts_with("output is not UTF-8"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_stdout_and_stderr_become_logs() {
    let attempt = attempt(hostile(), r#"{"mode": "stdout", "lines": 2}"#, &Limits::default()).await;
    let logs: Vec<(Level, &str)> = attempt.logs.iter().map(|l| (l.level, l.message.as_str())).collect();
    assert_eq!(
        logs,
        [
            (Level::Info, "stdout line 0"),
            (Level::Info, "stdout line 1"),
            (Level::Warn, "stderr line")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_reaches_the_step() {
    let attempt = attempt(hostile(), r#"{"mode": "context"}"#, &Limits::default()).await;
    assert_eq!(
        attempt.output(),
        Some(&json!({ "run_id": "run-1", "step_id": "step-1", "attempt": 1, "idempotency_key": "run-1/step-1" }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_read_stdin_and_args_in_both_forms() {
    for path in [&guests().hostile_cmd_p1, &guests().hostile_cmd_p2] {
        let command = module(path);
        assert_eq!(command.info.kind, sandstep::sandbox::ModuleKind::Command);
        let echo = attempt_with_args(command, r#"{"a": [1, 2]}"#, &["echo"], &Limits::default()).await;
        assert_eq!(echo.output(), Some(&json!({ "a": [1, 2] })), "{}", path.display());
        assert_eq!(echo.logs[0].message, "read 13 bytes");
        let args = attempt_with_args(
            command,
            "{}",
            &["args", "--flag", "value with spaces"],
            &Limits::default(),
        )
        .await;
        assert_eq!(
            args.output(),
            Some(&json!({ "args": ["step", "args", "--flag", "value with spaces"] }))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_nonzero_exit_fails_with_stderr_tail() {
    let failed = attempt_with_args(module(&guests().hostile_cmd_p1), "{}", &["fail"], &Limits::default()).await;
    assert_eq!(
        failed.failure(),
        Some(&Failure::GuestError {
            message: "exited with code 3; stderr: first problem\nsecond problem".into(),
            retryable: true
        })
    );
    let stats = attempt(
        module(&guests().example("stats-cmd")),
        r#"{"numbers": "nope"}"#,
        &Limits::default(),
    )
    .await;
    assert_eq!(
        stats.failure(),
        Some(&Failure::GuestError {
            message: "exited with code 2; stderr: stats-cmd: input.numbers must be an array".into(),
            retryable: true
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_serializes_with_kind_and_costs() {
    let attempt = attempt(
        hostile(),
        r#"{"mode": "error", "retryable": false}"#,
        &Limits::default(),
    )
    .await;
    let value = serde_json::to_value(&attempt).unwrap();
    assert_eq!(value["status"], "failed");
    assert_eq!(
        value["error"],
        json!({ "kind": "guest_error", "message": "the guest says no", "retryable": false })
    );
    assert!(value["duration_us"].as_u64().unwrap() > 0);
    assert!(value["fuel_consumed"].as_u64().unwrap() > 0);
    assert!(value["peak_memory"].as_u64().unwrap() > 0);
}
