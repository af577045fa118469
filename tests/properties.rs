//! Property tests: arbitrary definitions and templates never panic, never
//! hang, and give either a value or a located error.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use sandstep::limits::Caps;
use sandstep::workflow::template::{Scope, Template};
use serde_json::json;

/// Pieces definitions are made of, so that generated text reaches the
/// validator and not only the YAML parser.
fn definition() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "name",
        "steps",
        "id",
        "module",
        "input",
        "needs",
        "when",
        "for_each",
        "concurrency",
        "retry",
        "on_failure",
        "sleep",
        "timeout",
        "limits",
        "inputs",
        "defaults",
        "output",
        "args",
        "trigger",
        "fuel",
        "memory",
        "max_attempts",
        "type",
        "required",
        "default",
        "bogus",
    ]);
    let value = prop::sample::select(vec![
        "a",
        "b",
        "echo",
        "\"{{ steps.a.output }}\"",
        "\"{{ inputs.x }}\"",
        "\"{{ item }}\"",
        "1s",
        "0",
        "-1",
        "99999999999999999999",
        "[a, b]",
        "[]",
        "{}",
        "true",
        "null",
        "\"{{\"",
        "\"}}\"",
        "continue",
        "stop",
        "all_done",
        "string",
        "64MiB",
        "\"{{ steps.b.output.x * 2 }}\"",
        "[1, 2, 3]",
        "\"é\"",
    ]);
    let line = (0usize..4, key, value).prop_map(|(indent, key, value)| {
        let dash = if indent % 2 == 1 { "- " } else { "" };
        format!("{}{dash}{key}: {value}", "  ".repeat(indent))
    });
    prop::collection::vec(line, 0..24).prop_map(|lines| format!("name: p\n{}\n", lines.join("\n")))
}

/// Expressions from the template language's pieces.
fn expression() -> impl Strategy<Value = String> {
    let atom = prop::sample::select(vec![
        "inputs.n",
        "inputs.s",
        "steps.a.output",
        "steps.a.output.list",
        "item",
        "index",
        "run.id",
        "1",
        "2.5",
        "'x'",
        "true",
        "none",
        "[1, 2]",
        "{'k': 1}",
        "range(3)",
        "nope",
        "steps.a.status",
    ]);
    let op = prop::sample::select(vec![
        " + ",
        " - ",
        " * ",
        " / ",
        " // ",
        " % ",
        " ~ ",
        " == ",
        " != ",
        " < ",
        " and ",
        " or ",
        " in ",
        " | length",
        " | tojson",
        " | urlencode",
        "[0]",
        ".k",
        " if true else ",
        "(",
        ")",
    ]);
    (atom.clone(), prop::collection::vec((op, atom), 0..6)).prop_map(|(first, rest)| {
        let mut text = first.to_string();
        for (op, atom) in rest {
            text.push_str(op);
            text.push_str(atom);
        }
        text
    })
}

fn scope() -> Scope {
    let serde_json::Value::Object(map) = json!({
        "inputs": { "n": 3, "s": "text" },
        "steps": { "a": { "output": { "list": [1, 2, 3], "k": "v" }, "status": "succeeded" } },
        "run": { "id": "r1" },
        "workflow": { "name": "w" },
    }) else {
        unreachable!()
    };
    Scope::new(map).with_item(&json!({ "k": 1 }), 0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics_and_errors_are_located(source in ".{0,400}") {
        match sandstep::workflow::load(&source, &Caps::default(), None) {
            Ok(_) => {}
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                prop_assert!(errors.iter().all(|e| !e.location.is_empty() && !e.message.is_empty()), "{:?}", errors);
            }
        }
    }

    #[test]
    fn generated_definitions_validate_or_name_where_they_are_wrong(source in definition()) {
        let started = Instant::now();
        let loaded = sandstep::workflow::load(&source, &Caps::default(), None);
        prop_assert!(started.elapsed() < Duration::from_secs(1), "took {:?}: {}", started.elapsed(), source);
        if let Err(errors) = loaded {
            prop_assert!(!errors.is_empty());
            prop_assert!(errors.iter().all(|e| !e.location.is_empty() && !e.message.is_empty()), "{:?}", errors);
        }
    }

    #[test]
    fn templates_render_a_value_or_say_why(expr in expression(), text in "[a-z {}]{0,12}") {
        let scope = scope();
        for source in [format!("{{{{ {expr} }}}}"), format!("{text}{{{{ {expr} }}}}{text}")] {
            let started = Instant::now();
            if let Ok(template) = Template::compile(&source) {
                match template.render(&scope) {
                    Ok(_) => {}
                    Err(message) => prop_assert!(!message.is_empty(), "{}", source),
                }
            }
            prop_assert!(started.elapsed() < Duration::from_secs(1), "took {:?}: {}", started.elapsed(), source);
        }
    }

    #[test]
    fn arbitrary_template_text_never_panics(source in ".{0,200}") {
        if let Ok(template) = Template::compile(&source) {
            let _ = template.render(&scope());
        }
    }
}

/// Regression (found by the property above): a YAML document `?` (one
/// empty key) was refused with an error at location "".
#[test]
fn an_empty_key_is_located_at_the_workflow() {
    let errors = sandstep::workflow::load("?", &Caps::default(), None).unwrap_err();
    assert_eq!(errors[0].location, "workflow");
    let errors = sandstep::workflow::load(
        "name: x\nsteps:\n  - { id: a, sleep: 1s, \"\": 1 }\n",
        &Caps::default(),
        None,
    )
    .unwrap_err();
    assert_eq!(errors[0].location, "steps.a");
}
