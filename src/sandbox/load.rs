//! Loading a binary: check it, classify it (step component, command, or a
//! clear rejection), compile it (or load this program's own cached artifact)
//! and pre-instantiate it against the host's linker.

use std::time::Instant;

use wasmtime::component::Component;
use wasmtime::ExternType;

use super::{bindings, wasi, Module, ModuleInfo, ModuleKind, Pre, Sandbox};

/// Why a binary was refused. Each message says what is wrong and what a
/// loadable module looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    #[error("module is {size} bytes, larger than the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("not a WebAssembly binary: {0}")]
    NotWasm(String),
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    #[error(
        "core module does not export `_start`: a core module runs as a WASI command and must export \
         `_start` (exports: {}); a step must be a component of the sandstep:step/step world",
        list(.exports)
    )]
    NoStart { exports: Vec<String> },
    #[error(
        "component is neither a step nor a command: it must export `run: func(ctx: context, input: \
         string) -> result<string, step-error>` (world sandstep:step/step@0.1.0) or `wasi:cli/run` \
         (exports: {}): {detail}",
        list(.exports)
    )]
    WrongWorld { exports: Vec<String>, detail: String },
    #[error(
        "module imports what the sandbox does not provide: {}; steps get no sockets or other host \
         access (outbound HTTP is wasi:http, granted per step): build without them \
         (componentize-py: `--stub-wasi`)",
        .0.join(", ")
    )]
    UnsupportedImports(Vec<String>),
    #[error("module imports do not match the host's interfaces: {0}")]
    ImportMismatch(String),
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

impl Sandbox {
    /// Loads a binary into a runnable [`Module`].
    pub fn load(&self, bytes: &[u8]) -> Result<Module, ModuleError> {
        let started = Instant::now();
        let size = bytes.len() as u64;
        if size > self.settings.max_module_bytes {
            return Err(ModuleError::TooLarge {
                size,
                limit: self.settings.max_module_bytes,
            });
        }
        check_header(bytes)?;
        let digest = super::digest(bytes);
        let digest_hex = &digest["sha256:".len()..];
        let workflow = is_component(bytes) && memchr::memmem::find(bytes, WORKFLOW_IMPORT).is_some();
        let (pre, kind, imports, exports, from_cache) = if workflow {
            self.load_workflow(bytes, digest_hex)?
        } else if is_component(bytes) {
            self.load_component(bytes, digest_hex)?
        } else {
            self.load_core(bytes, digest_hex)?
        };
        Ok(Module {
            info: ModuleInfo {
                digest,
                kind,
                size,
                imports,
                exports,
            },
            load_time: started.elapsed(),
            from_cache,
            overflow: std::sync::OnceLock::new(),
            pre,
        })
    }

    /// Compiled code for `bytes`: from the cache when this program wrote it
    /// there, else freshly compiled (and cached).
    fn compiled(
        &self,
        digest_hex: &str,
        precompile: impl FnOnce() -> wasmtime::Result<Vec<u8>>,
    ) -> Result<(Vec<u8>, bool), ModuleError> {
        compiled_in(&self.cache, digest_hex, precompile)
    }

