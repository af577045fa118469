//! `sandstep workflow apply FILE [--upgrade-running]` and `sandstep
//! workflow check FILE`: a new version of a workflow on a server, and
//! whether the runs in flight would move to it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{json, Value};

use super::client::{print, Client, ServerArgs};

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Create a new version of the workflow in FILE on the server.
    Apply {
        file: PathBuf,
        /// Then move every unfinished run that fits the version to it,
        /// and list the others with the first difference.
        #[arg(long)]
        upgrade_running: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The dry run of an upgrade: whether each unfinished run of the
    /// workflow would move to the definition in FILE (not stored), or the
    /// first difference. Exits 1 when a run would not move.
    Check {
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub async fn workflow(command: WorkflowCommand) -> anyhow::Result<ExitCode> {
    match command {
        WorkflowCommand::Apply {
            file,
            upgrade_running,
            server,
        } => {
            let client = Client::new(&server);
            let definition = Definition::read(&file)?;
            let path = format!("/v1/workflows/{}", definition.name);
            let mut applied = client
                .send(definition.body(&client, reqwest::Method::PUT, &path))
                .await?;
            if upgrade_running {
                let version = applied["version"].as_i64().context("the server answered no version")?;
                let (upgraded, kept) = upgrade_running_runs(&client, &definition, version).await?;
                applied["upgraded"] = json!(upgraded);
                applied["not_upgraded"] = json!(kept);
            }
            print(&applied);
            Ok(ExitCode::SUCCESS)
        }
        WorkflowCommand::Check { file, server } => {
            let client = Client::new(&server);
            let definition = Definition::read(&file)?;
            let checked = client.send(definition.check(&client)).await?;
            print(&checked);
            let all_fit = checked["runs"]
                .as_array()
                .is_some_and(|runs| runs.iter().all(|r| r["upgradable"] == true));
            Ok(if all_fit { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

/// Moves every unfinished run that fits `version` to it: the ids moved,
/// and the runs left with why.
async fn upgrade_running_runs(
    client: &Client,
    definition: &Definition,
    version: i64,
) -> anyhow::Result<(Vec<String>, Vec<Value>)> {
    let checked = client.send(definition.check(client)).await?;
    let (mut upgraded, mut kept) = (Vec::new(), Vec::new());
    for run in checked["runs"].as_array().into_iter().flatten() {
        let id = run["id"].as_str().unwrap_or_default();
        if run["version"] == version {
            continue;
        }
        if run["upgradable"] != true {
            kept.push(json!({ "id": id, "version": run["version"], "divergence": run["divergence"] }));
            continue;
        }
        let request = client
            .request(reqwest::Method::POST, &format!("/v1/runs/{id}/upgrade"))
            .json(&json!({ "version": version }));
        let response = request.send().await.context("cannot reach the server")?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            upgraded.push(id.to_string());
        } else {
            // It moved on or ended since the check: say why it stayed.
            let why = body["detail"].as_str().unwrap_or("the upgrade failed").to_string();
            kept.push(json!({ "id": id, "version": run["version"], "divergence": why }));
        }
    }
    Ok((upgraded, kept))
}

/// A definition file and the workflow it names.
struct Definition {
    name: String,
    source: String,
}

impl Definition {
    fn read(file: &Path) -> anyhow::Result<Definition> {
        let source = super::local::read_definition(file)?;
        crate::nesting::check_depth(&file.display().to_string(), &source).map_err(anyhow::Error::msg)?;
        let name = crate::workflow::definition::peek_name(&source)
            .with_context(|| format!("{} has no top-level `name`", file.display()))?;
        Ok(Definition { name, source })
    }

    fn body(&self, client: &Client, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let kind = if crate::workflow::definition::is_json(&self.source) {
            "application/json"
        } else {
            "application/yaml"
        };
        client
            .request(method, path)
            .header("content-type", kind)
            .body(self.source.clone())
    }

    fn check(&self, client: &Client) -> reqwest::RequestBuilder {
        let path = format!("/v1/workflows/{}/check", self.name);
        self.body(client, reqwest::Method::POST, &path)
    }
}
