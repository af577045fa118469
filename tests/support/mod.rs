//! Shared test helpers: guests built from source, a shared sandbox, and
//! running attempts next to a healthy neighbour.

#![allow(dead_code)]

pub mod browser;
pub mod otlp;
pub mod process;
pub mod server;
pub mod store;
pub mod workflows;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use sandstep::limits::{EngineSettings, Limits};
use sandstep::sandbox::{Attempt, AttemptRequest, Module, Sandbox, StepContext};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Paths of the built guests.
pub struct Guests {
    /// Example guests from guest-examples/rust (built by guest-examples/build.sh).
    pub examples: PathBuf,
    pub hostile: PathBuf,
    pub netprobe: PathBuf,
    /// Makes the HTTP requests its input lists (wstd, over wasi:http).
    pub httpprobe: PathBuf,
    /// A command trying the file operations its input lists.
    pub fsprobe: PathBuf,
    /// The hostile command as a preview-1 core module.
    pub hostile_cmd_p1: PathBuf,
    /// The same command as a preview-2 component (exports wasi:cli/run).
    pub hostile_cmd_p2: PathBuf,
    /// Workflow code that does what its input asks (tests/guests/flow-probe).
    pub flow_probe: PathBuf,
}

impl Guests {
    pub fn example(&self, name: &str) -> PathBuf {
        self.examples.join(format!("{name}.wasm"))
    }
}

fn run(command: &mut Command) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(status.success(), "{command:?} failed with {status}");
}

/// Points a server's compile cache (`data_dir/cache`) at one directory
/// shared by every test server, so each guest is compiled once rather
/// than once per test. Artifacts there are keyed by module digest and
/// engine settings and loaded only when their SHA-256 matches, as in any
/// data directory. A directory that already has a cache keeps its own
/// (a restart, or a test that compiled into it first).
pub fn share_compiled(data_dir: &Path) {
    let link = data_dir.join("cache");
    if link.symlink_metadata().is_ok() {
        return;
    }
    let shared = root().join("target/test-compiled");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::create_dir_all(data_dir).unwrap();
    std::os::unix::fs::symlink(&shared, &link).unwrap();
}

/// Runs the `sandstep` binary on `data_dir` with `args`.
pub fn sandstep(data_dir: &Path, args: &[&str]) -> std::process::Output {
    store::on(&mut process::command(), data_dir)
        .args(args)
        .output()
        .expect("the binary runs")
}

/// `sandstep module add FILE --name NAME --tag TAG`.
pub fn module_add(data_dir: &Path, file: &Path, name: &str, tag: &str) -> std::process::Output {
    sandstep(
        data_dir,
        &["module", "add", file.to_str().unwrap(), "--name", name, "--tag", tag],
    )
}

/// The Python of the project's virtualenv with the pinned packages of
/// `requirements` (a path from the project root) installed.
pub fn python(requirements: &str) -> PathBuf {
    let bin = Command::new(root().join("guest-examples/python-venv.sh"))
        .arg(root().join(requirements))
        .output()
        .expect("python-venv.sh runs");
    assert!(bin.status.success(), "{}", text(&bin.stderr));
    PathBuf::from(text(&bin.stdout).trim()).join("python")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Builds every guest from source, once per test process.
pub fn guests() -> &'static Guests {
    static GUESTS: OnceLock<Guests> = OnceLock::new();
    GUESTS.get_or_init(|| {
        let root = root();
        run(Command::new(root.join("guest-examples/build.sh")).arg("rust"));
        let manifest = root.join("tests/guests/Cargo.toml");
        for (target, packages) in [
            (
                "wasm32-wasip2",
                &[
                    "hostile",
                    "netprobe",
                    "hostile-cmd",
                    "httpprobe",
                    "fsprobe",
                    "flow-probe",
                ][..],
            ),
            ("wasm32-wasip1", &["hostile-cmd"][..]),
        ] {
            let mut cargo = Command::new(env!("CARGO"));
            cargo
                .args(["build", "--quiet", "--release", "--target", target, "--manifest-path"])
                .arg(&manifest);
            for p in packages {
                cargo.args(["-p", p]);
            }
            run(&mut cargo);
        }
        let out = root.join("tests/guests/target");
        Guests {
            examples: root.join("target/guests/rust"),
            hostile: out.join("wasm32-wasip2/release/hostile.wasm"),
            netprobe: out.join("wasm32-wasip2/release/netprobe.wasm"),
            httpprobe: out.join("wasm32-wasip2/release/httpprobe.wasm"),
            fsprobe: out.join("wasm32-wasip2/release/fsprobe.wasm"),
            hostile_cmd_p1: out.join("wasm32-wasip1/release/hostile-cmd.wasm"),
            hostile_cmd_p2: out.join("wasm32-wasip2/release/hostile-cmd.wasm"),
            flow_probe: out.join("wasm32-wasip2/release/flow_probe.wasm"),
        }
    })
}

