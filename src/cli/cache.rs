//! `sandstep cache clear [--module NAME]`: drops step result cache entries
//! on the server when `SANDSTEP_URL` is set, else in the local data
//! directory's store, unless a server serves that store: it holds the
//! entries it uses in memory and must be the one to clear them.

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
                Some(db) => {
                    refuse_when_served(&db).await?;
                    db.cache_clear(module.as_deref()).await?
                }
                None => 0,
            };
            print(&serde_json::json!({ "deleted": deleted }));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses to clear a store a live server serves (a node whose lease has
/// not ended), naming the server to clear through.
async fn refuse_when_served(db: &Db) -> anyhow::Result<()> {
    let nodes = db.live_nodes().await?;
    let Some(node) = nodes.first() else {
        return Ok(());
    };
    match &node.listen {
        Some(listen) => anyhow::bail!(
            "a server is serving this data directory (node {}, listening on {listen}); \
             clear through it: SANDSTEP_URL=http://{listen} sandstep cache clear",
            node.id
        ),
        None => anyhow::bail!(
            "a server is serving this data directory (node {}); clear through it with SANDSTEP_URL set",
            node.id
        ),
    }
}
