//! A step component that misbehaves on request. Input: `{"mode": "...", ...}`.

wit_bindgen::generate!({ path: "../../../wit/step.wit", world: "step" });

use sandstep::step::host::{log, Level};
use serde_json::{json, Value};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

static CALLS: AtomicU64 = AtomicU64::new(0);
static mut SECRET: [u8; 16] = [0; 16];

fn err(message: &str, retryable: bool) -> StepError {
    StepError { message: message.into(), retryable }
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    // Keeps the frame on the wasm stack, not the shadow stack.
    black_box(recurse(black_box(depth - 1))) + 1
}

fn number(input: &Value, key: &str) -> u64 {
    input.get(key).and_then(Value::as_u64).unwrap_or(0)
}

struct Hostile;

impl Guest for Hostile {
    fn run(ctx: Context, input: String) -> Result<String, StepError> {
        let input: Value = serde_json::from_str(&input).map_err(|e| err(&e.to_string(), false))?;
        let mode = input.get("mode").and_then(Value::as_str).unwrap_or("ok");
        let out = match mode {
            "ok" => json!({ "ok": true }),
            "echo" => input.clone(),
            "context" => json!({
                "run_id": ctx.run_id, "step_id": ctx.step_id,
                "attempt": ctx.attempt, "idempotency_key": ctx.idempotency_key,
            }),
            "error" => {
                let retryable = input.get("retryable").and_then(Value::as_bool).unwrap_or(true);
                return Err(err("the guest says no", retryable));
            }
            "flaky" => {
                // Fails (retryably) until attempt `succeed_at`.
                let succeed_at = number(&input, "succeed_at") as u32;
                if ctx.attempt < succeed_at {
                    return Err(err(&format!("flaky failure on attempt {}", ctx.attempt), true));
                }
                json!({ "attempt": ctx.attempt, "idempotency_key": ctx.idempotency_key })
            }
            "spin" => {
                // Burns `n` loop iterations, then succeeds.
                let n = number(&input, "n");
                let mut x = 0u64;
                for i in 0..n {
                    x = black_box(x.wrapping_add(i));
                }
                json!({ "x": x })
            }
            "loop" => loop {
                black_box(CALLS.fetch_add(1, Ordering::Relaxed));
            },
            "log" => {
                for i in 0..number(&input, "lines") {
                    log(Level::Info, &format!("line {i}"));
                }
                json!({ "logged": number(&input, "lines") })
            }
            "say" => {
                // Logs and prints its `text`, and returns it.
                let text = input["text"].as_str().unwrap_or_default();
                log(Level::Info, text);
                eprintln!("{text}");
                json!({ "said": text })
            }
            "log_flood" => loop {
                log(Level::Debug, "x");
            },
            "log_huge" => {
                log(Level::Warn, &"y".repeat(number(&input, "bytes") as usize));
                json!({})
            }
            "alloc" => {
                // Allocates and touches `mib` MiB.
                let mib = number(&input, "mib") as usize;
                let block = black_box(vec![1u8; mib << 20]);
                json!({ "sum": block.iter().step_by(4096).map(|b| *b as u64).sum::<u64>() })
            }
            "memory_bomb" => {
                let mut blocks = Vec::new();
                loop {
                    blocks.push(black_box(vec![7u8; 1 << 20]));
                }
            }
            "raw_write" => {
                // One write of `bytes` bytes, without asking `check-write`
                // how much the stream takes.
                let data = vec![b'w'; number(&input, "bytes") as usize];
                let stream = match input.get("stream").and_then(Value::as_str) {
                    Some("stderr") => wasip2::cli::stderr::get_stderr(),
                    _ => wasip2::cli::stdout::get_stdout(),
                };
                let written = stream.write(&data).is_ok();
                json!({ "written": written })
            }
            "poll_many" => {
                // One host call whose list names the same pollable `n` times:
                // 4 bytes each here, a whole resource handle each on the host.
                let ready = wasip2::clocks::monotonic_clock::subscribe_duration(0);
                let list = vec![&ready; number(&input, "n") as usize];
                json!({ "ready": wasip2::io::poll::poll(&list).len() })
            }
            "recurse" => json!({ "depth": recurse(number(&input, "depth")) }),
            "recurse_forever" => json!({ "depth": recurse(u64::MAX) }),
            "output" => json!({ "data": "z".repeat(number(&input, "bytes") as usize) }),
            "stdout" => {
                for i in 0..number(&input, "lines") {
                    println!("stdout line {i}");
                }
                eprintln!("stderr line");
                json!({})
            }
            "stdout_flood" => loop {
                println!("flooding stdout with a line that is long enough to fill buffers quickly");
            },
            "snoop" => {
                let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string());
                let root = std::fs::read_dir("/").map(|d| d.count()).map_err(|e| e.to_string());
                let cwd = std::fs::read_dir(".").map(|d| d.count()).map_err(|e| e.to_string());
                let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let args: Vec<String> = std::env::args().collect();
                json!({
                    "passwd": passwd.is_ok(), "passwd_error": passwd.err(),
                    "root_listing": root.is_ok(), "cwd_listing": cwd.is_ok(),
                    "env": env, "args": args,
                    "now_ms": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
                })
            }
            "counter" => {
                // Every attempt gets a fresh instance: both read as first use.
                let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
                // SAFETY: single-threaded guest.
                let secret_before = unsafe { SECRET };
                unsafe { SECRET = [0xAB; 16] };
                json!({ "calls": calls, "secret_was_set": secret_before != [0; 16] })
            }
            "panic" => panic!("the guest panicked on purpose"),
            "non_json" => return Ok("this is not json".into()),
            "invalid_utf8" => {
                // SAFETY: deliberately not UTF-8, to test the host's check.
                return Ok(unsafe { String::from_utf8_unchecked(vec![b'"', 0xff, 0xfe, b'"']) });
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(number(&input, "ms")));
                json!({ "slept_ms": number(&input, "ms") })
            }
            other => return Err(err(&format!("unknown mode {other}"), false)),
        };
        Ok(out.to_string())
    }
}

export!(Hostile);