/// The order example (examples/order), built from source by its build.sh
/// once per test process: its steps and its workflow code in each language.
pub struct OrderExample {
    pub steps: PathBuf,
    /// (language, workflow code): rust, python, typescript.
    pub flows: Vec<(&'static str, PathBuf)>,
}

pub fn order_example() -> &'static OrderExample {
    static BUILT: OnceLock<OrderExample> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = root();
        run(&mut Command::new(root.join("examples/order/build.sh")));
        let out = root.join("target/order");
        OrderExample {
            steps: out.join("order-steps.wasm"),
            flows: ["rust", "python", "typescript"]
                .into_iter()
                .map(|language| (language, out.join(format!("order-flow-{language}.wasm"))))
                .collect(),
        }
    })
}

/// The guest examples in every language but Rust, as (module name, path),
/// built from source by guest-examples/build.sh once per test process.
pub fn language_guests() -> &'static [(&'static str, PathBuf)] {
    static BUILT: OnceLock<Vec<(&'static str, PathBuf)>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = root();
        let languages = ["javascript", "typescript", "python", "c", "go", "zig", "assemblyscript"];
        run(Command::new(root.join("guest-examples/build.sh")).args(languages));
        let out = root.join("target/guests");
        [
            ("filter-orders", "javascript/filter-orders.wasm"),
            ("rank-customers", "typescript/rank-customers.wasm"),
            ("statistics", "python/stats.wasm"),
            ("histogram", "c/histogram.wasm"),
            ("top-words", "c/top-words.wasm"),
            ("invoice", "go/invoice.wasm"),
            ("checksum", "zig/checksum.wasm"),
            ("checksum-step", "zig/checksum-step.wasm"),
            ("format-money", "assemblyscript/format-money.wasm"),
        ]
        .into_iter()
        .map(|(name, file)| (name, out.join(file)))
        .collect()
    })
}

/// The JavaScript and Python examples built with their toolchains'
/// defaults (which import wasi:http and wasi:sockets), as (JavaScript,
/// Python), into target/guests/defaults/; rebuilt only when what they are
/// built from changed (guest-examples/stamp.sh).
pub fn default_builds() -> (&'static Path, &'static Path) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    let (js, py) = BUILT.get_or_init(|| {
        language_guests(); // installs the toolchains
        let root = root();
        let out = root.join("target/guests/defaults");
        std::fs::create_dir_all(&out).unwrap();
        let (js, py) = (out.join("default-js.wasm"), out.join("default-py.wasm"));
        let stamp = out.join(".inputs");
        let stamped = |op: &str| {
            Command::new(root.join("guest-examples/stamp.sh"))
                .arg(op)
                .arg(&stamp)
                .args([
                    "guest-examples/javascript",
                    "guest-examples/python",
                    "wit",
                    "guest-examples/stamp.sh",
                ])
                .status()
                .unwrap()
                .success()
        };
        if js.exists() && py.exists() && stamped("fresh") {
            return (js, py);
        }
        let examples = root.join("guest-examples");
        run(
            Command::new(examples.join("javascript/node_modules/.bin/componentize-js"))
                .current_dir(examples.join("javascript"))
                .args([
                    "filter-orders.js",
                    "--wit",
                    "../../wit/step.wit",
                    "--world-name",
                    "step",
                    "--out",
                ])
                .arg(&js),
        );
        run(Command::new(root.join("target/toolchains/python/bin/componentize-py"))
            .current_dir(examples.join("python"))
            .args(["-d", "../../wit/step.wit", "-w", "step", "componentize", "stats", "-o"])
            .arg(&py)
            .stdout(std::process::Stdio::null()));
        assert!(stamped("write"));
        (js, py)
    });
    (js, py)
}

