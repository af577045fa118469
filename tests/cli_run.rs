//! `sandstep run` and `sandstep validate`, black-box through the binary.

use std::process::Output;

use serde_json::{json, Value};

use crate::support::*;

fn example_modules() -> Vec<String> {
    let g = guests();
    [
        ("wordcount", "wordcount"),
        ("transform", "transform"),
        ("stats", "stats-cmd"),
        ("hello", "hello"),
    ]
    .iter()
    .map(|(name, file)| format!("{name}={}", g.example(file).display()))
    .collect()
}

fn run_example(data_dir: &std::path::Path, extra: &[&str]) -> Output {
    let example = root().join("examples/text-report.yaml");
    let modules = example_modules();
    let mut args = vec!["run", example.to_str().unwrap()];
    for m in &modules {
        args.extend(["--module", m.as_str()]);
    }
    args.extend(extra);
    sandstep(data_dir, &args)
}

#[test]
fn run_prints_the_output_last_and_progress_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_example(
        dir.path(),
        &[
            "--input",
            r#"{"author": "Ada", "text": "the cat and the dog and the bird"}"#,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        last,
        json!({
            "words": 8,
            "frequent": ["and", "the"],
            "mean_count": 1.6,
            "greetings": ["Hello, Ada (and x2)!", "Hello, Ada (the x3)!"]
        })
    );
    let stderr = text(&out.stderr);
    for line in [
        "run started",
        "step count succeeded",
        "step greet succeeded",
        "run completed",
    ] {
        assert!(
            stderr.lines().any(|l| l.starts_with(line)),
            "missing {line:?} in:\n{stderr}"
        );
    }
}

#[test]
fn run_events_are_json_lines_before_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_example(
        dir.path(),
        &["--input", r#"{"author": "Bo", "text": "a a b"}"#, "--events"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let events: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.first().unwrap()["type"], "run.queued");
    assert_eq!(events.last().unwrap()["type"], "run.completed");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        serde_json::from_str::<Value>(lines.last().unwrap()).unwrap(),
        events.last().unwrap()["output"]
    );
}

#[test]
fn run_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    // Bad input: refused before the run, exit 2.
    let out = run_example(dir.path(), &["--input", r#"{"author": "Ada"}"#]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr), "error: input: input text is required\n");

    // A failing run: exit 1, output null, the reason on stderr.
    let wf = dir.path().join("fail.yaml");
    std::fs::write(&wf, "name: fail\nsteps:\n  - { id: greet, module: hello, input: {} }\n").unwrap();
    let hello = format!("hello={}", guests().example("hello").display());
    let out = sandstep(dir.path(), &["run", wf.to_str().unwrap(), "--module", &hello]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout).lines().last(), Some("null"));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("step greet failed: guest_error: input.name must be a string"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .ends_with("failed: step greet failed: guest_error: input.name must be a string"),
        "{stderr}"
    );
}

