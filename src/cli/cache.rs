//! `sandstep cache clear [--module NAME]`: drops step result cache entries
//! on the server when `SANDSTEP_URL` is set, else in the local data
//! directory's store.

use std::process::ExitCode;

use clap::Subcommand;

use super::client::{print, Client, ServerArgs};
use crate::store::Db;

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Drop the cached outputs of a module (a name or a sha256: digest), or all.
    Clear {
        #[arg(long)]
        module: Option<String>,
    },
}

pub async fn run(home: &super::local::Home, command: CacheCommand) -> anyhow::Result<ExitCode> {
    let CacheCommand::Clear { module } = command;
    if module.as_deref().is_some_and(str::is_empty) {
        anyhow::bail!("--module must be a name or a sha256: digest");
    }
    match std::env::var("SANDSTEP_URL").ok().filter(|u| !u.is_empty()) {
        Some(server) => {
            let client = Client::new(&ServerArgs { server });
            let mut request = client.request(reqwest::Method::DELETE, "/v1/cache");
            if let Some(module) = &module {
                request = request.query(&[("module", module)]);
            }
            print(&client.send(request).await?);
        }
        None => {
            let deleted = match Db::open_existing(&home.store).await? {
                Some(db) => db.cache_clear(module.as_deref()).await?,
                None => 0,
            };
            print(&serde_json::json!({ "deleted": deleted }));
        }
    }
    Ok(ExitCode::SUCCESS)
}
