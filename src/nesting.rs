//! Limits on what is parsed from untrusted text (workflow definitions, run
//! inputs), the same for the server and the local commands.
//!
//! - Size: [`MAX_DOCUMENT_BYTES`] (1 MiB), the server's default body limit
//!   (`serve --max-body-size`); the local commands refuse larger files and
//!   `--input` values with an error naming it.
//! - Depth: [`MAX_DEPTH`] (128) levels of nested arrays and objects, the
//!   depth the JSON and YAML parsers themselves stop at. [`check_depth`]
//!   finds a deeper document in one linear pass before any parser sees it:
//!   the YAML parser takes time quadratic in the depth of flow collections
//!   (`[[[[...]]]]`), 25 s for 100,000 levels.

/// Largest definition or input, in bytes (1 MiB).
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Deepest nesting of arrays and objects in a definition or input.
pub const MAX_DEPTH: usize = 128;

/// An error naming the limit `text` goes over, if any.
pub fn check_document(what: &str, text: &str) -> Result<(), String> {
    check_size(what, text.len() as u64)?;
    check_depth(what, text)
}

/// An error when a document of `bytes` is over [`MAX_DOCUMENT_BYTES`].
pub fn check_size(what: &str, bytes: u64) -> Result<(), String> {
    if bytes > MAX_DOCUMENT_BYTES as u64 {
        return Err(format!(
            "{what} is {bytes} bytes, over the limit of {} ({})",
            MAX_DOCUMENT_BYTES,
            crate::units::format_size(MAX_DOCUMENT_BYTES as u64)
        ));
    }
    Ok(())
}

/// An error when `text` (JSON, or YAML) nests arrays and objects deeper
/// than [`MAX_DEPTH`]. Counts the brackets that open flow collections
/// (JSON is all flow); brackets inside quoted strings, comments and plain
/// text after a value began do not count. Block-style nesting is bounded
/// by the size limit (each level costs a line and its indentation).
pub fn check_depth(what: &str, text: &str) -> Result<(), String> {
    let mut depth = 0usize;
    // At depth 0, whether a value may start here (line start, after `: `,
    // `- `, or `,`), so that `a[b` in plain text does not count.
    let mut value_start = true;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut comment = false;
    let mut previous = '\n';
    let (mut line, mut column) = (1usize, 0usize);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        column += 1;
        if c == '\n' {
            line += 1;
            column = 0;
            comment = false;
            if depth == 0 {
                value_start = true;
            }
            previous = c;
            continue;
        }
        if comment {
            continue;
        }
        if let Some(open) = quote {
            if open == '"' {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    quote = None;
                }
            } else if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next(); // '' is a quote inside a single-quoted scalar
                } else {
                    quote = None;
                }
            }
            previous = c;
            continue;
        }
        let starts = depth > 0 || value_start;
        match c {
            '#' if previous.is_whitespace() => comment = true,
            '"' | '\'' if starts => quote = Some(c),
            '[' | '{' if starts => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!(
                        "{what} nests arrays and objects deeper than the limit of {MAX_DEPTH} levels (line {line}, column {column})"
                    ));
                }
            }
            ']' | '}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    value_start = false;
                }
            }
            ' ' | '\t' | '\r' => {}
            ':' | '-' | ',' | '?' if depth == 0 => {
                value_start = matches!(chars.peek(), None | Some(' ' | '\t' | '\r' | '\n'));
            }
            _ if depth == 0 => value_start = false,
            _ => {}
        }
        previous = c;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn depth_at_the_limit_passes_one_more_is_named() {
        assert_eq!(check_depth("x", &nested(MAX_DEPTH)), Ok(()));
        let error = check_depth("the definition", &format!("input: {}", nested(MAX_DEPTH + 1))).unwrap_err();
        assert_eq!(
            error,
            "the definition nests arrays and objects deeper than the limit of 128 levels (line 1, column 136)"
        );
        let json = format!("{{\"a\": {}}}", nested(200));
        assert!(check_depth("x", &json).is_err());
    }

    #[test]
    fn brackets_in_strings_comments_and_plain_text_do_not_count() {
        let many = "[".repeat(300);
        for text in [
            format!("text: \"{many}\"\n"),
            format!("text: '{many} it''s {many}'\n"),
            format!("text: a{many}\n"),
            format!("# {many}\nname: x\n"),
            format!("steps: [{{ id: a, note: \"{many}\" }}]\n"),
            format!("{{\"a\": \"\\\"{many}\"}}"),
        ] {
            assert_eq!(check_depth("x", &text), Ok(()), "{text}");
        }
    }

    #[test]
    fn size_over_the_limit_is_named() {
        let big = "a".repeat(MAX_DOCUMENT_BYTES + 1);
        assert_eq!(
            check_document("--input", &big).unwrap_err(),
            "--input is 1048577 bytes, over the limit of 1048576 (1.0 MiB)"
        );
    }
}