/// One sandbox for the whole test process, as in a real server.
pub fn sandbox() -> &'static Arc<Sandbox> {
    static SANDBOX: OnceLock<Arc<Sandbox>> = OnceLock::new();
    SANDBOX.get_or_init(|| Arc::new(Sandbox::new(EngineSettings::default(), None).expect("the sandbox starts")))
}

/// Loads a guest into the shared sandbox, once per path.
pub fn module(path: &Path) -> &'static Module {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, &'static Module>>> = OnceLock::new();
    let mut modules = MODULES.get_or_init(Default::default).lock().unwrap();
    modules.entry(path.to_path_buf()).or_insert_with(|| {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let module = sandbox()
            .load(&bytes)
            .unwrap_or_else(|e| panic!("{} was rejected: {e}", path.display()));
        Box::leak(Box::new(module))
    })
}

pub fn hostile() -> &'static Module {
    module(&guests().hostile)
}

pub fn context() -> StepContext {
    StepContext {
        run_id: "run-1".into(),
        step_id: "step-1".into(),
        attempt: 1,
        idempotency_key: "run-1/step-1".into(),
        traceparent: None,
    }
}

/// Runs one attempt of `module` with `input` under `access`.
pub async fn attempt_with(
    module: &Module,
    input: &str,
    limits: &Limits,
    access: &sandstep::sandbox::Access,
) -> Attempt {
    run_attempt(module, input, &[], limits, access).await
}

/// Runs one attempt of `module` with `input` (JSON text).
pub async fn attempt(module: &Module, input: &str, limits: &Limits) -> Attempt {
    attempt_with_args(module, input, &[], limits).await
}

pub async fn attempt_with_args(module: &Module, input: &str, args: &[&str], limits: &Limits) -> Attempt {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    run_attempt(module, input, &args, limits, &sandstep::sandbox::NO_ACCESS).await
}

async fn run_attempt(
    module: &Module,
    input: &str,
    args: &[String],
    limits: &Limits,
    access: &sandstep::sandbox::Access,
) -> Attempt {
    let context = context();
    sandbox()
        .run(
            module,
            AttemptRequest {
                input,
                args,
                context: &context,
                limits,
                access,
            },
        )
        .await
}

/// Runs a hostile attempt and, at the same time, a healthy `hello` attempt;
/// asserts the healthy one is unaffected and returns the hostile one.
pub async fn beside_healthy(module: &Module, input: &str, args: &[&str], limits: &Limits) -> Attempt {
    let hello = self::module(&guests().example("hello"));
    let healthy = async {
        // Starts while the hostile attempt is running.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        attempt(hello, r#"{"name": "neighbour"}"#, &Limits::default()).await
    };
    let (hostile, healthy) = tokio::join!(attempt_with_args(module, input, args, limits), healthy);
    assert_eq!(
        healthy.output(),
        Some(&serde_json::json!({ "greeting": "Hello, neighbour!" })),
        "a healthy step next to a hostile one must succeed: {healthy:?}"
    );
    hostile
}

/// The failure kind of an attempt, or "succeeded".
pub fn kind(attempt: &Attempt) -> &'static str {
    attempt.failure().map_or("succeeded", |f| f.kind())
}

/// Binary wasm from WebAssembly text.
pub fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("valid WAT")
}

/// Loads WAT into a fresh module of the shared sandbox.
pub fn wat_module(text: &str) -> Module {
    sandbox().load(&wat(text)).expect("the WAT module loads")
}

/// Runs SQL statements on a data directory's store directly, as an
/// operator (or a bug) could: for tests of what the server does with what
/// it finds stored.
pub async fn sql(data_dir: &std::path::Path, statements: &[&str]) {
    let pool = store::pool(data_dir).await;
    for statement in statements {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    pool.close().await;
}

/// Rows of a query on a data directory's store, as JSON values (text,
/// integers and NULL).
pub async fn query(data_dir: &std::path::Path, statement: &str) -> Vec<Vec<serde_json::Value>> {
    use sqlx::Row as _;
    let pool = store::pool(data_dir).await;
    let rows = sqlx::query(statement).fetch_all(&pool).await.unwrap();
    let values = rows
        .iter()
        .map(|row| {
            (0..row.columns().len())
                .map(|i| {
                    if let Ok(Some(n)) = row.try_get::<Option<i64>, _>(i) {
                        serde_json::Value::from(n)
                    } else if let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) {
                        serde_json::Value::from(text)
                    } else {
                        serde_json::Value::Null
                    }
                })
                .collect()
        })
        .collect();
    pool.close().await;
    values
}
