//! `sandstep validate FILE`: every error of a definition at once, located.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::EXIT_FAILED;
use crate::limits::Caps;
use crate::workflow::ModuleCatalog;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The workflow definition (YAML or JSON).
    pub file: PathBuf,
    /// A module file for a reference: NAME=PATH (repeatable). Checks module references.
    #[arg(long = "module", value_name = "NAME=PATH")]
    pub modules: Vec<String>,
    /// Check that every module reference exists (in --module files or the local store).
    #[arg(long)]
    pub check_modules: bool,
}

pub async fn run(home: &super::local::Home, args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let source = super::local::read_definition(&args.file)?;
    let catalog = if args.check_modules || !args.modules.is_empty() {
        Some(super::local::modules(home, &args.modules).await?.catalog().await?)
    } else {
        None
    };
    match crate::workflow::load(
        &source,
        &Caps::default(),
        catalog.as_ref().map(|c| c as &dyn ModuleCatalog),
    ) {
        Ok(workflow) => {
            println!(
                "ok: workflow {} is valid ({} steps)",
                workflow.name,
                workflow.steps.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("{}: {error}", args.file.display());
            }
            eprintln!(
                "{} error{} found",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            Ok(ExitCode::from(EXIT_FAILED))
        }
    }
}
