//! `sandstep module add|list`: the local module store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use crate::modules::DEFAULT_TAG;
use crate::store::Db;

#[derive(Debug, Subcommand)]
pub enum ModuleCommand {
    /// Validate, compile and store a module under name:tag.
    Add {
        /// The .wasm file.
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = DEFAULT_TAG)]
        tag: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Upload a module to a server (as `module add` does locally).
    Push {
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = DEFAULT_TAG)]
        tag: String,
        #[command(flatten)]
        server: super::client::ServerArgs,
    },
    /// List stored modules.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(home: &super::local::Home, command: ModuleCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModuleCommand::Push {
            file,
            name,
            tag,
            server,
        } => super::client::push(file, name, tag, server).await,
        ModuleCommand::Add { file, name, tag, json } => {
            // Check the name first: a typo should not cost a compile.
            crate::modules::check_name(&name)?;
            crate::modules::check_tag(&tag)?;
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let sandbox = super::local::sandbox(&home.data_dir)?;
            let spinner = super::progress::spinner(format!(
                "compiling {} ({})",
                file.display(),
                crate::units::format_size(bytes.len() as u64)
            ));
            let module = sandbox
                .load(&bytes)
                .with_context(|| format!("{} was rejected", file.display()))?;
            drop(spinner);
            let db = Db::connect(&home.store).await?;
            let added = db.put_module(&bytes, &module.info, &name, &tag).await?;
            if json {
                println!("{}", serde_json::to_string(&added)?);
            } else {
                println!(
                    "{}:{} {} ({}, {} bytes, {} in {:.1?})",
                    added.name,
                    added.tag,
                    added.digest,
                    added.kind,
                    added.size,
                    if module.from_cache {
                        "loaded from the cache"
                    } else {
                        "compiled"
                    },
                    module.load_time
                );
                if let Some(previous) = &added.previous {
                    eprintln!("moved {}:{} from {previous}", added.name, added.tag);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ModuleCommand::List { json } => {
            let modules = match Db::open_existing(&home.store).await? {
                Some(db) => db.list_modules().await?,
                None => Vec::new(),
            };
            if json {
                println!("{}", serde_json::to_string(&modules)?);
            } else {
                for m in modules {
                    println!("{}:{}\t{}\t{}\t{}", m.name, m.tag, m.kind, m.size, m.digest);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
