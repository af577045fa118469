//! Secrets for templates (`{{ secrets.KEY }}`), and their redaction from
//! everything the engine records: events, logs, errors and outputs.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// Shown in place of a secret's value.
pub const REDACTED: &str = "[redacted]";

/// The environment variable prefix that makes a secret: `SANDSTEP_SECRET_SMTP_KEY`
/// is `secrets.SMTP_KEY`.
pub const ENV_PREFIX: &str = "SANDSTEP_SECRET_";

#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, String>,
}

impl Secrets {
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Secrets { values }
    }

    /// Secrets from `SANDSTEP_SECRET_*` variables.
    pub fn from_env() -> Self {
        let values = std::env::vars()
            .filter_map(|(k, v)| k.strip_prefix(ENV_PREFIX).map(|key| (key.to_string(), v)))
            .collect();
        Secrets { values }
    }

    /// Adds secrets from a file: a JSON object of strings, or `KEY=VALUE`
    /// lines (blank lines and `#` comments ignored).
    pub fn load_file(&mut self, path: &Path) -> Result<(), String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read secrets file {}: {e}", path.display()))?;
        if text.trim_start().starts_with('{') {
            let map: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| {
                format!(
                    "secrets file {}: expected a JSON object of strings: {e}",
                    path.display()
                )
            })?;
            self.values.extend(map);
            return Ok(());
        }
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once('=').ok_or_else(|| {
                format!(
                    "secrets file {} line {}: expected KEY=VALUE",
                    path.display(),
                    number + 1
                )
            })?;
            self.values.insert(key.trim().to_string(), value.trim().to_string());
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The secrets as a JSON object, for template scopes.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.values
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    }

    /// `text` with every secret value replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for value in self.values.values() {
            if !value.is_empty() && out.contains(value.as_str()) {
                out = out.replace(value.as_str(), REDACTED);
            }
        }
        out
    }

    /// Redacts every string inside a JSON value.
    pub fn redact_value(&self, value: &mut Value) {
        match value {
            Value::String(s) if self.values.values().any(|v| !v.is_empty() && s.contains(v.as_str())) => {
                *s = self.redact(s);
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.redact_value(v)),
            _ => {}
        }
    }
}
