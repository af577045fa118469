//! Webhooks: `POST /hooks/{name}` with the sender's own body. The signature
//! is checked over the raw bytes, in constant time, before anything is
//! parsed or stored; an accepted delivery starts one run of the hook's
//! workflow (or posts one event), once per delivery id.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::HeaderMap;
use ring::hmac;
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use super::{RunError, Service};
use crate::store::triggers::HookRow;
use crate::workflow::template::Scope;
use crate::workflow::validate::{Hook, RunTrigger, Signature};

/// A hook as `GET /v1/hooks` lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HookView {
    pub name: String,
    pub workflow: String,
    /// The workflow version whose trigger this is (the latest).
    pub version: i64,
    /// `github`, `stripe`, `hmac-sha256` or `none`.
    pub signature: String,
    /// The topic it posts events to; absent when it starts runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The last accepted delivery.
    pub last_delivery: Option<DeliveryView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// When it was stored, RFC 3339.
    pub at: String,
    /// The sender's delivery id, or `sha256:` and the body's digest.
    pub delivery: String,
    /// The run it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The event it posted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

/// What an accepted delivery stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    Run(String),
    Event(String),
}

/// Why a request was refused before anything of it was parsed or stored:
/// the metric's `reason` and the answer's detail.
struct Refusal {
    reason: &'static str,
    message: String,
}

fn refuse(reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
    }
}

impl Service {
    /// Every hook of the workflows' latest versions, with its last delivery.
    pub async fn list_hooks(&self) -> Result<Vec<HookView>, RunError> {
        let mut views = Vec::new();
        for row in self.store(self.db.hooks(None).await)? {
            let (_, workflow) = self.workflow(&row.workflow, Some(row.version)).await?;
            if let Some(RunTrigger::Webhook(hook)) = workflow.triggers.get(row.idx as usize) {
                views.push(view(&row, hook));
            }
        }
        Ok(views)
    }

