//! Every kind of invalid definition is rejected with its exact location, and
//! all errors are reported at once.

use crate::support::workflows::{errors, load};

const HEADER: &str = "name: wf\nsteps:\n";

/// (steps YAML, expected `location: message` lines)
const CASES: &[(&str, &[&str])] = &[
    (
        "  - { id: a, module: echo, modul: x }\n",
        &["steps.a.modul: unknown field `modul`, expected one of `id`, `module`, `input`, `args`, `needs`, `when`, `for_each`, `concurrency`, `rate`, `retry`, `on_failure`, `trigger`, `timeout`, `limits`, `sleep`, `wait`, `workflow`, `version`, `grants`, `cache`, `throttle`"],
    ),
    (
        "  - { id: a, module: echo, limits: { memroy: 1MiB } }\n",
        &["steps.a.limits.memroy: unknown field `memroy`, expected one of `fuel`, `memory`, `output`, `logs`, `http_requests`, `http_bytes`"],
    ),
    ("  - { id: a, module: echo }\n  - { id: a, module: echo }\n", &["steps.a: duplicate step id \"a\""]),
    (
        "  - { id: fetch-user, module: echo }\n",
        &["steps.fetch-user: invalid step id \"fetch-user\": use letters, digits and _ (it is read in templates as steps.<id>)"],
    ),
    ("  - { id: a, module: echo, needs: [b] }\n", &["steps.a.needs: unknown step \"b\""]),
    ("  - { id: a, module: echo, needs: [a] }\n", &["steps.a.needs: a step cannot need itself"]),
    (
        "  - { id: a, module: echo, input: { x: \"{{ steps.nope.output }}\" } }\n",
        &["steps.a.input: \"{{ steps.nope.output }}\" refers to unknown step \"nope\""],
    ),
    (
        "  - { id: a, module: echo }\n  - { id: b, module: echo, input: { x: \"{{ steps.a.outptu }}\" } }\n",
        &["steps.b.input: \"{{ steps.a.outptu }}\": steps.a.outptu is not a step field (use output, result or status)"],
    ),
    (
        "  - { id: a, module: echo, needs: [c] }\n  - { id: b, module: echo, needs: [a] }\n  - { id: c, module: echo, input: { x: \"{{ steps.b.output }}\" } }\n",
        &["steps.a: dependency cycle: a -> c -> b -> a"],
    ),
    (
        "  - { id: a, module: echo, input: { to: \"{{ steps.a. }}\" } }\n",
        &["steps.a.input.to: malformed expression `steps.a.`: syntax error (unexpected end of input, expected identifier or integer)"],
    ),
    ("  - { id: a, module: echo, when: \"inputs.x ==\" }\n", &["steps.a.when: malformed expression `inputs.x ==`: syntax error (unexpected end of input, expected expression)"]),
    ("  - { id: a, sleep: 1s, for_each: [1] }\n", &["steps.a.for_each: `for_each` cannot be combined with `sleep`"]),
    ("  - { id: a, module: echo, concurrency: 2 }\n", &["steps.a.concurrency: a number `concurrency` applies to `for_each` steps only (a keyed limit is `{ key, limit }`)"]),
    (
        "  - { id: a, module: echo, input: { x: \"{{ item }}\" } }\n",
        &["steps.a.input: \"{{ item }}\": `item` exists only in the input and args of a for_each step"],
    ),
    ("  - { id: a, module: echo, limits: { memory: 2GiB } }\n", &["steps.a.limits.memory: memory 2.0 GiB is above the cap of 1.0 GiB"]),
    ("  - { id: a, module: echo, timeout: 2h }\n", &["steps.a.timeout: timeout 2h is above the cap of 1h"]),
    ("  - { id: a, module: echo, timeout: 30 }\n", &["steps.a.timeout: expected a duration such as \"30s\", got a number"]),
    ("  - { id: a, module: nowhere }\n", &["steps.a.module: no module nowhere"]),
    ("  - { id: a, module: \"Bad Name\" }\n", &["steps.a.module: invalid module name \"Bad Name\": use 1-128 characters a-z, 0-9, '.', '_', '-', starting with a letter or digit"]),
    ("  - { id: a }\n", &["steps.a: a step needs `module` (a module to run), `sleep` (a duration), `wait` (an event) or `workflow` (a child run)"]),
    ("  - { id: a, module: echo, for_each: 3 }\n", &["steps.a.for_each: expected an array or a template such as \"{{ steps.x.output.items }}\", got a number"]),
    ("  - { id: a, module: echo, retry: { max_attempts: 0, backoff: 0.5 } }\n", &["steps.a.retry.max_attempts: must be between 1 and 100", "steps.a.retry.backoff: must be at least 1.0"]),
    ("  - { id: a, module: echo, input: { x: \"{{ nothing.here }}\" } }\n", &["steps.a.input: \"{{ nothing.here }}\" reads unknown name \"nothing\" (known: inputs, steps, item, index, event, secrets, run, workflow, request)"]),
    ("  - { id: a, module: echo, on_failure: explode }\n", &["steps.a.on_failure: unknown variant `explode`, expected one of `stop`, `continue`, `retry`"]),
];

