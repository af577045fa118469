//! Loading and storing modules: every rejection has its own clear message,
//! the same bytes give the same digest, and tags move.

use sandstep::limits::EngineSettings;
use sandstep::modules::{Reference, ReferenceError};
use sandstep::sandbox::{ModuleError, ModuleKind, Sandbox};

use crate::support::*;

fn load(bytes: &[u8]) -> Result<sandstep::sandbox::ModuleKind, ModuleError> {
    sandbox().load(bytes).map(|m| m.info.kind)
}

#[test]
fn classifies_steps_and_commands() {
    let g = guests();
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    assert_eq!(load(&read(&g.example("hello"))), Ok(ModuleKind::Step));
    assert_eq!(load(&read(&g.example("stats-cmd"))), Ok(ModuleKind::Command));
    assert_eq!(load(&read(&g.hostile_cmd_p2)), Ok(ModuleKind::Command));
    let hello = sandbox().load(&read(&g.example("hello"))).unwrap();
    assert_eq!(hello.info.exports, ["run"]);
    assert!(
        hello
            .info
            .imports
            .iter()
            .any(|i| i.starts_with("sandstep:step/host@0.1.0")),
        "{:?}",
        hello.info.imports
    );
}

#[test]
fn rejects_empty_garbage_and_text() {
    assert_eq!(load(b""), Err(ModuleError::NotWasm("the file is empty".into())));
    let garbage = load(b"\x7fELF\x02\x01\x01 not wasm at all");
    assert_eq!(
        garbage,
        Err(ModuleError::NotWasm(
            "it does not start with the `\\0asm` magic number".into()
        ))
    );
    let Err(ModuleError::NotWasm(text)) = load(b"(module (func (export \"_start\")))") else {
        panic!()
    };
    assert!(text.starts_with("this is WebAssembly text (WAT)"), "{text}");
    assert_eq!(
        load(b"\0asm\x01\0"),
        Err(ModuleError::NotWasm(
            "truncated: the 8-byte header is incomplete".into()
        ))
    );
    let Err(ModuleError::NotWasm(version)) = load(b"\0asm\x02\0\0\0") else {
        panic!()
    };
    assert!(version.starts_with("unsupported binary version"), "{version}");
}