#[test]
fn run_uses_stored_modules() {
    let dir = tempfile::tempdir().unwrap();
    let hello = guests().example("hello");
    let added = module_add(dir.path(), &hello, "hello", "v1");
    assert!(added.status.success());
    let wf = dir.path().join("wf.yaml");
    std::fs::write(&wf, "name: stored\nsteps:\n  - { id: greet, module: \"hello:v1\", input: { name: Store } }\noutput: \"{{ steps.greet.output.greeting }}\"\n").unwrap();
    let out = sandstep(dir.path(), &["run", wf.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "\"Hello, Store!\"\n");
    // An unknown reference is a located error before anything runs.
    std::fs::write(&wf, "name: stored\nsteps:\n  - { id: greet, module: \"hello:v2\" }\n").unwrap();
    let out = sandstep(dir.path(), &["run", wf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(
            "steps.greet.module: no module hello:v2 in the store (use --module NAME=PATH or `sandstep module add`)"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn validate_reports_every_error_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let ok = sandstep(
        dir.path(),
        &["validate", root().join("examples/text-report.yaml").to_str().unwrap()],
    );
    assert!(ok.status.success());
    assert_eq!(text(&ok.stdout), "ok: workflow text-report is valid (4 steps)\n");

    let wf = dir.path().join("bad.yaml");
    std::fs::write(
        &wf,
        "name: bad\nsteps:\n  - { id: a, module: x, needs: [b] }\n  - { id: a, module: x, timeout: soon }\n",
    )
    .unwrap();
    let out = sandstep(dir.path(), &["validate", wf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let file = wf.display();
    assert_eq!(
        text(&out.stderr),
        format!(
            "{file}: steps.a.timeout: invalid duration \"soon\": expected number at 0 (write e.g. 10ms, 1s, 5m, 24h)\n\
             {file}: steps.a.needs: unknown step \"b\"\n\
             2 errors found\n"
        )
    );
}

#[test]
fn local_runs_say_what_needs_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("wf.yaml");
    // A wait with no timeout could never end in a local run.
    std::fs::write(&wf, "name: local\nsteps:\n  - id: w\n    wait: { event: approval }\n").unwrap();
    let out = sandstep(dir.path(), &["run", wf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("wait_timeout: no event can reach a local run (`sandstep run`) and this wait for \"approval\" has no timeout"),
        "{stderr}"
    );
    // With a timeout, it times out.
    std::fs::write(
        &wf,
        "name: local\nsteps:\n  - id: w\n    wait: { event: approval, timeout: 200ms }\n",
    )
    .unwrap();
    let out = sandstep(dir.path(), &["run", wf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("wait_timeout: no event \"approval\" came within 200ms"),
        "{}",
        text(&out.stderr)
    );
    // A sub-workflow needs the server.
    std::fs::write(&wf, "name: local\nsteps:\n  - id: s\n    workflow: other\n").unwrap();
    let out = sandstep(dir.path(), &["run", wf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("child_failed: child run of workflow other: sub-workflows run on a server"),
        "{}",
        text(&out.stderr)
    );
}

/// `--input` over 1 MiB is refused naming the flag that raises the bound;
/// with `--max-input-size` the same input runs.
#[test]
fn a_large_input_needs_max_input_size_and_then_runs() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("wf.yaml");
    std::fs::write(
        &wf,
        "name: big\ninputs:\n  text: { type: string }\nsteps:\n  - id: s\n    module: echo\n    input: { n: \"{{ inputs.text | length }}\" }\noutput: \"{{ steps.s.output.n }}\"\n",
    )
    .unwrap();
    let input = dir.path().join("big.json");
    let long = "a".repeat(2 * 1024 * 1024);
    std::fs::write(&input, json!({ "text": long }).to_string()).unwrap();
    let echo = format!("echo={}", guests().example("echo").display());
    let at = format!("@{}", input.display());
    let args = [
        "run",
        wf.to_str().unwrap(),
        "--module",
        echo.as_str(),
        "--input",
        at.as_str(),
    ];
    let out = sandstep(dir.path(), &args);
    assert_eq!(out.status.code(), Some(2), "{}", text_of(&out));
    assert!(
        text(&out.stderr)
            .contains("--input is 2097163 bytes, over the limit of 1048576 (1.0 MiB); raise it with --max-input-size"),
        "{}",
        text(&out.stderr)
    );
    let mut raised = args.to_vec();
    raised.extend(["--max-input-size", "4MiB"]);
    let out = sandstep(dir.path(), &raised);
    assert!(out.status.success(), "{}", text_of(&out));
    assert_eq!(text(&out.stdout).lines().last(), Some("2097152"));
}

/// A benchmark whose guest is not built says how to build it.
#[test]
fn a_bench_without_its_guests_says_how_to_build_them() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("echo.wasm");
    let out = sandstep(
        dir.path(),
        &["bench", "sandbox", "--trivial", missing.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("build them with `guest-examples/build.sh rust`"),
        "{}",
        text(&out.stderr)
    );
}

/// On a fresh checkout the first `bench` builds its guests with
/// `guest-examples/build.sh rust` and prints figures. Here the checkout is a
/// folder whose build script records its argument and puts the built trivial
/// step where the real script would.
#[test]
fn a_first_bench_in_a_checkout_builds_its_guests_and_prints_figures() {
    let checkout = tempfile::tempdir().unwrap();
    let script = checkout.path().join("guest-examples/build.sh");
    std::fs::create_dir_all(script.parent().unwrap()).unwrap();
    let echo = guests().examples.join("echo.wasm");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" > built-for\nmkdir -p target/guests/rust\ncp '{}' target/guests/rust/echo.wasm\n",
            echo.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = process::command()
        .current_dir(checkout.path())
        .env("SANDSTEP_DATA_DIR", checkout.path().join("data"))
        .args([
            "bench",
            "sandbox",
            "--iterations",
            "20",
            "--guests",
            "target/guests",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text_of(&out));
    assert!(
        text(&out.stderr).contains("building the benchmark's guests from source: guest-examples/build.sh rust"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(checkout.path().join("built-for")).unwrap(),
        "rust\n"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.to_string().contains("echo"), "{report}");
}

fn text_of(out: &Output) -> String {
    format!("{}\n{}", text(&out.stdout), text(&out.stderr))
}
