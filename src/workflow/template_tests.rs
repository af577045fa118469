//! Tests of templates and expressions (`template.rs`).

use super::*;
use serde_json::json;

fn scope() -> Scope {
    let Value::Object(map) = json!({
        "inputs": { "user_id": "u1", "n": 3 },
        "steps": { "fetch": { "output": { "email": "a@b.c", "friends": [{"name": "x"}], "age": 41 }, "status": "succeeded" } },
        "run": { "id": "r1" },
        "workflow": { "name": "wf" },
    }) else {
        unreachable!()
    };
    Scope::new(map)
}

fn render(source: &str) -> Result<Value, String> {
    Template::compile(source)?.render(&scope())
}

#[test]
fn lone_expression_keeps_its_type() {
    assert_eq!(render("{{ steps.fetch.output.friends }}"), Ok(json!([{"name": "x"}])));
    assert_eq!(render("{{ steps.fetch.output }}").unwrap()["age"], json!(41));
    assert_eq!(render("{{ inputs.n * 2 }}"), Ok(json!(6)));
    assert_eq!(
        render(" {{ inputs.n > 2 }} "),
        Ok(json!(" true ")),
        "surrounding text makes it a string"
    );
}

#[test]
fn objects_keep_their_key_order() {
    // A step that digests or signs its input sees the fields in the
    // order the previous step wrote them.
    let rendered = render("{{ steps.fetch.output }}").unwrap();
    assert_eq!(
        serde_json::to_string(&rendered).unwrap(),
        r#"{"email":"a@b.c","friends":[{"name":"x"}],"age":41}"#
    );
    assert_eq!(
        render("{{ steps.fetch.output }}!"),
        Ok(json!(r#"{"email":"a@b.c","friends":[{"name":"x"}],"age":41}!"#))
    );
}

#[test]
fn mixed_text_interpolates() {
    assert_eq!(
        render("Hi {{ inputs.user_id }} ({{ steps.fetch.output.age }})"),
        Ok(json!("Hi u1 (41)"))
    );
    assert_eq!(
        render("list: {{ steps.fetch.output.friends }}"),
        Ok(json!("list: [{\"name\":\"x\"}]"))
    );
}

#[test]
fn values_are_not_templated_again() {
    let Value::Object(mut map) = json!({ "inputs": { "text": "{{ run.id }}" }, "run": {"id": "r1"} }) else {
        panic!()
    };
    map.insert("steps".into(), json!({}));
    let scope = Scope::new(map);
    assert_eq!(
        Template::compile("{{ inputs.text }}").unwrap().render(&scope),
        Ok(json!("{{ run.id }}"))
    );
}

#[test]
fn missing_paths_are_named() {
    assert_eq!(
        render("{{ steps.fetch.output.emial }}"),
        Err("steps.fetch.output.emial does not exist (steps.fetch.output has email, friends, age)".into())
    );
    assert_eq!(
        render("to {{ inputs.nobody }}"),
        Err("inputs.nobody does not exist (inputs has user_id, n)".into())
    );
    assert_eq!(render("{{ secrets.KEY }}"), Err("no secrets are set".into()));
}

#[test]
fn malformed_templates_are_rejected() {
    assert!(Template::compile("{{ steps.fetch. }}")
        .unwrap_err()
        .starts_with("malformed expression `steps.fetch.`"));
    assert!(Template::compile("{{ a").unwrap_err().starts_with("unclosed `{{`"));
    assert!(Template::compile("{% if a %}x{% endif %}")
        .unwrap_err()
        .contains("not supported"));
    assert!(Template::compile("{{ }}").unwrap_err().starts_with("empty"));
}

#[test]
fn paths_are_reported_nested() {
    let t = Template::compile("{{ steps.fetch.output.email }} {{ inputs.user_id }} {{ item.name }}").unwrap();
    let paths: Vec<String> = t.paths().into_iter().collect();
    assert_eq!(paths, ["inputs.user_id", "item.name", "steps.fetch.output.email"]);
}

#[test]
fn conditions() {
    let when = Template::compile_expression("steps.fetch.output.age > 40 and inputs.user_id == 'u1'").unwrap();
    assert_eq!(when.is_true(&scope()), Ok(true));
    let braces = Template::compile_expression("{{ steps.fetch.status == 'failed' }}").unwrap();
    assert_eq!(braces.is_true(&scope()), Ok(false));
}