#[test]
fn rejects_truncated_binaries() {
    let bytes = std::fs::read(guests().example("hello")).unwrap();
    let Err(ModuleError::Invalid(message)) = load(&bytes[..bytes.len() / 2]) else {
        panic!("truncated component accepted")
    };
    assert!(message.starts_with("failed to parse WebAssembly"), "{message}");
    assert!(message.ends_with("(is the file truncated?)"), "{message}");
    let core = wat(r#"(module (func (export "_start")))"#);
    let Err(ModuleError::Invalid(message)) = load(&core[..core.len() - 3]) else {
        panic!("truncated module accepted")
    };
    assert!(message.ends_with("(is the file truncated?)"), "{message}");
}

#[test]
fn rejects_oversized_files() {
    let small = Sandbox::new(
        EngineSettings {
            max_module_bytes: 1000,
            ..EngineSettings::default()
        },
        None,
    )
    .unwrap();
    let bytes = std::fs::read(guests().example("hello")).unwrap();
    let Err(error) = small.load(&bytes) else { panic!() };
    assert_eq!(
        error,
        ModuleError::TooLarge {
            size: bytes.len() as u64,
            limit: 1000
        }
    );
    assert_eq!(
        error.to_string(),
        format!("module is {} bytes, larger than the limit of 1000 bytes", bytes.len())
    );
}

#[test]
fn rejects_core_module_without_start() {
    let error = load(&wat(r#"(module (memory (export "memory") 1) (func (export "run")))"#)).unwrap_err();
    assert_eq!(
        error,
        ModuleError::NoStart {
            exports: vec!["memory".into(), "run".into()]
        }
    );
    assert!(
        error.to_string().starts_with("core module does not export `_start`"),
        "{error}"
    );
}

#[test]
fn rejects_component_of_another_world() {
    let component = wat(r#"(component
             (core module $m (func (export "f") (result i32) i32.const 1))
             (core instance $i (instantiate $m))
             (func $f (result u32) (canon lift (core func $i "f")))
             (export "answer" (func $f)))"#);
    let Err(ModuleError::WrongWorld { exports, detail }) = load(&component) else {
        panic!()
    };
    assert_eq!(exports, ["answer"]);
    assert!(detail.contains("run"), "{detail}");
}

#[test]
fn rejects_imports_the_host_does_not_provide() {
    let core = wat(r#"(module (import "env" "open_socket" (func)) (func (export "_start")))"#);
    assert_eq!(
        load(&core),
        Err(ModuleError::UnsupportedImports(vec!["env::open_socket".into()]))
    );
    let component = wat(r#"(component
             (import "acme:secrets/vault@1.0.0" (instance (export "get" (func (result string))))))"#);
    let error = load(&component).unwrap_err();
    assert_eq!(
        error,
        ModuleError::UnsupportedImports(vec!["acme:secrets/vault@1.0.0".into()])
    );
    assert!(
        error
            .to_string()
            .contains("steps get no sockets or other host access (outbound HTTP is wasi:http, granted per step)"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_bytes_same_digest_and_tags_move() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::store::open(dir.path()).await;
    let hello_bytes = std::fs::read(guests().example("hello")).unwrap();
    let echo_bytes = std::fs::read(guests().example("echo")).unwrap();
    let hello = sandbox().load(&hello_bytes).unwrap();
    let echo = sandbox().load(&echo_bytes).unwrap();

    let first = db
        .put_module(&hello_bytes, &hello.info, "greeter", "latest")
        .await
        .unwrap();
    let again = db.put_module(&hello_bytes, &hello.info, "greeter", "v1").await.unwrap();
    assert_eq!(first.digest, again.digest);
    assert_eq!(first.digest, sandstep::sandbox::digest(&hello_bytes));
    assert_eq!(first.previous, None);

    let moved = db
        .put_module(&echo_bytes, &echo.info, "greeter", "latest")
        .await
        .unwrap();
    assert_eq!(moved.previous.as_deref(), Some(first.digest.as_str()));
    let resolve = |r: &str| {
        let db = db.clone();
        let reference = Reference::parse(r).unwrap();
        async move { db.resolve(&reference).await.unwrap() }
    };
    assert_eq!(resolve("greeter").await, Some(echo.info.digest.clone()));
    assert_eq!(resolve("greeter:latest").await, Some(echo.info.digest.clone()));
    assert_eq!(resolve("greeter:v1").await, Some(hello.info.digest.clone()));
    assert_eq!(resolve(&hello.info.digest).await, Some(hello.info.digest.clone()));
    assert_eq!(
        resolve(&format!("greeter@{}", hello.info.digest)).await,
        Some(hello.info.digest.clone())
    );
    assert_eq!(resolve(&format!("nobody@{}", hello.info.digest)).await, None);
    assert_eq!(db.module_bytes(&hello.info.digest).await.unwrap(), Some(hello_bytes));

    let listed: Vec<(String, String)> = db
        .list_modules()
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.tag, m.digest))
        .collect();
    assert_eq!(
        listed,
        [
            ("latest".into(), echo.info.digest.clone()),
            ("v1".into(), hello.info.digest.clone())
        ]
    );
    assert_eq!(resolve("greeter:v2").await, None);
    assert_eq!(resolve("nobody").await, None);
}

#[test]
fn bad_references_and_names_are_named() {
    assert!(matches!(Reference::parse("Hello"), Err(ReferenceError::InvalidName(n)) if n == "Hello"));
    assert!(matches!(Reference::parse("hello:bad tag"), Err(ReferenceError::InvalidTag(t)) if t == "bad tag"));
    assert!(matches!(Reference::parse("sha256:abc"), Err(ReferenceError::InvalidDigest(d)) if d == "sha256:abc"));
    assert!(matches!(
        Reference::parse("../escape"),
        Err(ReferenceError::InvalidName(_))
    ));
}

#[test]
fn compile_cache_is_reused_and_survives_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(guests().example("hello")).unwrap();
    let first = Sandbox::new(EngineSettings::default(), Some(dir.path())).unwrap();
    assert!(!first.load(&bytes).unwrap().from_cache);
    assert!(first.load(&bytes).unwrap().from_cache);
    // A new process (sandbox) finds the artifact.
    let second = Sandbox::new(EngineSettings::default(), Some(dir.path())).unwrap();
    assert!(second.load(&bytes).unwrap().from_cache);
    // A tampered artifact is never deserialized: it is recompiled.
    for entry in walk(dir.path()) {
        if entry.extension().is_some_and(|e| e == "cwasm") {
            std::fs::write(&entry, b"not an artifact").unwrap();
        }
    }
    let third = Sandbox::new(EngineSettings::default(), Some(dir.path())).unwrap();
    let module = third.load(&bytes).unwrap();
    assert!(!module.from_cache);
    assert_eq!(module.info.kind, ModuleKind::Step);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
