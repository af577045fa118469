//! Reading a run bundle (the zip `GET /v1/runs/{id}/bundle` answers): each
//! run's manifest and events, and the modules by digest, each checked
//! against its digest when it is read.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::run::Event;
use crate::service::bundle::BUNDLE_FORMAT;

/// A bundle as read: its runs (the root first) and its modules.
pub struct Bundle {
    pub runs: Vec<BundledRun>,
    /// Module bytes by digest (`sha256:<hex>`), each matching its digest.
    pub modules: HashMap<String, Vec<u8>>,
}

/// One run of a bundle.
pub struct BundledRun {
    pub manifest: Manifest,
    /// The manifest as written, every field.
    pub raw_manifest: Value,
    pub events: Vec<Event>,
    /// Each event's line of `events.jsonl`: its stored JSON, byte for byte.
    pub lines: Vec<String>,
    /// Each event's chain hash from `hashes.txt` (none: recorded before chains).
    pub hashes: Vec<Option<String>>,
}

/// What `manifest.json` says of a run (the fields replay reads).
#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub run: RunInfo,
    /// The workflow's definition at the run's version, as applied.
    pub definition: String,
    /// Module digests by the reference the definition names them with.
    #[serde(default)]
    pub modules: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct RunInfo {
    pub id: String,
    pub workflow: String,
    pub version: i64,
    pub status: String,
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub error: Option<String>,
}

/// The most a bundle may unpack to: 4 GiB, far above what a server writes.
const MAX_UNPACKED: u64 = 4 << 30;

impl Bundle {
    /// Reads the bundle at `path`; every problem names the file and entry.
    pub fn read(path: &Path) -> anyhow::Result<Bundle> {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip archive", path.display()))?;
        let mut texts = BTreeMap::new();
        let mut modules = HashMap::new();
        let mut unpacked = 0u64;
        for index in 0..zip.len() {
            let mut entry = zip.by_index(index)?;
            let name = entry.name()?.to_string();
            unpacked += entry.size();
            if unpacked > MAX_UNPACKED {
                bail!("{}: unpacks to more than 4 GiB", path.display());
            }
            let mut bytes = Vec::with_capacity(entry.size().min(64 << 20) as usize);
            entry
                .read_to_end(&mut bytes)
                .with_context(|| format!("cannot read {name} from {}", path.display()))?;
            if let Some(digest) = name.strip_prefix("modules/").and_then(|n| n.strip_suffix(".wasm")) {
                let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
                if actual != digest {
                    bail!("{name}: its bytes have digest {actual}, not the digest it is named by");
                }
                modules.insert(digest.to_string(), bytes);
            } else if name.ends_with("manifest.json") || name.ends_with("events.jsonl") || name.ends_with("hashes.txt")
            {
                let text = String::from_utf8(bytes).with_context(|| format!("{name} is not UTF-8"))?;
                texts.insert(name, text);
            }
        }
        let mut runs = Vec::new();
        let prefixes: Vec<String> = texts
            .keys()
            .filter_map(|n| n.strip_suffix("manifest.json").map(str::to_string))
            .collect();
        if !prefixes.iter().any(String::is_empty) {
            bail!("{} has no manifest.json: it is not a run bundle", path.display());
        }
        for prefix in prefixes {
            let manifest_name = format!("{prefix}manifest.json");
            let raw_manifest: Value =
                serde_json::from_str(&texts[&manifest_name]).with_context(|| format!("{manifest_name} is not JSON"))?;
            let manifest: Manifest = serde_json::from_value(raw_manifest.clone())
                .with_context(|| format!("{manifest_name} is not a run manifest"))?;
            if manifest.format != BUNDLE_FORMAT {
                bail!(
                    "{manifest_name}: bundle format {} is not the format {BUNDLE_FORMAT} this sandstep reads",
                    manifest.format
                );
            }
            let events_name = format!("{prefix}events.jsonl");
            let text = texts
                .get(&events_name)
                .with_context(|| format!("the bundle has {manifest_name} but no {events_name}"))?;
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            let events = lines
                .iter()
                .enumerate()
                .map(|(i, line)| {
                    serde_json::from_str(line).with_context(|| format!("{events_name} line {}: not an event", i + 1))
                })
                .collect::<anyhow::Result<Vec<Event>>>()?;
            // Bundles written before chains have no hashes.txt.
            let mut hashes: Vec<Option<String>> = texts
                .get(&format!("{prefix}hashes.txt"))
                .map(|text| text.lines().map(|h| (!h.is_empty()).then(|| h.to_string())).collect())
                .unwrap_or_default();
            hashes.resize(lines.len(), None);
            let run = BundledRun {
                manifest,
                raw_manifest,
                events,
                lines,
                hashes,
            };
            if prefix.is_empty() {
                runs.insert(0, run);
            } else {
                runs.push(run);
            }
        }
        Ok(Bundle { runs, modules })
    }
}
