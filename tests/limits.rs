//! Every limit as a pair: obeyed, and violated with its exact failure kind,
//! while a healthy step runs next to it unaffected.

use std::time::Duration;

use sandstep::limits::Limits;
use sandstep::sandbox::Failure;
use serde_json::json;

use crate::support::*;

fn limits() -> Limits {
    Limits::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_obeyed() {
    let limits = Limits {
        fuel: 50_000_000,
        ..limits()
    };
    let attempt = attempt(hostile(), r#"{"mode": "spin", "n": 1000}"#, &limits).await;
    assert_eq!(kind(&attempt), "succeeded", "{attempt:?}");
    assert!(
        attempt.fuel_consumed > 0 && attempt.fuel_consumed < limits.fuel,
        "{}",
        attempt.fuel_consumed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_violated() {
    let limits = Limits {
        fuel: 50_000_000,
        ..limits()
    };
    let attempt = beside_healthy(hostile(), r#"{"mode": "spin", "n": 1000000000000}"#, &[], &limits).await;
    assert_eq!(attempt.failure(), Some(&Failure::FuelExhausted { limit: 50_000_000 }));
    assert_eq!(attempt.fuel_consumed, 50_000_000);
    assert!(
        !attempt.failure().unwrap().retryable(),
        "fuel exhaustion is not retryable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_obeyed_and_peak_reported() {
    let limits = Limits {
        memory: 64 << 20,
        ..limits()
    };
    let attempt = attempt(hostile(), r#"{"mode": "alloc", "mib": 16}"#, &limits).await;
    assert_eq!(kind(&attempt), "succeeded", "{attempt:?}");
    assert!(
        attempt.peak_memory >= 16 << 20,
        "peak {} should cover the 16 MiB block",
        attempt.peak_memory
    );
    assert!(attempt.peak_memory <= 64 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_violated_by_one_large_allocation() {
    let limits = Limits {
        memory: 32 << 20,
        ..limits()
    };
    let attempt = beside_healthy(hostile(), r#"{"mode": "alloc", "mib": 64}"#, &[], &limits).await;
    let Some(Failure::MemoryLimit { message }) = attempt.failure() else {
        panic!("{attempt:?}")
    };
    assert!(
        message.starts_with("memory limit of 33554432 bytes exceeded"),
        "{message}"
    );
    assert!(attempt.peak_memory <= 32 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_violated_by_grow_bomb() {
    let limits = Limits {
        memory: 32 << 20,
        ..limits()
    };
    let attempt = beside_healthy(hostile(), r#"{"mode": "memory_bomb"}"#, &[], &limits).await;
    assert_eq!(kind(&attempt), "memory_limit", "{attempt:?}");
    assert!(!attempt.failure().unwrap().retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_violated_at_instantiation() {
    // A core command whose initial memory (2048 pages = 128 MiB) is above the limit.
    let module = wat_module(r#"(module (memory 2048) (func (export "_start")))"#);
    let attempt = attempt(
        &module,
        "{}",
        &Limits {
            memory: 64 << 20,
            ..limits()
        },
    )
    .await;
    assert_eq!(kind(&attempt), "memory_limit", "{attempt:?}");
}

const TABLE_GROWER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (data (i32.const 16) "{}")
  (global $grow (mut i32) (i32.const GROW))
  (func (export "_start")
    (if (i32.eq (table.grow $t (ref.null func) (global.get $grow)) (i32.const -1)) (then unreachable))
    ;; print "{}" so the command has JSON output
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 2))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_elements_obeyed() {
    let module = wat_module(&TABLE_GROWER.replace("GROW", "999"));
    let attempt = attempt(
        &module,
        "{}",
        &Limits {
            table_elements: 1000,
            ..limits()
        },
    )
    .await;
    assert_eq!(attempt.output(), Some(&json!({})), "{attempt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_elements_violated() {
    let module = wat_module(&TABLE_GROWER.replace("GROW", "1000"));
    let attempt = beside_healthy(
        &module,
        "{}",
        &[],
        &Limits {
            table_elements: 1000,
            ..limits()
        },
    )
    .await;
    let Some(Failure::MemoryLimit { message }) = attempt.failure() else {
        panic!("{attempt:?}")
    };
    assert!(
        message.starts_with("table limit of 1000 elements exceeded"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_obeyed_and_violated() {
    // The Rust component needs several core instances (adapter, main, shims).
    let ok = attempt(hostile(), r#"{"mode": "ok"}"#, &limits()).await;
    assert_eq!(kind(&ok), "succeeded");
    let attempt = beside_healthy(
        hostile(),
        r#"{"mode": "ok"}"#,
        &[],
        &Limits {
            instances: 1,
            ..limits()
        },
    )
    .await;
    assert_eq!(kind(&attempt), "instantiation_failed", "{attempt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_obeyed() {
    let attempt = attempt(hostile(), r#"{"mode": "recurse", "depth": 1000}"#, &limits()).await;
    assert_eq!(attempt.output(), Some(&json!({ "depth": 1000 })), "{attempt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_violated_by_unbounded_recursion() {
    let module = wat_module(r#"(module (func $f (call $f)) (func (export "_start") (call $f)))"#);
    let attempt = beside_healthy(&module, "{}", &[], &limits()).await;
    let overflow = Failure::StackOverflow { limit: 512 << 10 };
    assert_eq!(attempt.failure(), Some(&overflow));
    let attempt = beside_healthy(hostile(), r#"{"mode": "recurse_forever"}"#, &[], &limits()).await;
    assert_eq!(attempt.failure(), Some(&overflow), "{attempt:?}");
    assert_eq!(
        overflow.to_string(),
        "stack overflow: the wasm stack limit is 524288 bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_obeyed() {
    let limits = Limits {
        timeout: Duration::from_secs(5),
        ..limits()
    };
    let attempt = attempt(hostile(), r#"{"mode": "sleep", "ms": 20}"#, &limits).await;
    assert_eq!(attempt.output(), Some(&json!({ "slept_ms": 20 })), "{attempt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_violated_by_infinite_loop() {
    let limits = Limits {
        timeout: Duration::from_millis(200),
        fuel: u64::MAX / 2,
        ..limits()
    };
    let attempt = beside_healthy(hostile(), r#"{"mode": "loop"}"#, &[], &limits).await;
    assert_eq!(
        attempt.failure(),
        Some(&Failure::Timeout {
            limit: Duration::from_millis(200)
        })
    );
    assert!(attempt.duration < Duration::from_secs(2), "took {:?}", attempt.duration);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_bounds_time_blocked_in_host_calls() {
    // A 30-second sleep through WASI clocks: the guest is inside a host call,
    // where epochs cannot reach it.
    let limits = Limits {
        timeout: Duration::from_millis(300),
        ..limits()
    };
    let attempt = beside_healthy(hostile(), r#"{"mode": "sleep", "ms": 30000}"#, &[], &limits).await;
    assert_eq!(
        attempt.failure(),
        Some(&Failure::Timeout {
            limit: Duration::from_millis(300)
        })
    );
    assert!(attempt.duration < Duration::from_secs(3), "took {:?}", attempt.duration);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_obeyed() {
    let attempt = attempt(
        hostile(),
        r#"{"mode": "output", "bytes": 1000}"#,
        &Limits {
            output_bytes: 2000,
            ..limits()
        },
    )
    .await;
    assert_eq!(attempt.output().unwrap()["data"].as_str().unwrap().len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_violated() {
    let limits = Limits {
        output_bytes: 2000,
        ..limits()
    };
    let attempt = beside_healthy(hostile(), r#"{"mode": "output", "bytes": 5000}"#, &[], &limits).await;
    assert_eq!(attempt.failure(), Some(&Failure::OutputTooLarge { limit: 2000 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_output_obeyed_and_violated() {
    let command = module(&guests().hostile_cmd_p1);
    let limits = Limits {
        output_bytes: 2000,
        ..limits()
    };
    let ok = attempt_with_args(command, "{}", &["big_output", "1000"], &limits).await;
    assert_eq!(ok.output().unwrap()["data"].as_str().unwrap().len(), 1000, "{ok:?}");
    let big = beside_healthy(command, "{}", &["big_output", "5000"], &limits).await;
    assert_eq!(big.failure(), Some(&Failure::OutputTooLarge { limit: 2000 }));
    let flood = beside_healthy(command, "{}", &["stdout_flood"], &limits).await;
    assert_eq!(
        flood.failure(),
        Some(&Failure::OutputTooLarge { limit: 2000 }),
        "{flood:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_obeyed() {
    let attempt = attempt(hostile(), r#"{"mode": "log", "lines": 3}"#, &limits()).await;
    assert_eq!(attempt.output(), Some(&json!({ "logged": 3 })));
    let messages: Vec<&str> = attempt.logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages, ["line 0", "line 1", "line 2"]);
    assert!(attempt.logs.iter().all(|l| l.level == sandstep::sandbox::Level::Info));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_violated_by_a_flood_of_host_calls() {
    let limits = Limits {
        log_lines: 1000,
        ..limits()
    };
    let attempt = beside_healthy(hostile(), r#"{"mode": "log_flood"}"#, &[], &limits).await;
    assert_eq!(
        attempt.failure(),
        Some(&Failure::LogsTooLarge {
            message: "more log lines than the limit of 1000".into()
        })
    );
    assert_eq!(attempt.logs.len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_violated_by_bytes() {
    let limits = Limits {
        log_bytes: 1000,
        ..limits()
    };
    let attempt = beside_healthy(hostile(), r#"{"mode": "log_huge", "bytes": 5000}"#, &[], &limits).await;
    assert_eq!(
        attempt.failure(),
        Some(&Failure::LogsTooLarge {
            message: "logs larger than the limit of 1000 bytes".into()
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_violated_by_stdout_flood() {
    let limits = Limits {
        log_bytes: 10_000,
        ..limits()
    };
    let attempt = beside_healthy(hostile(), r#"{"mode": "stdout_flood"}"#, &[], &limits).await;
    assert_eq!(kind(&attempt), "logs_too_large", "{attempt:?}");
    let command = module(&guests().hostile_cmd_p1);
    let attempt = beside_healthy(command, "{}", &["stderr_flood"], &limits).await;
    assert_eq!(kind(&attempt), "logs_too_large", "{attempt:?}");
}

// Limits that can race: the attempt is named by the limit the guest crossed,
// with the limit's value in the message.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_far_past_the_limit_is_output_too_large_not_a_host_call_limit() {
    // 64 MiB returned in one string: more than the output limit, and far
    // more than any one host call may usually carry.
    let limits = Limits {
        memory: 512 << 20,
        ..limits()
    };
    let attempt = beside_healthy(hostile(), r#"{"mode": "output", "bytes": 67108864}"#, &[], &limits).await;
    let failure = attempt.failure().expect("failed");
    assert_eq!(failure, &Failure::OutputTooLarge { limit: 1 << 20 });
    assert_eq!(failure.to_string(), "output larger than the limit of 1048576 bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_line_far_past_the_limit_is_logs_too_large() {
    let huge = beside_healthy(hostile(), r#"{"mode": "log_huge", "bytes": 6000000}"#, &[], &limits()).await;
    assert_eq!(
        huge.failure(),
        Some(&Failure::LogsTooLarge {
            message: "logs larger than the limit of 262144 bytes".into()
        })
    );
    // A line that large is fine where the log limit allows it.
    let roomy = Limits {
        log_bytes: 8 << 20,
        ..limits()
    };
    let ok = attempt(hostile(), r#"{"mode": "log_huge", "bytes": 6000000}"#, &roomy).await;
    assert_eq!(kind(&ok), "succeeded", "{ok:?}");
    assert_eq!(ok.logs[0].message.len(), 6_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_call_data_obeyed_and_violated() {
    // One `poll` call naming the same pollable n times: 4 bytes each in the
    // guest, a resource handle each on the host.
    let limits = Limits {
        memory: 16 << 20,
        ..limits()
    };
    let ok = attempt(hostile(), r#"{"mode": "poll_many", "n": 1000}"#, &limits).await;
    assert_eq!(ok.output(), Some(&json!({ "ready": 1000 })), "{ok:?}");
    let big = beside_healthy(hostile(), r#"{"mode": "poll_many", "n": 1500000}"#, &[], &limits).await;
    let failure = big.failure().expect("failed");
    assert_eq!(failure, &Failure::HostCallTooLarge { limit: 16 << 20 }, "{big:?}");
    assert_eq!(
        failure.to_string(),
        "a host call passed more than the limit of 16777216 bytes"
    );
    assert!(!failure.retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_write_past_the_stream_limit_names_that_limit() {
    // A write larger than `check-write` allows, in one call.
    let limits = Limits {
        log_bytes: 10_000,
        output_bytes: 2000,
        ..limits()
    };
    for stream in ["stdout", "stderr"] {
        let input = json!({ "mode": "raw_write", "bytes": 100_000, "stream": stream }).to_string();
        let attempt = beside_healthy(hostile(), &input, &[], &limits).await;
        assert_eq!(
            attempt.failure(),
            Some(&Failure::LogsTooLarge {
                message: "logs larger than the limit of 10000 bytes".into()
            }),
            "{stream}: {attempt:?}"
        );
    }
    let command = module(&guests().hostile_cmd_p2);
    let attempt = beside_healthy(command, "{}", &["raw_stdout", "5000"], &limits).await;
    assert_eq!(
        attempt.failure(),
        Some(&Failure::OutputTooLarge { limit: 2000 }),
        "{attempt:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_or_output_whichever_the_guest_crossed() {
    let limits = Limits {
        memory: 32 << 20,
        ..limits()
    };
    // Fits in memory, too large to return.
    let output = beside_healthy(hostile(), r#"{"mode": "output", "bytes": 4000000}"#, &[], &limits).await;
    assert_eq!(output.failure(), Some(&Failure::OutputTooLarge { limit: 1 << 20 }));
    // Does not fit in memory: building it crosses the memory limit first.
    let memory = beside_healthy(hostile(), r#"{"mode": "output", "bytes": 40000000}"#, &[], &limits).await;
    let failure = memory.failure().expect("failed");
    assert_eq!(failure.kind(), "memory_limit", "{memory:?}");
    assert!(
        failure
            .to_string()
            .starts_with("memory limit of 33554432 bytes exceeded"),
        "{failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_or_timeout_whichever_the_guest_crossed() {
    // The same endless loop, with fuel that runs out well inside the time,
    // and with time that runs out well before the fuel.
    let fuel_first = Limits {
        fuel: 20_000_000,
        timeout: Duration::from_secs(30),
        ..limits()
    };
    let attempt = beside_healthy(hostile(), r#"{"mode": "loop"}"#, &[], &fuel_first).await;
    let failure = attempt.failure().expect("failed");
    assert_eq!(failure, &Failure::FuelExhausted { limit: 20_000_000 });
    assert_eq!(failure.to_string(), "fuel exhausted after 20000000 units");
    let time_first = Limits {
        fuel: u64::MAX / 2,
        timeout: Duration::from_millis(250),
        ..limits()
    };
    let attempt = beside_healthy(hostile(), r#"{"mode": "loop"}"#, &[], &time_first).await;
    let failure = attempt.failure().expect("failed");
    assert_eq!(
        failure,
        &Failure::Timeout {
            limit: Duration::from_millis(250)
        }
    );
    assert_eq!(failure.to_string(), "timed out after 250ms");
}
