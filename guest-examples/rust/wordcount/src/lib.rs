//! `wordcount`: statistics over a text. Input `{"text": "...", "top": 3}`;
//! output `{"words", "lines", "chars", "unique", "top": [{"word", "count"}]}`.
//! Words are lower-cased runs of letters, digits and apostrophes.

wit_bindgen::generate!({ path: "../../../wit/step.wit", world: "step" });

use sandstep::step::host::{log, Level};
use serde_json::json;
use std::collections::HashMap;

struct WordCount;

impl Guest for WordCount {
    fn run(_ctx: Context, input: String) -> Result<String, StepError> {
        let input: serde_json::Value = serde_json::from_str(&input).map_err(|e| StepError {
            message: format!("input is not JSON: {e}"),
            retryable: false,
        })?;
        let text = input.get("text").and_then(|t| t.as_str()).ok_or_else(|| StepError {
            message: "input.text must be a string".into(),
            retryable: false,
        })?;
        let top_n = input.get("top").and_then(|t| t.as_u64()).unwrap_or(3) as usize;

        let mut counts: HashMap<String, u64> = HashMap::new();
        let mut words = 0u64;
        for word in text
            .split(|c: char| !(c.is_alphanumeric() || c == '\''))
            .filter(|w| !w.is_empty())
        {
            words += 1;
            *counts.entry(word.to_lowercase()).or_default() += 1;
        }
        let mut top: Vec<(String, u64)> = counts.iter().map(|(w, c)| (w.clone(), *c)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(top_n);
        log(Level::Debug, &format!("{words} words, {} distinct", counts.len()));
        let top: Vec<_> = top.into_iter().map(|(word, count)| json!({ "word": word, "count": count })).collect();
        Ok(json!({
            "words": words,
            "lines": text.lines().count(),
            "chars": text.chars().count(),
            "unique": counts.len(),
            "top": top,
        })
        .to_string())
    }
}

export!(WordCount);