#[test]
fn each_invalid_definition_is_located() {
    for (steps, expected) in CASES {
        let yaml = format!("{HEADER}{steps}");
        assert_eq!(errors(&yaml), *expected, "for:\n{yaml}");
    }
}

#[test]
fn all_errors_are_reported_at_once() {
    let yaml = r#"
name: many
inputs:
  user: { type: string }
steps:
  - { id: a, module: echo, bogus: 1 }
  - { id: b, module: echo, needs: [zzz] }
  - { id: c, module: echo, input: { u: "{{ inputs.usr }}" } }
  - { module: echo }
output: "{{ steps.q.output }}"
"#;
    assert_eq!(
        errors(yaml),
        [
            "steps.a.bogus: unknown field `bogus`, expected one of `id`, `module`, `input`, `args`, `needs`, `when`, `for_each`, `concurrency`, `rate`, `retry`, `on_failure`, `trigger`, `timeout`, `limits`, `sleep`, `wait`, `workflow`, `version`, `grants`, `cache`, `throttle`",
            "steps[3]: missing field `id`",
            "steps.b.needs: unknown step \"zzz\"",
            "steps.c.input: \"{{ inputs.usr }}\" reads undeclared input \"usr\" (declared: user)",
            "output: \"{{ steps.q.output }}\" refers to unknown step \"q\"",
        ]
    );
}

#[test]
fn top_level_errors_are_located() {
    assert_eq!(errors("name: wf\nstpes: []\n"), ["stpes: unknown field `stpes`, expected one of `name`, `description`, `inputs`, `defaults`, `concurrency`, `rate`, `timeout`, `steps`, `code`, `workflow_limits`, `output`, `triggers`, `secrets`, `budget`, `throttle`, `mcp`"]);
    assert_eq!(
        errors("name: wf\nsteps: []\n"),
        ["steps: a workflow needs at least one step (or `code:`, a workflow module)"]
    );
    assert_eq!(
        errors("name: Bad Name\nsteps:\n  - { id: a, module: echo }\n"),
        ["name: invalid workflow name \"Bad Name\": use a-z, 0-9, '.', '_', '-', starting with a letter or digit"]
    );
    assert_eq!(
        errors("- just\n- a list\n"),
        ["document: expected a mapping with name and steps, got an array"]
    );
    assert!(errors("name: [unclosed\n")[0].starts_with("document: invalid YAML: "));
    assert_eq!(
        errors("name: wf\ninputs:\n  n: { type: integer, default: x }\nsteps:\n  - { id: a, module: echo }\n"),
        ["inputs.n.default: input n must be an integer, got a string"]
    );
    assert_eq!(
        errors("name: wf\ndefaults:\n  limits: { fuel: 1000000000000 }\nsteps:\n  - { id: a, module: echo }\n"),
        ["defaults.limits.fuel: fuel 1000000000000 is above the cap of 100000000000"]
    );
}

/// `mcp:` is `true`, `false` or `{ description }`; the tool name may not
/// take the built-in tools' prefix.
#[test]
fn mcp_is_checked_and_located() {
    let step = "steps:\n  - { id: a, module: echo }\n";
    assert_eq!(
        errors(&format!("name: wf\nmcp: yes\n{step}")),
        ["mcp: expected true, false or { description }, got a string"]
    );
    assert_eq!(
        errors(&format!("name: wf\nmcp: {{ descripton: x }}\n{step}")),
        ["mcp: unknown field `descripton`, expected `description`"]
    );
    assert_eq!(
        errors(&format!("name: wf\nmcp: {{ description: \"\" }}\n{step}")),
        ["mcp.description: must be 1 to 4096 characters"]
    );
    assert_eq!(
        errors(&format!("name: sandstep_run\nmcp: true\n{step}")),
        ["mcp: the tool name \"sandstep_run\" starts with \"sandstep_\", which is kept for Sandstep's built-in tools: rename the workflow"]
    );
    let described = load(&format!("name: wf\ndescription: Does it.\nmcp: true\n{step}")).unwrap();
    assert_eq!(described.mcp.unwrap().description.as_deref(), Some("Does it."));
    let own = load(&format!(
        "name: wf\ndescription: Does it.\nmcp: {{ description: For agents. }}\n{step}"
    ))
    .unwrap();
    assert_eq!(own.mcp.unwrap().description.as_deref(), Some("For agents."));
    assert!(load(&format!("name: sandstep_run\nmcp: false\n{step}"))
        .unwrap()
        .mcp
        .is_none());
}

