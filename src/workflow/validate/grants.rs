//! `grants:` of a step (or `defaults`): hosts, files and environment, each
//! checked for form and against what the server allows.

use super::paths::compile_value;
use super::Errors;
use crate::grants::{check_dir_name, Grants, HostPattern};
use crate::limits::Caps;
use crate::workflow::definition::GrantsDef;
use crate::workflow::template::TemplateValue;

/// A step's grants and its environment (templates, rendered per attempt),
/// with where the environment's templates were written.
#[derive(Debug, Clone, Default)]
pub(super) struct Compiled {
    pub grants: Grants,
    /// Shared by every step that takes the defaults.
    pub env: std::sync::Arc<Vec<(String, TemplateValue)>>,
    /// `defaults.grants` or `steps.<id>.grants`.
    pub location: String,
}

/// Compiles `def`, located at `location` (`steps.fetch.grants`).
pub(super) fn compile_grants(def: &GrantsDef, location: &str, caps: &Caps, errors: &mut Errors) -> Compiled {
    let mut grants = Grants::default();
    for (i, text) in def.http.iter().enumerate() {
        let at = format!("{location}.http[{i}]");
        match HostPattern::parse(text) {
            Ok(pattern) => {
                if let Some(refusal) = caps.grants.refuse_http(&pattern) {
                    errors.add(at, refusal);
                }
                if !grants.http.contains(&pattern) {
                    grants.http.push(pattern);
                }
            }
            Err(message) => errors.add(at, message),
        }
    }
    if let Some(files) = &def.files {
        if let Some(size) = files.scratch {
            if size == 0 {
                errors.add(format!("{location}.files.scratch"), "must be larger than zero");
            } else if size > caps.scratch_bytes {
                errors.add(
                    format!("{location}.files.scratch"),
                    format!(
                        "scratch {} is above the cap of {}",
                        crate::units::format_size(size),
                        crate::units::format_size(caps.scratch_bytes)
                    ),
                );
            }
            grants.scratch = Some(size);
        }
        for (i, name) in files.read.iter().enumerate() {
            let at = format!("{location}.files.read[{i}]");
            match check_dir_name(name) {
                Err(message) => errors.add(at, message),
                Ok(()) => {
                    if let Some(refusal) = caps.grants.refuse_read(name) {
                        errors.add(at, refusal);
                    }
                    if !grants.read.contains(name) {
                        grants.read.push(name.clone());
                    }
                }
            }
        }
    }
    let mut env = Vec::new();
    for (name, value) in &def.env {
        let at = format!("{location}.env.{name}");
        let name_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name_ok {
            errors.add(
                at,
                "an environment variable name is letters, digits and _, not starting with a digit",
            );
            continue;
        }
        if !value.is_string() {
            errors.add(
                at,
                format!(
                    "an environment value is a string (a template), got {}",
                    crate::workflow::template::kind_of(value)
                ),
            );
            continue;
        }
        if let Some(compiled) = compile_value(value, &at, errors) {
            env.push((name.clone(), compiled));
        }
    }
    Compiled {
        grants,
        env: std::sync::Arc::new(env),
        location: location.to_string(),
    }
}
