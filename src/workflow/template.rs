//! Templates in workflow definitions, evaluated with minijinja.
//!
//! A string holding `{{ expr }}` is a template. A string that is exactly one
//! `{{ expr }}` becomes the expression's typed JSON value (object, array,
//! number, bool, null); a string mixing text and expressions is interpolated
//! (strings as they are, other values as JSON). Values are inserted as data and
//! never templated again. A path that does not exist is an error naming it.
//! Only `{{ }}` expressions are supported: no `{% %}` blocks.

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use minijinja::{Environment, Expression, UndefinedBehavior};
use serde_json::{Map, Value};

/// The names a template may use.
pub const ROOTS: &[&str] = &[
    "inputs", "steps", "item", "index", "event", "secrets", "run", "workflow", "request",
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
});

/// One compiled template string (cheap to clone: the compiled parts are
/// shared).
#[derive(Clone)]
pub struct Template {
    source: String,
    parts: Arc<[Part]>,
}

enum Part {
    Text(String),
    Expr(Expression<'static, 'static>),
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Template({:?})", self.source)
    }
}

/// A variable path a template reads, such as `steps.fetch.output.email`.
pub type Path = String;

impl Template {
    /// Whether a string is a template at all.
    pub fn is_template(text: &str) -> bool {
        text.contains("{{") || text.contains("{%")
    }

