//! Bearer tokens: when any are configured, every /v1 route needs one. Each
//! token has a name (what usage is recorded under; never the token itself)
//! and may carry a daily fuel budget.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::service::Caller;

/// Shortest token accepted, in characters.
pub const MIN_TOKEN_CHARS: usize = 16;

/// One API token.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Shown in usage and logs: the name given (`name:token`), else
    /// `token-` and the first 8 hex digits of the token's SHA-256.
    pub name: String,
    pub secret: String,
    /// Fuel all runs started with this token may consume per UTC day.
    pub fuel_per_day: Option<u64>,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("fuel_per_day", &self.fuel_per_day)
            .finish_non_exhaustive()
    }
}

impl ApiToken {
    /// A token without a name or budget (its name derived from it).
    pub fn new(secret: impl Into<String>) -> Self {
        let secret = secret.into();
        ApiToken {
            name: derived_name(&secret),
            secret,
            fuel_per_day: None,
        }
    }

    /// `token`, `name:token` or `name:token:fuel_per_day`.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let parts: Vec<&str> = entry.split(':').map(str::trim).collect();
        let (name, secret, fuel) = match parts.as_slice() {
            [secret] => (None, *secret, None),
            [name, secret] => (Some(*name), *secret, None),
            [name, secret, fuel] => (Some(*name), *secret, Some(*fuel)),
            _ => return Err("expected `token`, `name:token` or `name:token:fuel_per_day`".into()),
        };
        if secret.chars().count() < MIN_TOKEN_CHARS {
            return Err(format!(
                "API tokens must be at least {MIN_TOKEN_CHARS} characters (this one has {})",
                secret.chars().count()
            ));
        }
        if let Some(name) = name {
            let valid = (1..=64).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid {
                return Err(format!(
                    "token name {name:?} must be 1 to 64 letters, digits, '-', '_' or '.'"
                ));
            }
        }
        let fuel_per_day = match fuel {
            None => None,
            Some(text) => match text.replace('_', "").parse::<u64>() {
                Ok(0) | Err(_) => {
                    return Err(format!(
                        "fuel_per_day must be a whole number of at least 1, not {text:?}"
                    ))
                }
                Ok(n) => Some(n),
            },
        };
        Ok(ApiToken {
            name: name.map_or_else(|| derived_name(secret), String::from),
            secret: secret.to_string(),
            fuel_per_day,
        })
    }
}

fn derived_name(secret: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(secret.as_bytes());
    format!("token-{}", &hex::encode(digest)[..8])
}

/// Lets the request through with its [`Caller`] when it presents a known
/// token (or when the server has none); 401 otherwise.
pub async fn require_token(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    if state.tokens.is_empty() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let known = presented.and_then(|token| {
        // Every token is compared, so the time taken says nothing of which matched.
        state.tokens.iter().fold(None, |found, t| {
            let equal = constant_time_eq(t.secret.as_bytes(), token.as_bytes());
            found.or(equal.then_some(t))
        })
    });
    match known {
        Some(token) => {
            request.extensions_mut().insert(Caller {
                token: token.name.clone(),
                fuel_per_day: token.fuel_per_day,
            });
            next.run(request).await
        }
        None => ApiError::Unauthorized.into_response(),
    }
}

/// Compares without a timing side channel on the content (`subtle`).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

/// Tokens from `SANDSTEP_API_TOKENS` (comma-separated) and a tokens file
/// (one per line, `#` comments), each `token`, `name:token` or
/// `name:token:fuel_per_day`. Errors name the file's line.
pub fn load_tokens(env: Option<&str>, file: Option<&std::path::Path>) -> Result<Vec<ApiToken>, String> {
    let mut tokens = Vec::new();
    for (i, entry) in env.unwrap_or("").split(',').map(str::trim).enumerate() {
        if !entry.is_empty() {
            tokens.push(ApiToken::parse(entry).map_err(|e| format!("SANDSTEP_API_TOKENS entry {}: {e}", i + 1))?);
        }
    }
    if let Some(file) = file {
        let text =
            std::fs::read_to_string(file).map_err(|e| format!("cannot read tokens file {}: {e}", file.display()))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            tokens.push(ApiToken::parse(line).map_err(|e| format!("{} line {}: {e}", file.display(), i + 1))?);
        }
    }
    let mut names = std::collections::HashSet::new();
    for token in &tokens {
        if !names.insert(token.name.as_str()) {
            return Err(format!(
                "two API tokens are named {:?}: names must be unique",
                token.name
            ));
        }
    }
    Ok(tokens)
}
