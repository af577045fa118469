//! Receipts from the command line: `runs receipt RUN -o FILE` and `runs
//! verify RUN` against a server, and `sandstep verify RECEIPT [--key KEY]
//! [--bundle FILE.zip]`, offline: the signature, the statement, and with a
//! bundle the chain of its events and every digest the receipt names.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Args;
use serde_json::Value;

use super::client::{Client, ServerArgs};
use super::EXIT_FAILED;
use crate::replay::Bundle;
use crate::service::receipt::{sha256_hex, PREDICATE_TYPE, STATEMENT_TYPE};
use crate::signing::{Envelope, IN_TOTO};

/// `runs receipt RUN -o FILE`: the run's signed receipt, saved.
pub async fn save(server: &ServerArgs, id: &str, output: &Path) -> anyhow::Result<ExitCode> {
    let client = Client::new(server);
    let envelope = client
        .send(client.request(reqwest::Method::GET, &format!("/v1/runs/{id}/receipt")))
        .await?;
    let text = serde_json::to_string_pretty(&envelope)? + "\n";
    std::fs::write(output, text).with_context(|| format!("cannot write {}", output.display()))?;
    eprintln!("wrote {}", output.display());
    Ok(ExitCode::SUCCESS)
}

/// `runs verify RUN`: the server recomputes the run's chain.
pub async fn verify_stored(server: &ServerArgs, id: &str) -> anyhow::Result<ExitCode> {
    let client = Client::new(server);
    let checked = client
        .send(client.request(reqwest::Method::GET, &format!("/v1/runs/{id}/verify")))
        .await?;
    let events = checked["events"].as_u64().unwrap_or(0);
    if checked["ok"] == true {
        println!(
            "run {id}: {events} events, each chains; head {}",
            checked["head"].as_str().unwrap_or("")
        );
        return Ok(ExitCode::SUCCESS);
    }
    match checked["broken"].as_str() {
        Some(broken) => println!("run {id}: {broken}"),
        None => println!("run {id}: its {events} events were recorded before hash chains and carry no hash"),
    }
    Ok(ExitCode::from(EXIT_FAILED))
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A receipt, as `sandstep runs receipt` writes it (a DSSE envelope).
    pub receipt: PathBuf,
    /// The signer's public key: 64 hex digits, a PEM PUBLIC KEY, or a file
    /// holding either. Without it, the key is looked up by id in the
    /// server's GET /v1/keys (SANDSTEP_URL).
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// The run's bundle: its events must chain to the receipt's head, and
    /// its modules, definition, input and output match the receipt's digests.
    #[arg(long, value_name = "FILE.zip")]
    pub bundle: Option<PathBuf>,
}

/// `sandstep verify`: every check, each failure named; exit 1 if any.
pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(&args.receipt).with_context(|| format!("cannot read {}", args.receipt.display()))?;
    let envelope: Envelope =
        serde_json::from_str(&text).with_context(|| format!("{} is not a DSSE envelope", args.receipt.display()))?;
    if envelope.payload_type != IN_TOTO {
        bail!(
            "the envelope's payloadType is {:?}, not {IN_TOTO}",
            envelope.payload_type
        );
    }
    let keyid = envelope.signatures.first().map(|s| s.keyid.clone()).unwrap_or_default();
    let public = match &args.key {
        Some(key) => read_key(key)?,
        None => server_key(&keyid).await?,
    };
    let payload = match envelope.verify(&public) {
        Ok(payload) => payload,
        Err(message) => {
            println!("signature: {message}");
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    };
    let statement: Value = serde_json::from_slice(&payload).context("the payload is not JSON")?;
    if statement["_type"] != STATEMENT_TYPE || statement["predicateType"] != PREDICATE_TYPE {
        bail!("the payload is not a Sandstep receipt (an in-toto Statement v1 of {PREDICATE_TYPE})");
    }
    let predicate = &statement["predicate"];
    let run = &predicate["run"];
    println!(
        "signature: good, by key {keyid} (node {})",
        predicate["node"].as_str().unwrap_or("?")
    );
    println!(
        "run {} of {} v{}: {}",
        run["id"].as_str().unwrap_or("?"),
        run["workflow"].as_str().unwrap_or("?"),
        run["version"],
        run["status"].as_str().unwrap_or("?")
    );
    let failures = match &args.bundle {
        Some(path) => check_bundle(&statement, path)?,
        None => Vec::new(),
    };
    for failure in &failures {
        println!("{failure}");
    }
    if failures.is_empty() {
        if args.bundle.is_some() {
            println!("bundle: its events chain to the receipt's head and every digest matches");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(EXIT_FAILED))
    }
}

