//! Hash chains over a run's events: each event's hash is SHA-256 over the
//! previous event's hash (32 bytes; for the first event, the run id's
//! UTF-8 bytes) followed by the event's stored JSON, byte for byte. The
//! last hash, the run's head, then stands for its whole history: a
//! receipt signs it, and changing any stored event breaks the chain there.

use sha2::{Digest as _, Sha256};

/// One link of a chain.
pub type Hash = [u8; 32];

/// The hash of the event stored as `body`, after `prev` (`None` for a
/// run's first event, which chains to `run_id`).
pub fn link(run_id: &str, prev: Option<&Hash>, body: &str) -> Hash {
    let mut hasher = Sha256::new();
    match prev {
        Some(prev) => hasher.update(prev),
        None => hasher.update(run_id.as_bytes()),
    }
    hasher.update(body.as_bytes());
    hasher.finalize().into()
}

/// A hash as stored and shown: 64 lowercase hex digits.
pub fn hex(hash: &Hash) -> String {
    hex::encode(hash)
}

/// A stored hash read back (`None` when it is not 64 hex digits).
pub fn parse(text: &str) -> Option<Hash> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}

/// What checking a run's stored chain found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Checked {
    /// Events read.
    pub events: usize,
    /// Events that carry a hash (0: the run was recorded before chains).
    pub chained: usize,
    /// The last event's hash, when every event carries one and each chains.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// The first broken link: `event 12: hash does not chain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
}

impl Checked {
    pub fn ok(&self) -> bool {
        self.broken.is_none() && self.chained == self.events && self.events > 0
    }
}

/// Checks the chain of `run_id` over its events in order, as `(seq, stored
/// body, stored hash)`: each hash must be the link of its body after the
/// one before, from the run id on.
pub fn check<'a>(run_id: &str, events: impl IntoIterator<Item = (u64, &'a str, Option<&'a str>)>) -> Checked {
    let mut checked = Checked {
        events: 0,
        chained: 0,
        head: None,
        broken: None,
    };
    let mut prev: Option<Hash> = None;
    for (seq, body, stored) in events {
        checked.events += 1;
        if checked.broken.is_some() {
            continue;
        }
        let expected_seq = checked.events as u64;
        let Some(stored) = stored else {
            if checked.chained > 0 {
                checked.broken = Some(format!("event {seq}: has no hash, after events that do"));
            }
            continue;
        };
        checked.chained += 1;
        if seq != expected_seq {
            checked.broken = Some(format!("event {seq}: out of place (expected event {expected_seq})"));
        } else if checked.chained != checked.events {
            checked.broken = Some(format!("event {seq}: has a hash, after events that do not"));
        } else {
            let hash = link(run_id, prev.as_ref(), body);
            if parse(stored) != Some(hash) {
                checked.broken = Some(format!("event {seq}: hash does not chain"));
            }
            prev = Some(hash);
        }
    }
    if checked.broken.is_none() && checked.chained == checked.events {
        checked.head = prev.as_ref().map(hex);
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_checks_and_names_the_first_event_that_does_not() {
        let bodies = [r#"{"seq":1}"#, r#"{"seq":2}"#, r#"{"seq":3}"#];
        let mut hashes = Vec::new();
        let mut prev = None;
        for body in bodies {
            let hash = link("r1", prev.as_ref(), body);
            hashes.push(hex(&hash));
            prev = Some(hash);
        }
        let rows = |bodies: &[&'static str; 3]| -> Vec<(u64, &'static str, Option<String>)> {
            bodies
                .iter()
                .enumerate()
                .map(|(i, b)| (i as u64 + 1, *b, Some(hashes[i].clone())))
                .collect()
        };
        let good = rows(&bodies);
        let checked = check("r1", good.iter().map(|(s, b, h)| (*s, *b, h.as_deref())));
        assert!(checked.ok(), "{checked:?}");
        assert_eq!(checked.head.as_deref(), Some(hashes[2].as_str()));
        // The same events under another run id do not chain.
        let other = check("r2", good.iter().map(|(s, b, h)| (*s, *b, h.as_deref())));
        assert_eq!(other.broken.as_deref(), Some("event 1: hash does not chain"));
        let tampered = rows(&[bodies[0], r#"{"seq":2,"x":1}"#, bodies[2]]);
        let checked = check("r1", tampered.iter().map(|(s, b, h)| (*s, *b, h.as_deref())));
        assert_eq!(checked.broken.as_deref(), Some("event 2: hash does not chain"));
        assert_eq!(checked.head, None);
        // A run recorded before chains: no hash at all, nothing broken.
        let legacy = check("r1", bodies.iter().enumerate().map(|(i, b)| (i as u64 + 1, *b, None)));
        assert_eq!((legacy.chained, legacy.broken.clone(), legacy.ok()), (0, None, false));
    }
}
