//! Small build helper for the guest examples, so that building them needs no
//! `cargo install` of wit-bindgen-cli or wasm-tools (each takes ~20 minutes
//! to compile on two cores):
//!
//! - `guest-tools c-bindings WIT_DIR WORLD OUT_DIR` writes the C bindings for
//!   a world (what `wit-bindgen c --world WORLD WIT_DIR` writes).
//! - `guest-tools component-new CORE_WASM OUT_WASM` turns a core module that
//!   carries its component type (the bindings' `*_component_type.o`) and
//!   imports WASI preview 1 into a component, with the reactor adapter (what
//!   `wasm-tools component new --adapt` does).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;

const USAGE: &str =
    "usage:\n  guest-tools c-bindings WIT_DIR WORLD OUT_DIR\n  guest-tools component-new CORE_WASM OUT_WASM";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["c-bindings", wit, world, out] => c_bindings(Path::new(wit), world, Path::new(out)),
        ["component-new", core, out] => component_new(Path::new(core), Path::new(out)),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(error) = result {
        eprintln!("guest-tools: {error:#}");
        std::process::exit(1);
    }
}

fn c_bindings(wit: &Path, world: &str, out: &Path) -> Result<()> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("reading WIT from {}", wit.display()))?;
    let world = resolve.select_world(&[package], Some(world))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, contents) in files.iter() {
        let path: PathBuf = out.join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn component_new(core: &Path, out: &Path) -> Result<()> {
    let bytes = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    if !bytes.starts_with(b"\0asm\x01\0\0\0") {
        bail!("{} is not a core WebAssembly module", core.display());
    }
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&bytes)?
        .adapter("wasi_snapshot_preview1", WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)?
        .encode()
        .with_context(|| format!("making a component of {}", core.display()))?;
    std::fs::write(out, component).with_context(|| format!("writing {}", out.display()))
}