/// Grants are checked for form and against what the server allows, each
/// error at its place; a step's grants replace the defaults'.
#[test]
fn grants_are_located_and_checked_against_the_server() {
    let yaml = r#"
name: g
secrets: [API_KEY, "9bad"]
defaults:
  grants: { http: ["api.example.com"] }
steps:
  - id: a
    module: echo
    grants:
      http: ["https://x.io", "*.example.org:8443"]
      files: { scratch: 0, read: [data, scratch, "../etc"] }
      env: { "1X": "v", TOKEN: "{{ secrets.OTHER }}", N: 3 }
  - { id: b, sleep: 1s, grants: { http: ["a.io"] } }
  - { id: c, module: echo, input: { k: "{{ secrets.API_KEY }}" } }
"#;
    assert_eq!(
        errors(yaml),
        [
            "defaults.grants.http[0]: http host api.example.com is not allowed by this server (--allow-http: none)",
            "secrets[1]: secret name \"9bad\" must be 1 to 128 letters, digits or underscores, not starting with a digit",
            "steps.a.grants.http[0]: \"https://x.io\" is not a host pattern (a host, not a URL): use host, host:port or *.domain, e.g. api.example.com:443",
            "steps.a.grants.http[1]: http host *.example.org:8443 is not allowed by this server (--allow-http: none)",
            "steps.a.grants.files.scratch: must be larger than zero",
            "steps.a.grants.files.read[0]: directory \"data\" is not allowed by this server (--allow-read names: none)",
            "steps.a.grants.files.read[1]: \"scratch\" is the scratch directory's name, not a read-only one",
            "steps.a.grants.files.read[2]: directory name \"../etc\" must be 1 to 64 letters, digits, '_', '-' or '.', not starting with '.'",
            "steps.a.grants.env.1X: an environment variable name is letters, digits and _, not starting with a digit",
            "steps.a.grants.env.N: an environment value is a string (a template), got a number",
            "steps.a.grants.env.TOKEN: \"{{ secrets.OTHER }}\" names secret \"OTHER\", which `secrets:` does not list (listed: API_KEY, 9bad)",
            "steps.b.grants: `grants` cannot be combined with `sleep`",
        ]
    );

    let mut caps = sandstep::limits::Caps::default();
    caps.grants.allow_http("*.example.org:8443,api.example.com").unwrap();
    let ok = r#"
name: g
defaults:
  grants: { http: ["api.example.com"] }
steps:
  - { id: a, module: echo }
  - { id: b, module: echo, grants: { http: ["v2.example.org:8443"], env: { K: "{{ run.id }}" } } }
"#;
    let workflow = sandstep::workflow::load(ok, &caps, None).unwrap();
    assert_eq!(workflow.steps[0].grants.http[0].to_string(), "api.example.com");
    assert_eq!(
        workflow.steps[1].grants.http[0].to_string(),
        "v2.example.org:8443",
        "replaces the defaults"
    );
    assert_eq!(workflow.steps[1].env.len(), 1);
}

#[test]
fn json_definitions_are_accepted() {
    let workflow =
        load(r#"{"name": "j", "steps": [{"id": "a", "module": "echo", "input": {"x": "{{ inputs.y }}"}}]}"#).unwrap();
    assert_eq!(workflow.steps[0].id, "a");
}

#[test]
fn dependencies_come_from_needs_and_templates() {
    let workflow = load(
        r#"
name: deps
steps:
  - { id: a, module: echo }
  - { id: b, module: echo }
  - { id: c, module: echo }
  - { id: d, module: echo }
  - id: e
    module: cmd
    needs: [a]
    when: "steps.b.status == 'succeeded'"
    for_each: "{{ steps.c.output.list }}"
    args: ["{{ steps.d.output.flag }}"]
    input: { x: "{{ item }}" }
"#,
    )
    .unwrap();
    assert_eq!(workflow.steps[4].deps, [0, 1, 2, 3]);
}
