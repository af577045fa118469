//! Module references: `name`, `name:tag` (tags move, like container image
//! tags), `sha256:<hex>` and `name@sha256:<hex>`, and the rules for names and
//! tags. Modules themselves live in the database ([`crate::store`]).

/// The tag used when a reference names none.
pub const DEFAULT_TAG: &str = "latest";

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error(
        "invalid module name {0:?}: use 1-128 characters a-z, 0-9, '.', '_', '-', starting with a letter or digit"
    )]
    InvalidName(String),
    #[error(
        "invalid tag {0:?}: use 1-128 characters A-Z, a-z, 0-9, '.', '_', '-', starting with a letter, digit or '_'"
    )]
    InvalidTag(String),
    #[error("invalid digest {0:?}: expected sha256: followed by 64 hex digits")]
    InvalidDigest(String),
    #[error("no module {0} in the store")]
    NotFound(String),
}

/// A parsed module reference: `name`, `name:tag`, `sha256:<hex>` or
/// `name@sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag { name: String, tag: String },
    Digest { name: Option<String>, digest: String },
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        if let Some((name, digest)) = text.split_once('@') {
            check_name(name)?;
            check_digest(digest)?;
            return Ok(Reference::Digest {
                name: Some(name.into()),
                digest: digest.into(),
            });
        }
        if text.starts_with("sha256:") {
            check_digest(text)?;
            return Ok(Reference::Digest {
                name: None,
                digest: text.into(),
            });
        }
        let (name, tag) = text.split_once(':').unwrap_or((text, DEFAULT_TAG));
        check_name(name)?;
        check_tag(tag)?;
        Ok(Reference::Tag {
            name: name.into(),
            tag: tag.into(),
        })
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag { name, tag } => write!(f, "{name}:{tag}"),
            Reference::Digest {
                name: Some(name),
                digest,
            } => write!(f, "{name}@{digest}"),
            Reference::Digest { name: None, digest } => f.write_str(digest),
        }
    }
}

pub fn check_name(name: &str) -> Result<(), ReferenceError> {
    let ok = (1..=128).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::InvalidName(name.into()))
    }
}

pub fn check_tag(tag: &str) -> Result<(), ReferenceError> {
    let ok = (1..=128).contains(&tag.len())
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::InvalidTag(tag.into()))
    }
}

fn check_digest(digest: &str) -> Result<(), ReferenceError> {
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
        Ok(())
    } else {
        Err(ReferenceError::InvalidDigest(digest.into()))
    }
}
