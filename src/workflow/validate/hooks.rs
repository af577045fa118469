//! Webhook triggers: `webhook: NAME` with the secret and the signature
//! scheme that authenticate `POST /hooks/NAME`, the request headers its
//! input may read, and whether it starts a run or posts an event.

use std::time::Duration;

use super::paths::{check_paths, compile_value, Known, Situational};
use super::step::check_topic;
use super::Errors;
use crate::limits::Caps;
use crate::workflow::definition::TriggerDef;
use crate::workflow::template::TemplateValue;

/// The longest hook name.
pub const MAX_HOOK_CHARS: usize = 100;
/// `stripe`'s default tolerance for the signed timestamp's age.
const STRIPE_TOLERANCE: Duration = Duration::from_secs(300);

/// A compiled webhook trigger.
#[derive(Debug)]
pub struct Hook {
    pub name: String,
    /// The secret the signature is computed with (none for `none`).
    pub secret: Option<String>,
    pub signature: Signature,
    /// The request headers `input` may read, as the definition spells them.
    pub headers: Vec<String>,
    /// Post the body as an event of this topic instead of starting a run.
    pub event: Option<String>,
    /// Renders the run's input over `request` (default: the body).
    pub input: Option<TemplateValue>,
}

/// How a webhook's sender signs its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    Github,
    /// `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`,
    /// refused when `t` is further than `tolerance` from now.
    Stripe { tolerance: Duration },
    /// The HMAC-SHA256 of the body, hex or base64, in `header`.
    HmacSha256 { header: String },
    /// Not signed: only with `--allow-unsigned-webhooks`.
    None,
}

impl Signature {
    /// The scheme's name as a definition writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Signature::Github => "github",
            Signature::Stripe { .. } => "stripe",
            Signature::HmacSha256 { .. } => "hmac-sha256",
            Signature::None => "none",
        }
    }
}

/// Checks a hook name: 1 to 100 letters, digits, `-`, `_` or `.`.
pub fn check_hook_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_HOOK_CHARS
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "a hook name is 1 to {MAX_HOOK_CHARS} letters, digits, '-', '_' or '.'; {name:?} is not"
        ))
    }
}

/// Compiles `triggers[i]`, a `webhook:` trigger named `name`.
pub(super) fn compile_hook(
    name: &str,
    def: &TriggerDef,
    at: &dyn Fn(&str) -> String,
    known: &Known,
    caps: &Caps,
    errors: &mut Errors,
) -> Option<Hook> {
    let before = errors.0.len();
    if let Err(message) = check_hook_name(name) {
        errors.add(at("webhook"), message);
    }
    super::triggers::schedule_fields_only_for_schedules(def, at, errors);
    let signature = match def.signature.as_deref() {
        None => {
            errors.add(
                at("signature"),
                "a webhook needs `signature`: github, stripe, hmac-sha256, or none",
            );
            None
        }
        Some("github") => Some(Signature::Github),
        Some("stripe") => Some(Signature::Stripe {
            tolerance: def.tolerance.unwrap_or(STRIPE_TOLERANCE),
        }),
        Some("hmac-sha256") => match &def.header {
            Some(header) if http::HeaderName::from_bytes(header.as_bytes()).is_ok() => {
                Some(Signature::HmacSha256 { header: header.clone() })
            }
            Some(header) => {
                errors.add(at("header"), format!("{header:?} is not a valid header name"));
                None
            }
            None => {
                errors.add(
                    at("header"),
                    "`signature: hmac-sha256` needs `header`: the header carrying the signature",
                );
                None
            }
        },
        Some("none") => {
            if !(caps.grants.unsigned_webhooks || caps.grants.unchecked) {
                errors.add(
                    at("signature"),
                    "unsigned webhooks are refused: the server runs without --allow-unsigned-webhooks",
                );
            }
            Some(Signature::None)
        }
        Some(other) => {
            errors.add(
                at("signature"),
                format!("unknown signature {other:?} (github, stripe, hmac-sha256, or none)"),
            );
            None
        }
    };
    if def.header.is_some() && !matches!(signature, Some(Signature::HmacSha256 { .. }) | None) {
        errors.add(at("header"), "`header` applies to `signature: hmac-sha256` only");
    }
    if def.tolerance.is_some() && !matches!(signature, Some(Signature::Stripe { .. }) | None) {
        errors.add(at("tolerance"), "`tolerance` applies to `signature: stripe` only");
    }
    match (&signature, &def.secret) {
        (Some(Signature::None), Some(_)) => {
            errors.add(at("secret"), "an unsigned webhook (`signature: none`) has no secret")
        }
        (Some(Signature::None), None) | (None, _) => {}
        (Some(_), None) => errors.add(
            at("secret"),
            "a signed webhook needs `secret`: the name of a secret in the secrets store",
        ),
        (Some(_), Some(secret)) => {
            if let Err(message) = crate::service::secrets::check_name(secret) {
                errors.add(at("secret"), message);
            }
        }
    }
    for (n, header) in def.headers.iter().enumerate() {
        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            errors.add(
                at(&format!("headers[{n}]")),
                format!("{header:?} is not a valid header name"),
            );
        }
    }
    if let Some(topic) = &def.event {
        if let Err(message) = check_topic(topic) {
            errors.add(at("event"), message);
        }
        if def.input.is_some() {
            errors.add(
                at("input"),
                "a webhook that posts an event has no `input`: the event's data is the body",
            );
        }
    }
    let input = def
        .input
        .as_ref()
        .and_then(|value| compile_value(value, &at("input"), errors));
    if let Some(input) = &input {
        let request = Situational {
            request: Some(&def.headers),
            ..Situational::default()
        };
        for template in input.templates() {
            check_paths(template, &at("input"), None, request, known, errors);
        }
    }
    (errors.0.len() == before).then(|| Hook {
        name: name.to_string(),
        secret: def.secret.clone(),
        signature: signature.expect("checked above"),
        headers: def.headers.clone(),
        event: def.event.clone(),
        input,
    })
}