    /// Refuses a definition whose hooks another workflow already has.
    pub(super) async fn check_hooks(&self, name: &str, triggers: &[RunTrigger]) -> Result<(), RunError> {
        for trigger in triggers {
            if let RunTrigger::Webhook(hook) = trigger {
                if let Some(owner) = self.store(self.db.hook_owner(&hook.name, name).await)? {
                    return Err(RunError::Conflict(format!(
                        "hook {:?} belongs to workflow {owner:?}: workflow {name:?} cannot have it too \
                         (hook names are unique across workflows)",
                        hook.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Takes one delivery of hook `name`: checks its signature over the raw
    /// `body`, then starts the hook's run (or posts its event), once per
    /// delivery id. A refused request stores nothing and is counted.
    pub async fn deliver_hook(
        self: &Arc<Self>,
        name: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Delivered, RunError> {
        let row = self
            .store(self.db.hooks(Some(name)).await)?
            .into_iter()
            .next()
            .ok_or_else(|| RunError::NotFound(format!("hook {name}")))?;
        let (_, workflow) = self.workflow(&row.workflow, Some(row.version)).await?;
        let Some(RunTrigger::Webhook(hook)) = workflow.triggers.get(row.idx as usize) else {
            return Err(RunError::NotFound(format!("hook {name}")));
        };
        let secret = hook
            .secret
            .as_ref()
            .and_then(|s| self.vault.current().values().get(s).cloned());
        let unsigned_allowed = self.caps().grants.unsigned_webhooks;
        if let Err(refusal) = check_signature(hook, secret.as_deref(), unsigned_allowed, headers, body) {
            self.outlets.metrics.webhook_rejected(name, refusal.reason);
            tracing::warn!(hook = name, reason = refusal.reason, "webhook request refused");
            return Err(RunError::BadSignature(refusal.message));
        }
        let parsed = parse_body(headers, body)?;
        let (delivery, day) = delivery_id(hook, headers, &parsed, body);
        let key = idempotency_key(name, &delivery, day);
        let traceparent = crate::telemetry::ids::from_headers(headers);
        let delivered = match &hook.event {
            Some(topic) => {
                let posted = self
                    .post_event(topic, &parsed, Some(&key), traceparent.as_deref())
                    .await?;
                Delivered::Event(posted.id)
            }
            None => {
                let input = match &hook.input {
                    None => parsed,
                    Some(template) => {
                        let request = request_scope(hook, headers, parsed);
                        template.render(&request).map_err(|message| {
                            RunError::invalid("body", format!("the hook's input could not be rendered: {message}"))
                        })?
                    }
                };
                let trigger = json!({ "webhook": name, "delivery": delivery });
                let run = self
                    .start_triggered(&row.workflow, row.version, input, key, trigger, traceparent)
                    .await?;
                Delivered::Run(run)
            }
        };
        let to = match &delivered {
            Delivered::Run(id) | Delivered::Event(id) => id,
        };
        self.store(self.db.hook_delivered(name, &delivery, to).await)?;
        Ok(delivered)
    }
}

fn view(row: &HookRow, hook: &Hook) -> HookView {
    let last_delivery = match (row.delivered_ms, &row.delivery, &row.delivered_to) {
        (Some(at), Some(delivery), Some(to)) => Some(DeliveryView {
            at: chrono::DateTime::<chrono::Utc>::from_timestamp_millis(at)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            delivery: delivery.clone(),
            run_id: hook.event.is_none().then(|| to.clone()),
            event_id: hook.event.is_some().then(|| to.clone()),
        }),
        _ => None,
    };
    HookView {
        name: row.hook.clone(),
        workflow: row.workflow.clone(),
        version: row.version,
        signature: hook.signature.name().to_string(),
        event: hook.event.clone(),
        last_delivery,
    }
}

/// Checks the request's signature as the hook's scheme says.
fn check_signature(
    hook: &Hook,
    secret: Option<&str>,
    unsigned_allowed: bool,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Refusal> {
    let header = |name: &str| header(headers, name);
    if hook.signature == Signature::None {
        return match unsigned_allowed {
            true => Ok(()),
            false => Err(refuse(
                "unsigned_refused",
                "this hook is unsigned and the server runs without --allow-unsigned-webhooks",
            )),
        };
    }
    let Some(secret) = secret else {
        tracing::error!(hook = %hook.name, secret = ?hook.secret, "the hook's secret is not set: every delivery is refused");
        return Err(refuse(
            "no_secret",
            "the hook cannot check signatures: its secret is not set",
        ));
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    match &hook.signature {
        Signature::Github => {
            let given = header("x-hub-signature-256")
                .ok_or_else(|| refuse("missing_signature", "X-Hub-Signature-256 is missing"))?;
            let hex_mac = given
                .strip_prefix("sha256=")
                .ok_or_else(|| refuse("bad_signature", "X-Hub-Signature-256 is not sha256=<hex>"))?;
            let mac = hex::decode(hex_mac).map_err(|_| refuse("bad_signature", "X-Hub-Signature-256 is not hex"))?;
            hmac::verify(&key, body, &mac)
                .map_err(|_| refuse("bad_signature", "X-Hub-Signature-256 does not match the body"))
        }
        Signature::Stripe { tolerance } => {
            let given =
                header("stripe-signature").ok_or_else(|| refuse("missing_signature", "Stripe-Signature is missing"))?;
            let mut timestamp = None;
            let mut macs = Vec::new();
            for part in given.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
                    Some(("v1", mac)) => macs.extend(hex::decode(mac).ok()),
                    _ => {}
                }
            }
            let timestamp =
                timestamp.ok_or_else(|| refuse("bad_signature", "Stripe-Signature has no timestamp (t=)"))?;
            if macs.is_empty() {
                return Err(refuse("bad_signature", "Stripe-Signature has no v1 signature"));
            }
            let mut signed = timestamp.to_string().into_bytes();
            signed.push(b'.');
            signed.extend_from_slice(body);
            if !macs.iter().any(|mac| hmac::verify(&key, &signed, mac).is_ok()) {
                return Err(refuse("bad_signature", "Stripe-Signature does not match the body"));
            }
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs() as i64;
            if now.abs_diff(timestamp) > tolerance.as_secs() {
                return Err(refuse(
                    "stale_timestamp",
                    format!(
                        "Stripe-Signature's timestamp is {}s from now, outside the hook's tolerance of {}s",
                        now.abs_diff(timestamp),
                        tolerance.as_secs()
                    ),
                ));
            }
            Ok(())
        }
        Signature::HmacSha256 { header: name } => {
            let given = header(name).ok_or_else(|| refuse("missing_signature", format!("{name} is missing")))?;
            let given = given.strip_prefix("sha256=").unwrap_or(given);
            let mac = hex::decode(given)
                .ok()
                .or_else(|| base64::engine::general_purpose::STANDARD.decode(given).ok())
                .ok_or_else(|| refuse("bad_signature", format!("{name} is neither hex nor base64")))?;
            hmac::verify(&key, body, &mac)
                .map_err(|_| refuse("bad_signature", format!("{name} does not match the body")))
        }
        Signature::None => Ok(()),
    }
}

/// The body as JSON: JSON as sent, a form as an object (a repeated field
/// as an array), text as a string.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, RunError> {
    let media = header(headers, http::header::CONTENT_TYPE.as_str())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match media.as_deref() {
        None | Some("application/json") => parse_json(body),
        Some(json) if json.starts_with("application/") && json.ends_with("+json") => parse_json(body),
        Some("application/x-www-form-urlencoded") => {
            let mut form = Map::new();
            for (name, value) in form_urlencoded::parse(body) {
                let value = Value::String(value.into_owned());
                match form.get_mut(name.as_ref()) {
                    Some(Value::Array(values)) => values.push(value),
                    Some(first) => *first = Value::Array(vec![first.take(), value]),
                    None => {
                        form.insert(name.into_owned(), value);
                    }
                }
            }
            Ok(Value::Object(form))
        }
        Some("text/plain") => String::from_utf8(body.to_vec())
            .map(Value::String)
            .map_err(|_| RunError::invalid("body", "a text/plain body must be UTF-8")),
        Some(other) => Err(RunError::UnsupportedMedia(format!(
            "a hook takes application/json, application/x-www-form-urlencoded or text/plain, not {other}"
        ))),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, RunError> {
    serde_json::from_slice(body).map_err(|e| RunError::invalid("body", format!("the body is not JSON: {e}")))
}

/// The delivery's id: the sender's (`X-GitHub-Delivery`, a Stripe event's
/// `id`, `Idempotency-Key`), else the body's digest with the UTC day it
/// came on (the same body sent again that day is the same delivery).
fn delivery_id(hook: &Hook, headers: &HeaderMap, body: &Value, raw: &[u8]) -> (String, Option<i64>) {
    let header = |name: &str| header(headers, name).filter(|v| !v.is_empty());
    let sender = match hook.signature {
        Signature::Github => header("x-github-delivery").map(str::to_string),
        Signature::Stripe { .. } => body.get("id").and_then(Value::as_str).map(str::to_string),
        _ => None,
    };
    match sender.or_else(|| header("idempotency-key").map(str::to_string)) {
        Some(id) => (id, None),
        None => (
            format!("sha256:{}", hex::encode(Sha256::digest(raw))),
            Some(crate::store::now_ms().div_euclid(86_400_000)),
        ),
    }
}

/// The run's (or event's) idempotency key for a delivery: the hook, the
/// delivery id and its day when it is the body's digest, hashed when too
/// long to be a key.
fn idempotency_key(hook: &str, delivery: &str, day: Option<i64>) -> String {
    let delivery = match day {
        Some(day) => format!("{delivery} day {day}"),
        None => delivery.to_string(),
    };
    let key = format!("hook {hook} {delivery}");
    if key.chars().count() <= super::start::MAX_IDEMPOTENCY_KEY {
        key
    } else {
        format!(
            "hook {hook} sha256:{}",
            hex::encode(Sha256::digest(delivery.as_bytes()))
        )
    }
}

/// A request header as text, trimmed (none when absent or not text).
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// `request.body` and the headers the hook lists, as `request.headers`.
fn request_scope(hook: &Hook, headers: &HeaderMap, body: Value) -> Scope {
    let listed: Map<String, Value> = hook
        .headers
        .iter()
        .map(|name| {
            let value = header(headers, name).map_or(Value::Null, |v| Value::String(v.to_string()));
            (name.clone(), value)
        })
        .collect();
    let mut names = Map::new();
    names.insert("request".into(), json!({ "body": body, "headers": listed }));
    Scope::new(names)
}
