//! `sandstep secret set NAME` (the value read from stdin), `secret list`
//! and `secret delete NAME`, against a server. Values go one way: no
//! command prints one.

use std::io::Read as _;
use std::process::ExitCode;

use clap::Subcommand;

use super::client::{print, Client, ServerArgs};
use crate::service::secrets::check_name;

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set a secret from stdin (one trailing newline is dropped), e.g.
    /// `printf %s "$KEY" | sandstep secret set SMTP_KEY`.
    Set {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the stored secrets' names and update times.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove a stored secret.
    Delete {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub async fn run(command: SecretCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretCommand::Set { name, server } => {
            check_name(&name).map_err(anyhow::Error::msg)?;
            let mut value = String::new();
            std::io::stdin()
                .read_to_string(&mut value)
                .map_err(|e| anyhow::anyhow!("cannot read the secret's value from stdin: {e}"))?;
            let value = value
                .strip_suffix("\r\n")
                .or_else(|| value.strip_suffix('\n'))
                .unwrap_or(&value);
            if value.is_empty() {
                anyhow::bail!("no value on stdin: pipe the secret's value in");
            }
            let client = Client::new(&server);
            let body = serde_json::json!({ "value": value });
            client
                .send(
                    client
                        .request(reqwest::Method::PUT, &format!("/v1/secrets/{name}"))
                        .json(&body),
                )
                .await?;
            eprintln!("secret {name} set");
            Ok(ExitCode::SUCCESS)
        }
        SecretCommand::List { server } => {
            let client = Client::new(&server);
            print(&client.send(client.request(reqwest::Method::GET, "/v1/secrets")).await?);
            Ok(ExitCode::SUCCESS)
        }
        SecretCommand::Delete { name, server } => {
            check_name(&name).map_err(anyhow::Error::msg)?;
            let client = Client::new(&server);
            client
                .send(client.request(reqwest::Method::DELETE, &format!("/v1/secrets/{name}")))
                .await?;
            eprintln!("secret {name} deleted");
            Ok(ExitCode::SUCCESS)
        }
    }
}