    /// Workflow code: compiled for the workflow engine, checked against
    /// the workflow world. Its imports are the workflow world's and the
    /// WASI subset without `wasi:http`: workflow code reaches nothing.
    #[allow(clippy::type_complexity)]
    fn load_workflow(
        &self,
        bytes: &[u8],
        digest_hex: &str,
    ) -> Result<(Pre, ModuleKind, Vec<String>, Vec<String>, bool), ModuleError> {
        let engine = &self.workflow_engine;
        let (artifact, from_cache) =
            compiled_in(&self.workflow_cache, digest_hex, || engine.precompile_component(bytes))?;
        // SAFETY: as for steps: only this program's own artifacts.
        let component =
            unsafe { Component::deserialize(engine, &artifact) }.map_err(|e| ModuleError::Invalid(format!("{e:#}")))?;
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(engine).map(|(name, _)| name.to_string()).collect();
        let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_string()).collect();
        if !super::workflow::imports_ctx(&imports) {
            // The import's name is only somewhere in its bytes: a step.
            return self.load_component(bytes, digest_hex);
        }
        let refused: Vec<String> = imports
            .iter()
            .filter(|i| {
                let unversioned = i.split('@').next().unwrap_or(i);
                !(unversioned.starts_with("sandstep:workflow/")
                    || (wasi::ALLOWED_WASI_INTERFACES.contains(&unversioned) && !unversioned.starts_with("wasi:http/")))
            })
            .cloned()
            .collect();
        if !refused.is_empty() {
            return Err(ModuleError::UnsupportedImports(refused));
        }
        let instance_pre = self
            .workflow_linker
            .instantiate_pre(&component)
            .map_err(|e| ModuleError::ImportMismatch(format!("{e:#}")))?;
        let pre = super::workflow::WorkflowPre::new(instance_pre).map_err(|e| ModuleError::WrongWorld {
            exports: exports.clone(),
            detail: format!("{e:#}"),
        })?;
        Ok((Pre::Workflow(pre), ModuleKind::Workflow, imports, exports, from_cache))
    }

    #[allow(clippy::type_complexity)]
    fn load_component(
        &self,
        bytes: &[u8],
        digest_hex: &str,
    ) -> Result<(Pre, ModuleKind, Vec<String>, Vec<String>, bool), ModuleError> {
        let (artifact, from_cache) = self.compiled(digest_hex, || self.engine.precompile_component(bytes))?;
        // SAFETY: `artifact` is output of `Engine::precompile_component` from
        // this program (fresh, or cached under a matching hash), never bytes
        // a user supplied.
        let component = unsafe { Component::deserialize(&self.engine, &artifact) }
            .map_err(|e| ModuleError::Invalid(format!("{e:#}")))?;
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(&self.engine).map(|(name, _)| name.to_string()).collect();
        let exports: Vec<String> = ty.exports(&self.engine).map(|(name, _)| name.to_string()).collect();
        let refused: Vec<String> = imports.iter().filter(|i| !wasi::import_allowed(i)).cloned().collect();
        if !refused.is_empty() {
            return Err(ModuleError::UnsupportedImports(refused));
        }
        let instance_pre = self
            .component_linker
            .instantiate_pre(&component)
            .map_err(|e| ModuleError::ImportMismatch(format!("{e:#}")))?;
        if exports.iter().any(|e| e.starts_with("wasi:cli/run@")) {
            let pre =
                wasmtime_wasi::p2::bindings::CommandPre::new(instance_pre).map_err(|e| ModuleError::WrongWorld {
                    exports: exports.clone(),
                    detail: format!("{e:#}"),
                })?;
            return Ok((
                Pre::CommandComponent(pre),
                ModuleKind::Command,
                imports,
                exports,
                from_cache,
            ));
        }
        let pre = bindings::StepPre::new(instance_pre).map_err(|e| ModuleError::WrongWorld {
            exports: exports.clone(),
            detail: format!("{e:#}"),
        })?;
        Ok((Pre::Step(pre), ModuleKind::Step, imports, exports, from_cache))
    }

    #[allow(clippy::type_complexity)]
    fn load_core(
        &self,
        bytes: &[u8],
        digest_hex: &str,
    ) -> Result<(Pre, ModuleKind, Vec<String>, Vec<String>, bool), ModuleError> {
        let (artifact, from_cache) = self.compiled(digest_hex, || self.engine.precompile_module(bytes))?;
        // SAFETY: as for components: only this program's own artifacts.
        let module = unsafe { wasmtime::Module::deserialize(&self.engine, &artifact) }
            .map_err(|e| ModuleError::Invalid(format!("{e:#}")))?;
        let imports: Vec<String> = module
            .imports()
            .map(|i| format!("{}::{}", i.module(), i.name()))
            .collect();
        let exports: Vec<String> = module.exports().map(|e| e.name().to_string()).collect();
        let refused: Vec<String> = imports
            .iter()
            .filter(|i| !i.starts_with("wasi_snapshot_preview1::"))
            .cloned()
            .collect();
        if !refused.is_empty() {
            return Err(ModuleError::UnsupportedImports(refused));
        }
        let has_start = module
            .exports()
            .any(|e| e.name() == "_start" && matches!(e.ty(), ExternType::Func(_)));
        if !has_start {
            return Err(ModuleError::NoStart { exports });
        }
        let pre = self
            .core_linker
            .instantiate_pre(&module)
            .map_err(|e| ModuleError::ImportMismatch(format!("{e:#}")))?;
        Ok((Pre::CommandCore(pre), ModuleKind::Command, imports, exports, from_cache))
    }
}

/// Rejects what is not a binary WebAssembly module or component, with a
/// message saying what it looks like instead.
fn check_header(bytes: &[u8]) -> Result<(), ModuleError> {
    if bytes.is_empty() {
        return Err(ModuleError::NotWasm("the file is empty".into()));
    }
    if !bytes.starts_with(b"\0asm") {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]);
        let trimmed = text.trim_start();
        if trimmed.starts_with("(module") || trimmed.starts_with("(component") {
            return Err(ModuleError::NotWasm(
                "this is WebAssembly text (WAT); upload the binary form (e.g. `wasm-tools parse`)".into(),
            ));
        }
        return Err(ModuleError::NotWasm(
            "it does not start with the `\\0asm` magic number".into(),
        ));
    }
    if bytes.len() < 8 {
        return Err(ModuleError::NotWasm(
            "truncated: the 8-byte header is incomplete".into(),
        ));
    }
    if !is_component(bytes) && bytes[4..8] != CORE_VERSION {
        return Err(ModuleError::NotWasm(format!(
            "unsupported binary version {:02x?} (expected a core module or a component)",
            &bytes[4..8]
        )));
    }
    Ok(())
}

/// Version and layer of a core module in the 8-byte preamble.
const CORE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
/// Version 0x0d, layer 1: a component (component model binary format).
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];

fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[4..8] == COMPONENT_VERSION
}

/// The parser's message, with a hint when the binary looks cut short.
fn invalid_message(error: &wasmtime::Error) -> String {
    let message = format!("{error:#}");
    if message.contains("unexpected end") || message.contains("out of bounds") {
        format!("{message} (is the file truncated?)")
    } else {
        message
    }
}

/// The name a workflow component's `ctx` import starts with.
const WORKFLOW_IMPORT: &[u8] = b"sandstep:workflow/ctx@";

/// Compiled code for `bytes` from `cache`, or freshly compiled (and cached).
fn compiled_in(
    cache: &Option<super::cache::ArtifactCache>,
    digest_hex: &str,
    precompile: impl FnOnce() -> wasmtime::Result<Vec<u8>>,
) -> Result<(Vec<u8>, bool), ModuleError> {
    let compile = || precompile().map_err(|e| ModuleError::Invalid(invalid_message(&e)));
    match cache {
        Some(cache) => cache.get_or_compile(digest_hex, compile).map(|a| (a.bytes, a.cached)),
        None => compile().map(|artifact| (artifact, false)),
    }
}