/// A public key given on the command line, or the file holding it.
fn read_key(key: &str) -> anyhow::Result<[u8; 32]> {
    let path = Path::new(key);
    let text = if path.is_file() {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {key}"))?
    } else {
        key.to_string()
    };
    crate::signing::parse_public(&text).context("--key")
}

/// The key `keyid` as the server at SANDSTEP_URL lists it.
async fn server_key(keyid: &str) -> anyhow::Result<[u8; 32]> {
    let Ok(url) = std::env::var("SANDSTEP_URL") else {
        bail!("give the signer's public key with --key (GET /v1/keys lists each node's), or set SANDSTEP_URL");
    };
    let client = Client::new(&ServerArgs { server: url });
    let keys = client.send(client.request(reqwest::Method::GET, "/v1/keys")).await?;
    let found = keys["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["keyid"] == keyid)
        .with_context(|| format!("the server lists no key {keyid}"))?;
    crate::signing::parse_public(found["public_key"].as_str().unwrap_or_default())
}

/// Every way the bundle at `path` disagrees with the receipt's statement.
fn check_bundle(statement: &Value, path: &Path) -> anyhow::Result<Vec<String>> {
    let bundle = Bundle::read(path)?;
    let root = &bundle.runs[0];
    let predicate = &statement["predicate"];
    let mut failures = Vec::new();
    if predicate["run"]["id"] != root.manifest.run.id.as_str() {
        failures.push(format!(
            "bundle: it holds run {}, the receipt is for run {}",
            root.manifest.run.id, predicate["run"]["id"]
        ));
        return Ok(failures);
    }
    // The chain, link by link, against the hashes stored beside it.
    let lines: Vec<(u64, &str, Option<&str>)> = root
        .lines
        .iter()
        .zip(&root.hashes)
        .enumerate()
        .map(|(i, (line, hash))| (i as u64 + 1, line.as_str(), hash.as_deref()))
        .collect();
    let checked = crate::run::chain::check(&root.manifest.run.id, lines);
    if let Some(broken) = &checked.broken {
        failures.push(broken.clone());
    }
    if predicate["events"] != checked.events {
        failures.push(format!(
            "events: the bundle has {}, the receipt counts {}",
            checked.events, predicate["events"]
        ));
    }
    let head = predicate["chain"]["head"].as_str();
    if checked.broken.is_none() && head.is_some() && checked.head.as_deref() != head {
        failures.push("chain: the bundle's last hash is not the receipt's head".into());
    }
    for digest in predicate["module_digests"].as_array().into_iter().flatten() {
        let digest = digest.as_str().unwrap_or_default();
        if !bundle.modules.contains_key(digest) {
            failures.push(format!("module {digest} not in bundle"));
        }
    }
    let run = &root.raw_manifest["run"];
    let output = run["output"].to_string();
    let checks = [
        (
            "definition",
            &root.manifest.definition,
            &predicate["definition"]["sha256"],
        ),
        ("input", &run["input"].to_string(), &predicate["input"]["sha256"]),
        ("output", &output, &statement["subject"][0]["digest"]["sha256"]),
    ];
    for (what, text, digest) in checks {
        if digest.as_str() != Some(sha256_hex(text).as_str()) {
            failures.push(format!("{what}: the bundle's does not have the receipt's digest"));
        }
    }
    Ok(failures)
}
