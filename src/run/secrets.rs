//! Secrets for templates (`{{ secrets.KEY }}`), and their redaction from
//! everything the engine records: events, logs, errors and outputs.
//!
//! A guest or template rarely prints a secret only as it is: it puts it in
//! a JSON text (quotes, backslashes, control characters escaped; with
//! `\uXXXX` for non-ASCII as Python and others do) or in a URL (percent-
//! or form-encoded). Every such form of every secret is redacted, the
//! longest first, so a secret that contains another is never half shown.

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
    /// Every form of every value to redact, longest first.
    forms: Vec<String>,
}

impl Secrets {
    pub fn new(values: BTreeMap<String, String>) -> Self {
        let mut secrets = Secrets {
            values,
            forms: Vec::new(),
        };
        secrets.index();
        secrets
    }

    /// Secrets from `SANDSTEP_SECRET_*` variables.
    pub fn from_env() -> Self {
        Secrets::new(
            std::env::vars()
                .filter_map(|(k, v)| k.strip_prefix(ENV_PREFIX).map(|key| (key.to_string(), v)))
                .collect(),
        )
    }

    /// Recomputes the forms to redact after the values changed.
    fn index(&mut self) {
        let mut forms: Vec<String> = self
            .values
            .values()
            .filter(|v| !v.is_empty())
            .flat_map(|v| forms_of(v))
            .collect();
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        self.forms = forms;
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
            self.index();
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
        self.index();
        Ok(())
    }

    /// The values by name.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
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

    /// `text` with every form of every secret value replaced by
    /// [`REDACTED`], longest first.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for form in &self.forms {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), REDACTED);
            }
        }
        out
    }

    fn leaks(&self, text: &str) -> bool {
        self.forms.iter().any(|f| text.contains(f.as_str()))
    }

    /// Redacts every string inside a JSON value, object keys included.
    pub fn redact_value(&self, value: &mut Value) {
        match value {
            Value::String(s) if self.leaks(s) => *s = self.redact(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Object(map) => {
                if map.keys().any(|k| self.leaks(k)) {
                    let entries = std::mem::take(map);
                    for (key, value) in entries {
                        map.insert(self.redact(&key), value);
                    }
                }
                map.values_mut().for_each(|v| self.redact_value(v));
            }
            _ => {}
        }
    }
}

/// The forms a value takes in text: as it is; JSON-escaped inside a string
/// (as serde_json and JavaScript write it, and with `\uXXXX` for non-ASCII
/// as Python writes it); percent-encoded (three common sets of characters
/// left as they are); form-encoded (`+` for space).
fn forms_of(value: &str) -> Vec<String> {
    let json = serde_json::to_string(value).expect("a string serializes");
    let json = json[1..json.len() - 1].to_string();
    let mut ascii = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            ascii.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                ascii.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    // Percent-encoded as RFC 3986 says, as Python's `quote` does (keeping
    // `/`), and as JavaScript's `encodeURIComponent` does (keeping `!*'()`).
    let percent = |keep: &[u8]| -> String {
        value
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                b if keep.contains(&b) => (b as char).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect()
    };
    let form: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
    let mut forms = vec![
        value.to_string(),
        json,
        ascii,
        percent(b""),
        percent(b"/"),
        percent(b"!*'()"),
        form,
    ];
    forms.retain(|f| !f.is_empty());
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[(&str, &str)]) -> Secrets {
        Secrets::new(values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn every_form_is_redacted() {
        let s = secrets(&[("K", "p\"a\\ss wörd/1")]);
        for text in [
            r#"raw p"a\ss wörd/1 end"#,
            r#"{"key":"p\"a\\ss wörd/1"}"#,
            r#"{"key": "p\"a\\ss w\u00f6rd/1"}"#,
            "url ?k=p%22a%5Css%20w%C3%B6rd%2F1&x",
            "form k=p%22a%5Css+w%C3%B6rd%2F1",
        ] {
            let redacted = s.redact(text);
            assert!(redacted.contains(REDACTED), "{text} -> {redacted}");
            for form in &s.forms {
                assert!(!redacted.contains(form.as_str()), "{text} -> {redacted}");
            }
        }
    }

    #[test]
    fn the_longer_of_overlapping_secrets_goes_first() {
        let s = secrets(&[("SHORT", "abcd1234"), ("LONG", "abcd1234-extended")]);
        assert_eq!(s.redact("x abcd1234-extended y abcd1234"), "x [redacted] y [redacted]");
    }

    #[test]
    fn object_keys_are_redacted_too() {
        let s = secrets(&[("K", "s3cr3t-key")]);
        let mut value = serde_json::json!({ "s3cr3t-key": { "nested": ["s3cr3t-key"] } });
        s.redact_value(&mut value);
        assert_eq!(value, serde_json::json!({ "[redacted]": { "nested": ["[redacted]"] } }));
    }

    proptest::proptest! {
        /// Secrets drawn from every character class (letters, quotes,
        /// backslashes, control characters, spaces, URL delimiters,
        /// non-ASCII, astral) leak in none of their forms, wherever they
        /// stand in a text.
        #[test]
        fn no_form_of_any_secret_leaks(
            secret in "[a-zA-Z0-9\"\\\\\\x00-\\x1f \t%+/&=?#é中😀]{8,24}",
            before in "[a-z \"{:]{0,8}",
            after in "[a-z \"}]{0,8}",
        ) {
            let s = secrets(&[("K", &secret)]);
            for form in forms_of(&secret) {
                let text = format!("{before}{form}{after}");
                let redacted = s.redact(&text);
                for any in &s.forms {
                    proptest::prop_assert!(!redacted.contains(any.as_str()), "{:?} -> {:?}", text, redacted);
                }
            }
        }
    }
}
