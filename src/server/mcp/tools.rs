//! What `tools/list` answers: each workflow whose definition says `mcp:`,
//! its `inputSchema` from its declared inputs, and Sandstep's own tools.

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{json, Map, Value};

use crate::workflow::definition::{InputDef, InputType};
use crate::workflow::Workflow;

/// `sandstep_get_run`: a run's status, output or error.
pub const GET_RUN: &str = "sandstep_get_run";
/// `sandstep_send_event`: posts an event (resumes the runs waiting for it).
pub const SEND_EVENT: &str = "sandstep_send_event";
/// `sandstep_list_runs`: the newest runs, by workflow and status.
pub const LIST_RUNS: &str = "sandstep_list_runs";

/// The tool that starts runs of `workflow` (which says `mcp:`).
pub fn workflow_tool(workflow: &Workflow, tool: &crate::workflow::McpTool) -> Tool {
    let description = tool
        .description
        .clone()
        .unwrap_or_else(|| format!("Runs the Sandstep workflow {}.", workflow.name));
    let mut annotations = ToolAnnotations::default();
    annotations.title = Some(workflow.name.clone());
    annotations.read_only_hint = Some(false);
    annotations.open_world_hint = Some(true);
    Tool::new(workflow.name.clone(), description, input_schema(&workflow.inputs)).annotate(annotations)
}

/// A JSON Schema of the run input: each declared input with its type,
/// description and default, the required ones listed; a workflow that
/// declares none takes any object.
pub fn input_schema(inputs: &indexmap::IndexMap<String, InputDef>) -> Arc<JsonObject> {
    let mut properties = Map::new();
    for (name, input) in inputs {
        let mut property = Map::new();
        if let Some(ty) = json_type(input.ty) {
            property.insert("type".into(), ty.into());
        }
        if let Some(description) = &input.description {
            property.insert("description".into(), description.clone().into());
        }
        if let Some(default) = &input.default {
            property.insert("default".into(), default.clone());
        }
        properties.insert(name.clone(), Value::Object(property));
    }
    let required: Vec<&String> = inputs
        .iter()
        .filter(|(_, input)| input.required && input.default.is_none())
        .map(|(name, _)| name)
        .collect();
    let mut schema = object(json!({ "type": "object", "properties": properties }));
    if !required.is_empty() {
        schema.insert("required".into(), json!(required));
    }
    if !inputs.is_empty() {
        schema.insert("additionalProperties".into(), false.into());
    }
    Arc::new(schema)
}

fn json_type(ty: InputType) -> Option<&'static str> {
    Some(match ty {
        InputType::String => "string",
        InputType::Number => "number",
        InputType::Integer => "integer",
        InputType::Boolean => "boolean",
        InputType::Object => "object",
        InputType::Array => "array",
        InputType::Any => return None,
    })
}

/// Sandstep's own tools, listed after the workflows'.
pub fn builtin_tools() -> Vec<Tool> {
    let read_only = || {
        let mut annotations = ToolAnnotations::default();
        annotations.read_only_hint = Some(true);
        annotations
    };
    vec![
        Tool::new(
            GET_RUN,
            "A Sandstep run's status and, once it has ended, its output or error. Follows a tool call \
             that answered before its run ended; with wait_seconds, waits up to that long for the end.",
            object(json!({
                "type": "object",
                "properties": {
                    "run_id": { "type": "string", "description": "The run id a tool call answered." },
                    "wait_seconds": {
                        "type": "number", "minimum": 0,
                        "description": "Wait up to this long for the run to end (at most the server's --mcp-wait)."
                    }
                },
                "required": ["run_id"],
                "additionalProperties": false
            })),
        )
        .annotate(read_only()),
        Tool::new(
            SEND_EVENT,
            "Posts an event: every run waiting for its topic resumes with data as the wait's output \
             (an approval, a reply), and workflows triggered by the topic start.",
            object(json!({
                "type": "object",
                "properties": {
                    "topic": { "type": "string", "description": "The event topic a run waits for (order.approved)." },
                    "data": { "description": "Any JSON: the resumed wait's output." },
                    "idempotency_key": {
                        "type": "string",
                        "description": "Posting twice with the same key stores the event once."
                    }
                },
                "required": ["topic"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            LIST_RUNS,
            "The newest Sandstep runs (at most limit, default 20), optionally of one workflow and one status.",
            object(json!({
                "type": "object",
                "properties": {
                    "workflow": { "type": "string" },
                    "status": {
                        "type": "string",
                        "enum": ["queued", "running", "paused", "completed", "failed", "canceling", "canceled"]
                    },
                    "limit": { "type": "integer", "minimum": 1, "maximum": 100 }
                },
                "additionalProperties": false
            })),
        )
        .annotate(read_only()),
    ]
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("a schema literal is an object"),
    }
}