    /// Compiles a template string; the error says what is malformed.
    pub fn compile(source: &str) -> Result<Template, String> {
        if source.contains("{%") {
            return Err("`{% %}` blocks are not supported; use `{{ expression }}`".into());
        }
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed `{{{{` in {source:?}"))?;
            let expr = after[..end].trim();
            if expr.is_empty() {
                return Err(format!("empty `{{{{ }}}}` in {source:?}"));
            }
            let compiled = ENV
                .compile_expression_owned(expr.to_string())
                .map_err(|e| format!("malformed expression `{expr}`: {}", describe(&e)))?;
            parts.push(Part::Expr(compiled));
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            return Err(format!("`}}}}` without an opening `{{{{` in {source:?}"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template {
            source: source.to_string(),
            parts: parts.into(),
        })
    }

    /// Compiles a bare expression (`when:`), also accepting it wrapped in `{{ }}`.
    pub fn compile_expression(source: &str) -> Result<Template, String> {
        let trimmed = source.trim();
        if trimmed.starts_with("{{") {
            let template = Template::compile(trimmed)?;
            if template.parts.len() != 1 || !matches!(template.parts[0], Part::Expr(_)) {
                return Err(format!(
                    "expected one expression, got text and expressions in {source:?}"
                ));
            }
            return Ok(template);
        }
        let mut template = Template::compile(&format!("{{{{ {trimmed} }}}}"))?;
        // Messages quote the condition as it was written.
        template.source = trimmed.to_string();
        Ok(template)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every variable path the template reads (`steps.fetch.output.email`).
    pub fn paths(&self) -> BTreeSet<Path> {
        let mut out = BTreeSet::new();
        for part in self.parts.iter() {
            if let Part::Expr(expr) = part {
                out.extend(expr.undeclared_variables(true));
            }
        }
        out
    }

    /// Evaluates against `scope`: the typed value for a lone expression, the
    /// interpolated string otherwise.
    pub fn render(&self, scope: &Scope) -> Result<Value, String> {
        if let [Part::Expr(expr)] = &*self.parts {
            return self.eval(expr, scope);
        }
        let mut out = String::new();
        for part in self.parts.iter() {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Expr(expr) => match self.eval(expr, scope)? {
                    Value::String(s) => out.push_str(&s),
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(Value::String(out))
    }

    /// Evaluates as a condition (`when:`).
    pub fn is_true(&self, scope: &Scope) -> Result<bool, String> {
        Ok(match self.render(scope)? {
            Value::Null | Value::Bool(false) => false,
            Value::Bool(true) => true,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
        })
    }

    fn eval(&self, expr: &Expression<'static, 'static>, scope: &Scope) -> Result<Value, String> {
        match expr.eval(&scope.value) {
            Ok(value) if value.is_undefined() => Err(self.missing(expr, scope)),
            Ok(value) => serde_json::to_value(&value).map_err(|e| format!("{}: {e}", self.source)),
            Err(e) if e.kind() == minijinja::ErrorKind::UndefinedError => Err(self.missing(expr, scope)),
            Err(e) => Err(format!("cannot evaluate {:?}: {}", self.source, describe(&e))),
        }
    }

    /// Names the first path of `expr` that does not exist in `scope`.
    fn missing(&self, expr: &Expression<'static, 'static>, scope: &Scope) -> String {
        let mut paths: Vec<String> = expr.undeclared_variables(true).into_iter().collect();
        paths.sort();
        for path in &paths {
            if let Some(message) = scope.check_path(path) {
                return message;
            }
        }
        format!("{:?} reads a value that does not exist", self.source)
    }
}

fn describe(error: &minijinja::Error) -> String {
    match error.detail() {
        Some(detail) => format!("{} ({detail})", error.kind()),
        None => error.kind().to_string(),
    }
}

/// The names a template sees, as JSON and as a minijinja value.
///
/// Cheap to clone and to extend with one for_each item: the shared names
/// (which may hold a previous step's whole output) are behind an `Arc`, so
/// an item's scope costs the item, not the list it came from.
#[derive(Clone)]
pub struct Scope {
    json: Arc<Map<String, Value>>,
    /// `item` and `index` of one for_each item.
    item: Option<Arc<(Value, Value)>>,
    value: minijinja::Value,
}

impl Scope {
    /// A scope from top-level names (`inputs`, `steps`, ...).
    pub fn new(json: Map<String, Value>) -> Scope {
        let value = minijinja::Value::from_serialize(&json);
        Scope {
            json: Arc::new(json),
            item: None,
            value,
        }
    }

    /// A scope with no names, for steps that render nothing (shared).
    pub fn empty() -> Scope {
        static EMPTY: LazyLock<Scope> = LazyLock::new(|| Scope::new(Map::new()));
        EMPTY.clone()
    }

    /// This scope plus `item` and `index` (one for_each item).
    pub fn with_item(&self, item: &Value, index: usize) -> Scope {
        let value = minijinja::context! {
            item => minijinja::Value::from_serialize(item),
            index => index,
            ..self.value.clone()
        };
        Scope {
            json: self.json.clone(),
            item: Some(Arc::new((item.clone(), Value::from(index)))),
            value,
        }
    }

    /// This scope plus one more top-level name (`event` in a wait's `match`).
    pub fn with_root(&self, name: &str, value: &Value) -> Scope {
        let mut json = (*self.json).clone();
        json.insert(name.to_string(), value.clone());
        let mut scope = Scope::new(json);
        if let Some(item) = &self.item {
            scope = scope.with_item(&item.0, item.1.as_u64().unwrap_or(0) as usize);
        }
        scope
    }

    fn root(&self, name: &str) -> Option<&Value> {
        match (&self.item, name) {
            (Some(item), "item") => Some(&item.0),
            (Some(item), "index") => Some(&item.1),
            _ => self.json.get(name),
        }
    }

    /// `None` when `path` exists, else a message naming the missing part.
    fn check_path(&self, path: &str) -> Option<String> {
        let mut segments = path.split('.');
        let root = segments.next()?;
        let mut current = match self.root(root) {
            Some(value) => value,
            None if root == "secrets" => return Some("no secrets are set".into()),
            None => return Some(format!("{root} does not exist")),
        };
        let mut walked = root.to_string();
        for segment in segments {
            let next = match current {
                Value::Object(map) => map.get(segment),
                Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            let Some(next) = next else {
                if root == "secrets" {
                    return Some(format!("secret {segment} is not set"));
                }
                let keys = match current {
                    Value::Object(map) if !map.is_empty() => {
                        format!(" ({walked} has {})", map.keys().cloned().collect::<Vec<_>>().join(", "))
                    }
                    Value::Object(_) => format!(" ({walked} is an empty object)"),
                    other => format!(" ({walked} is {})", kind_of(other)),
                };
                return Some(format!("{walked}.{segment} does not exist{keys}"));
            };
            walked.push('.');
            walked.push_str(segment);
            current = next;
        }
        None
    }
}

/// A JSON value's kind, for messages.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON value whose strings may be templates (a step's `input`, the
/// workflow's `output`), compiled once.
#[derive(Debug, Clone)]
pub enum TemplateValue {
    Literal(Value),
    Template(Template),
    Array(Vec<TemplateValue>),
    Object(Vec<(String, TemplateValue)>),
}

impl TemplateValue {
    /// Compiles every template string in `value`; errors carry the location
    /// inside it (`to`, `items[2].name`).
    pub fn compile(value: &Value) -> Result<TemplateValue, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let compiled = Self::compile_at(value, String::new(), &mut errors);
        if errors.is_empty() {
            Ok(compiled)
        } else {
            Err(errors)
        }
    }

    fn compile_at(value: &Value, at: String, errors: &mut Vec<(String, String)>) -> TemplateValue {
        match value {
            Value::String(s) if Template::is_template(s) => match Template::compile(s) {
                Ok(t) => TemplateValue::Template(t),
                Err(e) => {
                    errors.push((at, e));
                    TemplateValue::Literal(Value::Null)
                }
            },
            Value::Array(items) => TemplateValue::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Self::compile_at(v, format!("{at}[{i}]"), errors))
                    .collect(),
            ),
            Value::Object(map) => TemplateValue::Object(
                map.iter()
                    .map(|(k, v)| {
                        let inner = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                        (k.clone(), Self::compile_at(v, inner, errors))
                    })
                    .collect(),
            ),
            other => TemplateValue::Literal(other.clone()),
        }
    }

    /// Every template inside, with its location.
    pub fn templates(&self) -> Vec<&Template> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a Template>) {
        match self {
            TemplateValue::Literal(_) => {}
            TemplateValue::Template(t) => out.push(t),
            TemplateValue::Array(items) => items.iter().for_each(|i| i.collect(out)),
            TemplateValue::Object(fields) => fields.iter().for_each(|(_, v)| v.collect(out)),
        }
    }

    /// Whether nothing inside is a template (rendering is a clone).
    pub fn is_literal(&self) -> bool {
        match self {
            TemplateValue::Literal(_) => true,
            TemplateValue::Template(_) => false,
            TemplateValue::Array(items) => items.iter().all(TemplateValue::is_literal),
            TemplateValue::Object(fields) => fields.iter().all(|(_, v)| v.is_literal()),
        }
    }

    pub fn render(&self, scope: &Scope) -> Result<Value, String> {
        Ok(match self {
            TemplateValue::Literal(v) => v.clone(),
            TemplateValue::Template(t) => t.render(scope)?,
            TemplateValue::Array(items) => {
                Value::Array(items.iter().map(|i| i.render(scope)).collect::<Result<_, _>>()?)
            }
            TemplateValue::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.render(scope)?)))
                    .collect::<Result<_, String>>()?,
            ),
        })
    }
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
