//! Small build helper for the guest examples, so that building them needs no
//! `cargo install` of wit-bindgen-cli or wasm-tools (each takes ~20 minutes
//! to compile on two cores):
//!
//! - `guest-tools c-bindings WIT_DIR WORLD OUT_DIR` writes the C bindings for
//!   a world (what `wit-bindgen c --world WORLD WIT_DIR` writes).
//! - `guest-tools component-new CORE_WASM OUT_WASM [WIT_DIR WORLD]` turns a
//!   core module into a component (what `wasm-tools component new --adapt`
//!   does), adapting WASI preview-1 imports with the reactor adapter. The
//!   module carries its component type (the C bindings' `*_component_type.o`
//!   puts it there), or WIT_DIR and WORLD give it (what `wasm-tools component
//!   embed` does first).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;

const USAGE: &str = "usage:\n  guest-tools c-bindings WIT_DIR WORLD OUT_DIR\n  guest-tools component-new CORE_WASM OUT_WASM [WIT_DIR WORLD]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["c-bindings", wit, world, out] => c_bindings(Path::new(wit), world, Path::new(out)),
        ["component-new", core, out] => component_new(Path::new(core), Path::new(out), None),
        ["component-new", core, out, wit, world] => {
            component_new(Path::new(core), Path::new(out), Some((Path::new(wit), world)))
        }
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

fn world(wit: &Path, world: &str) -> Result<(wit_parser::Resolve, wit_parser::WorldId)> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("reading WIT from {}", wit.display()))?;
    let world = resolve.select_world(&[package], Some(world))?;
    Ok((resolve, world))
}

fn c_bindings(wit: &Path, world_name: &str, out: &Path) -> Result<()> {
    let (mut resolve, world) = world(wit, world_name)?;
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

fn component_new(core: &Path, out: &Path, embed: Option<(&Path, &str)>) -> Result<()> {
    let mut bytes = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    if !bytes.starts_with(b"\0asm\x01\0\0\0") {
        bail!("{} is not a core WebAssembly module", core.display());
    }
    if let Some((wit, world_name)) = embed {
        let (resolve, world) = world(wit, world_name)?;
        wit_component::embed_component_metadata(
            &mut bytes,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
            false,
        )?;
    }
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&bytes)?
        .adapter("wasi_snapshot_preview1", WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)?
        .encode()
        .with_context(|| format!("making a component of {}", core.display()))?;
    std::fs::write(out, component).with_context(|| format!("writing {}", out.display()))
}
