//! The web UI at /ui in a real headless Chromium, against a real server on
//! 127.0.0.1:0 with real guests: what people operating runs rely on. Each
//! test saves screenshots under `target/ui-screenshots/`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::browser::Browser;
use crate::support::server::*;
use crate::waits::wait_status;

const STORY: &str = r#"
name: story
inputs:
  who: { type: string, required: true, description: "Who the story is about" }
  times: { type: integer, default: 1 }
steps:
  - id: hello
    module: hello
    input: { name: "{{ inputs.who }}" }
  - id: tell
    module: hostile
    input: { mode: say, text: "{{ steps.hello.output.greeting }}" }
  - id: echo
    module: echo
    input: { told: "{{ steps.tell.output.said }}", by: "{{ inputs.who }}" }
  - id: shout
    needs: [hello]
    module: echo
    input: { loud: true }
output: "{{ steps.echo.output }}"
"#;

async fn story() -> (TestServer, String) {
    let server = TestServer::with_workflow("story", STORY).await;
    let (status, run) = server
        .post_json(
            "/v1/workflows/story/runs?wait=20s",
            json!({ "input": { "who": "Ada" } }),
        )
        .await;
    assert_eq!((status, run["status"].as_str()), (201, Some("completed")), "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    (server, id)
}

fn node(step: &str) -> String {
    format!(".node[data-step=\"{step}\"]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_list_shows_a_stored_run_and_its_page_every_step_output_and_logs() {
    let (server, id) = story().await;
    let browser = Browser::open().await;
    browser.goto(&format!("{}/ui", server.url)).await;
    let row = format!("tr[data-run=\"{id}\"]");
    browser.find(&row).await;
    assert_eq!(browser.text(&format!("{row} .badge")).await, "completed");
    assert_eq!(browser.text(&format!("{row} td.steps")).await, "4/4");
    assert!(browser.text(&row).await.contains("story v1"));
    browser.screenshot("runs-list").await;

    browser.click(&format!("{row} a")).await;
    for step in ["hello", "tell", "echo", "shout"] {
        let status = browser.find(&node(step)).await.attr("data-status").await.unwrap();
        assert_eq!(status.as_deref(), Some("succeeded"), "step {step}");
        assert_eq!(browser.text(&format!("{} .badge", node(step))).await, "succeeded");
    }
    // Laid out by dependency level: hello, then tell and shout, then echo.
    let left = |step: &str| {
        format!(
            "return parseInt(document.querySelector('{}').style.left);",
            node(step).replace('"', "\\\"")
        )
    };
    let x: Vec<i64> = futures_util::future::join_all(["hello", "tell", "shout", "echo"].map(|s| {
        let script = left(s);
        let browser = &browser;
        async move { browser.script(&script).await.as_i64().unwrap() }
    }))
    .await;
    assert!(x[0] < x[1] && x[1] == x[2] && x[2] < x[3], "levels: {x:?}");
    browser.screenshot("run-dag").await;

    browser.click(&format!("{} button", node("tell"))).await;
    let output = browser.text("#step-output").await;
    assert!(output.contains("\"said\": \"Hello, Ada!\""), "{output}");
    // Each line with its level (shown in capitals) and attempt.
    assert_eq!(browser.text(".logs li.log-info .level").await, "INFO");
    assert_eq!(browser.text(".logs li.log-info .where").await, "#1");
    assert_eq!(browser.text(".logs li.log-info .message").await, "Hello, Ada!");
    let input = browser.text("#step-panel .io-pair pre").await;
    assert!(
        input.contains("\"mode\": \"say\""),
        "the attempt's rendered input: {input}"
    );
    assert_eq!(
        browser.text("table.attempts tbody tr td:nth-child(3)").await,
        "succeeded"
    );
    browser.screenshot("step-detail").await;

    // The modules page lists what the workflow is made of.
    browser.goto(&format!("{}/ui#/modules", server.url)).await;
    let modules = browser.text("table.modules tbody").await;
    assert!(
        modules.contains("hello") && modules.contains("echo") && modules.contains("step"),
        "{modules}"
    );
    browser.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_step_turns_from_running_to_succeeded_without_a_reload() {
    let server = TestServer::with_workflow(
        "slow",
        "name: slow\nsteps:\n  - id: nap\n    module: hostile\n    input: { mode: sleep, ms: 2500 }\n  - id: after\n    module: echo\n    input: { slept: \"{{ steps.nap.output.slept_ms }}\" }\n",
    )
    .await;
    let browser = Browser::open().await;
    let id = server.start_run("slow").await;
    browser.goto(&format!("{}/ui#/runs/{id}", server.url)).await;
    browser.find(&format!("{}[data-status=\"running\"]", node("nap"))).await;
    assert_eq!(browser.text(&format!("{} .badge", node("nap"))).await, "running");
    browser.script("window.sameDocument = true;").await;
    browser.screenshot("live-running").await;
    browser
        .find(&format!("{}[data-status=\"succeeded\"]", node("after")))
        .await;
    assert_eq!(browser.text(&format!("{} .badge", node("nap"))).await, "succeeded");
    assert_eq!(
        browser.script("return window.sameDocument === true;").await,
        json!(true),
        "no reload"
    );
    browser
        .wait_until("document.querySelector('.run-header .badge').textContent === 'completed'")
        .await;
    browser.screenshot("live-succeeded").await;
    browser.close().await;
    server.stop().await;
}

const APPROVAL: &str = r#"
name: approval
inputs:
  ticket: { type: string, required: true }
steps:
  - id: draft
    module: echo
    input: { text: "draft {{ inputs.ticket }}" }
  - id: approve
    needs: [draft]
    wait:
      event: "approval.{{ inputs.ticket }}"
      timeout: 1h
  - id: publish
    module: echo
    input: { by: "{{ steps.approve.output.by }}", approved: "{{ steps.approve.output.approved }}" }
output: "{{ steps.publish.output }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_paused_on_a_wait_is_approved_from_the_page_and_completes() {
    let server = TestServer::with_workflow("approval", APPROVAL).await;
    let (status, run) = server
        .post_json("/v1/workflows/approval/runs", json!({ "input": { "ticket": "T-7" } }))
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    wait_status(&server, &id, "paused").await;

    let browser = Browser::open().await;
    browser.goto(&format!("{}/ui#/runs/{id}", server.url)).await;
    browser
        .click(&format!("{}[data-status=\"waiting\"] button", node("approve")))
        .await;
    let form = browser.text("form.approval").await;
    assert!(form.contains("approval.T-7"), "the resolved topic: {form}");
    let textarea = browser.find("#approval-data").await;
    textarea.clear().await.unwrap();
    textarea.send_keys("{\"by\": \"ana\"}").await.unwrap();
    browser.screenshot("approval").await;
    browser.click("#approve").await;
    browser
        .find(&format!("{}[data-status=\"succeeded\"]", node("publish")))
        .await;
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["output"], json!({ "by": "ana", "approved": true }));
    browser.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_form_shows_the_apis_message_for_a_missing_required_input() {
    let server = TestServer::with_workflow("story", STORY).await;
    let browser = Browser::open().await;
    browser.goto(&format!("{}/ui#/workflows", server.url)).await;
    browser.click("a[href=\"#/workflows/story\"]").await;
    let label = browser.text("label[for=\"input-who\"]").await;
    assert_eq!(label, "who (string, required)");
    assert!(browser.text("pre.source").await.contains("module: hostile"));
    // STORY has no description: nothing stands in for it (once "null").
    let after_versions = browser
        .script("return document.querySelector('nav.versions').nextElementSibling.textContent;")
        .await;
    assert!(
        after_versions.as_str().unwrap().starts_with("Version 1 applied"),
        "{after_versions}"
    );
    let page = browser.text("main").await;
    assert!(!page.contains("null") && !page.contains("undefined"), "{page}");
    browser.click("#start").await;
    // The API's own words, beside the field.
    let (_, answer) = server
        .post_json("/v1/workflows/story/runs", json!({ "input": {} }))
        .await;
    let api_message = answer["errors"][0]["message"].as_str().unwrap().to_string();
    assert_eq!(api_message, "input who is required");
    browser
        .wait_until("document.getElementById('input-who-error').textContent !== ''")
        .await;
    assert_eq!(browser.text("#input-who-error").await, api_message);
    browser.screenshot("start-form-error").await;

    browser.find("#input-who").await.send_keys("Grace").await.unwrap();
    browser.click("#start").await;
    browser.find(".run-header").await;
    let url = browser.client.current_url().await.unwrap();
    let id = url.fragment().unwrap().trim_start_matches("/runs/").to_string();
    let run = server.wait_run(&id).await;
    assert_eq!(run["input"], json!({ "who": "Grace", "times": 1 }));
    browser.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_the_page_asks_for_one_and_shows_no_data_without_it() {
    let server = TestServer::start_with(|c| {
        c.tokens = vec![sandstep::server::auth::ApiToken::parse("ops:s3cret-token-for-ui").unwrap()];
    })
    .await;
    server.push_test_modules().await;
    let (status, body) = server.apply("story", STORY).await;
    assert_eq!(status, 201, "{body}");
    let (status, run) = server
        .post_json(
            "/v1/workflows/story/runs?wait=20s",
            json!({ "input": { "who": "Ada" } }),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap();

    let browser = Browser::open().await;
    browser.goto(&format!("{}/ui", server.url)).await;
    browser.find("form.token-prompt").await;
    assert!(!browser.has("table.runs").await, "no runs table without a token");
    let page = browser.text("main").await;
    assert!(!page.contains(id) && !page.contains("story"), "no data: {page}");
    browser.screenshot("token-prompt").await;

    browser
        .find("#token")
        .await
        .send_keys("s3cret-token-for-ui")
        .await
        .unwrap();
    browser.click("form.token-prompt button").await;
    browser.find(&format!("tr[data-run=\"{id}\"]")).await;
    let kept = browser.script("return sessionStorage.getItem('sandstep.token');").await;
    assert_eq!(kept, json!("s3cret-token-for-ui"));
    browser.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_steps_attempts_show_their_error_kind_and_message() {
    let yaml = "name: flaky\nsteps:\n  - id: fetch\n    module: echo\n    input: { url: \"https://example.test/orders\" }\n  - id: charge\n    needs: [fetch]\n    module: hostile\n    input: { mode: error }\n    retry: { max_attempts: 3, initial_interval: 10ms }\n  - id: notify\n    module: echo\n    input: { charged: \"{{ steps.charge.output }}\" }\n";
    let server = TestServer::with_workflow("flaky", yaml).await;
    let id = server.start_run("flaky").await;
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "failed");

    let browser = Browser::sized(1280, 1300).await;
    browser.goto(&format!("{}/ui#/runs/{id}", server.url)).await;
    browser
        .click(&format!("{}[data-status=\"failed\"] button", node("charge")))
        .await;
    let rows = browser
        .script("return document.querySelectorAll('table.attempts tbody tr').length;")
        .await;
    assert_eq!(rows, json!(3));
    for n in 1..=3 {
        let row = format!("table.attempts tr[data-attempt=\"{n}\"]");
        assert_eq!(browser.text(&format!("{row} td.kind")).await, "guest_error");
        assert_eq!(browser.text(&format!("{row} td.message")).await, "the guest says no");
        assert_eq!(browser.text(&format!("{row} .badge")).await, "failed");
    }
    assert_eq!(browser.text(&format!("{} .badge", node("notify"))).await, "skipped");
    browser.screenshot("failed-attempts").await;
    browser.close().await;
    server.stop().await;
}

/// Not a timed assertion: prints how long the runs page took to show its
/// rows with 10,000 runs stored, as the browser measured it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_page_shows_its_rows_with_ten_thousand_runs_stored() {
    let server = TestServer::with_workflow(
        "tiny",
        "name: tiny\nsteps:\n  - id: one\n    module: echo\n    input: { n: \"{{ inputs.n }}\" }\n",
    )
    .await;
    for batch in 0..10 {
        let runs: Vec<Value> = (0..1000)
            .map(|i| json!({ "input": { "n": batch * 1000 + i } }))
            .collect();
        let (status, body) = server
            .post_json("/v1/workflows/tiny/runs/batch", json!({ "runs": runs }))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while server.get("/v1/runs?status=completed&limit=1").await.1["runs"]
        .as_array()
        .unwrap()
        .is_empty()
        || !server.get("/v1/runs?status=queued&limit=1").await.1["runs"]
            .as_array()
            .unwrap()
            .is_empty()
        || !server.get("/v1/runs?status=running&limit=1").await.1["runs"]
            .as_array()
            .unwrap()
            .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "the runs did not end");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let browser = Browser::open().await;
    let mut shown = Vec::new();
    let mut api = Vec::new();
    for _ in 0..5 {
        browser.goto("about:blank").await;
        browser.goto(&format!("{}/ui#/runs", server.url)).await;
        browser
            .wait_until("performance.getEntriesByName('runs-shown').length > 0")
            .await;
        let ms = browser
            .script("return performance.getEntriesByName('runs-shown')[0].startTime;")
            .await;
        shown.push(ms.as_f64().unwrap());
        let ms = browser
            .script(
                "return performance.getEntriesByType('resource').find((r) => r.name.includes('/v1/runs?')).duration;",
            )
            .await;
        api.push(ms.as_f64().unwrap());
        assert_eq!(
            browser
                .script("return document.querySelectorAll('table.runs tbody tr[data-run]').length;")
                .await,
            json!(50)
        );
    }
    shown.sort_by(f64::total_cmp);
    api.sort_by(f64::total_cmp);
    println!(
        "runs page with 10,000 runs stored: rows shown {:.0} ms after navigation (median of 5; min {:.0}, max {:.0}); \
         GET /v1/runs {:.0} ms (min {:.0}, max {:.0})",
        shown[2], shown[0], shown[4], api[2], api[0], api[4]
    );
    browser.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_fits_a_phone_and_its_steps_are_selected_with_the_keyboard() {
    let (server, id) = story().await;
    let browser = Browser::sized(390, 844).await;
    browser.goto(&format!("{}/ui#/runs/{id}", server.url)).await;
    browser
        .find(&format!("{}[data-status=\"succeeded\"]", node("echo")))
        .await;
    // The page does not scroll sideways; the graph scrolls in its own box.
    let fits = browser
        .script("return document.documentElement.scrollWidth <= window.innerWidth;")
        .await;
    assert_eq!(fits, json!(true));
    browser
        .script(&format!(
            "document.querySelector('{} button').focus();",
            node("echo").replace('"', "\\\"")
        ))
        .await;
    let focused = browser
        .script("return document.activeElement.closest('.node').dataset.step;")
        .await;
    assert_eq!(focused, json!("echo"));
    browser
        .client
        .active_element()
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();
    browser
        .wait_until("document.querySelector('#step-panel h2') !== null")
        .await;
    assert!(browser.text("#step-panel h2").await.starts_with("Step echo"));
    assert_eq!(
        browser
            .script("return document.activeElement === document.querySelector('#step-panel h2');")
            .await,
        json!(true),
        "focus moves to the selected step"
    );
    browser.screenshot("run-phone").await;
    browser.close().await;
    server.stop().await;
}

/// A code run's page: its calls in call order, calls submitted together
/// side by side, and calls made after the page was opened appear without a
/// reload (the approval is given from the page).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_runs_calls_show_in_call_order_side_by_side_and_live() {
    let server = crate::code_workflows::order_server("rust").await;
    let order = json!({ "order_id": "o-ui", "customer": "ui", "amount": 5000, "items": ["a", "b", "c"] });
    let id = crate::waits::start(&server, "order", order).await;
    wait_status(&server, &id, "paused").await;

    let browser = Browser::open().await;
    browser.goto(&format!("{}/ui#/runs/{id}", server.url)).await;
    browser
        .find(&format!("{}[data-status=\"waiting\"]", node("approval")))
        .await;
    assert!(!browser.has(&node("notify")).await, "no call after the wait yet");
    browser.script("window.sameDocument = true;").await;
    browser.click(&format!("{} button", node("approval"))).await;
    let textarea = browser.find("#approval-data").await;
    textarea.clear().await.unwrap();
    textarea.send_keys("{\"approved\": true}").await.unwrap();
    browser.click("#approve").await;
    browser
        .find(&format!("{}[data-status=\"succeeded\"]", node("notify")))
        .await;
    assert_eq!(
        browser.script("return window.sameDocument === true;").await,
        json!(true),
        "no reload"
    );
    browser.screenshot("code-run").await;
    let place = browser
        .script(
            "return [...document.querySelectorAll('.node')].map((n) => [n.dataset.step, parseInt(n.style.left), parseInt(n.style.top)]);",
        )
        .await;
    let place: Vec<(String, i64, i64)> = serde_json::from_value(place).unwrap();
    let at = |step: &str| place.iter().find(|p| p.0 == step).map(|p| (p.1, p.2)).unwrap();
    let ids: Vec<&str> = place.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        ids,
        ["validate", "charge", "approval", "ship-0", "ship-1", "ship-2", "notify"]
    );
    // One row per call made after the one before ended...
    for (above, below) in [
        ("validate", "charge"),
        ("charge", "approval"),
        ("approval", "ship-0"),
        ("ship-0", "notify"),
    ] {
        assert!(at(above).1 < at(below).1, "{above} above {below}: {place:?}");
        assert_eq!(at(above).0, 0, "{place:?}");
    }
    // ...and the shipments, submitted together, side by side.
    assert_eq!(
        (at("ship-1").1, at("ship-2").1),
        (at("ship-0").1, at("ship-0").1),
        "{place:?}"
    );
    assert!(
        at("ship-0").0 < at("ship-1").0 && at("ship-1").0 < at("ship-2").0,
        "{place:?}"
    );
    let run = server.wait_run(&id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["steps"][4]["row"], 3, "{run}");
    browser.close().await;
    server.stop().await;
}

/// A step held back by a `throttle:` key shows as pending, why, and under
/// which key, so a slow run is told from a throttled one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_step_shows_its_reason_and_key() {
    let yaml = "name: gate\nsteps:\n  - id: call\n    module: hostile\n    throttle: { key: shared, concurrency: 1 }\n    input: { mode: sleep, ms: 3000 }\n";
    let server = TestServer::with_workflow("gate", yaml).await;
    let first = server.start_run("gate").await;
    wait_status(&server, &first, "running").await;
    let second = server.start_run("gate").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, run) = server.get(&format!("/v1/runs/{second}")).await;
        if run["steps"][0]["reason"] == "throttled" {
            assert_eq!(run["steps"][0]["status"], "pending", "{run}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never throttled: {run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let browser = Browser::sized(1280, 1000).await;
    browser.goto(&format!("{}/ui#/runs/{second}", server.url)).await;
    browser
        .click(&format!("{}[data-status=\"pending\"] button", node("call")))
        .await;
    browser
        .wait_until("[...document.querySelectorAll('dl.facts dt')].some((dt) => dt.textContent === 'Throttle key')")
        .await;
    let facts = browser
        .script(
            "return Object.fromEntries([...document.querySelectorAll('dl.facts dt')].map((dt) => [dt.textContent, dt.nextElementSibling.textContent]));",
        )
        .await;
    assert_eq!(facts["Reason"], "throttled", "{facts}");
    assert_eq!(facts["Throttle key"], "shared", "{facts}");
    browser.screenshot("throttled-step").await;
    browser.close().await;
    for id in [&first, &second] {
        assert_eq!(server.wait_run(id).await["status"], "completed");
    }
    server.stop().await;
}

/// The runs list's status filter, chosen as a user chooses it: `canceled`
/// shows the canceled runs and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_list_filtered_by_canceled_shows_only_canceled_runs() {
    let server = TestServer::with_workflow(
        "nap",
        "name: nap\ninputs:\n  ms: { type: integer }\nsteps:\n  - id: nap\n    module: hostile\n    input: { mode: sleep, ms: \"{{ inputs.ms }}\" }\n",
    )
    .await;
    let mut canceled = Vec::new();
    for _ in 0..2 {
        let (status, run) = server
            .post_json("/v1/workflows/nap/runs", json!({ "input": { "ms": 20000 } }))
            .await;
        assert_eq!(status, 201, "{run}");
        let id = run["id"].as_str().unwrap().to_string();
        let (status, _) = server.post_json(&format!("/v1/runs/{id}/cancel"), json!({})).await;
        assert_eq!(status, 202);
        assert_eq!(server.wait_run(&id).await["status"], "canceled");
        canceled.push(id);
    }
    for _ in 0..3 {
        let (status, run) = server
            .post_json("/v1/workflows/nap/runs?wait=20s", json!({ "input": { "ms": 1 } }))
            .await;
        assert_eq!((status, run["status"].as_str()), (201, Some("completed")), "{run}");
    }

    let browser = Browser::sized(1280, 1000).await;
    browser.goto(&format!("{}/ui#/runs", server.url)).await;
    browser
        .wait_until("document.querySelectorAll('tr[data-run]').length === 5")
        .await;
    browser.click("#f-status").await;
    browser.click("#f-status option[value=\"canceled\"]").await;
    browser.click("form.filters button[type=\"submit\"]").await;
    browser
        .wait_until(
            "location.hash.includes('status=canceled') && document.querySelectorAll('tr[data-run]').length === 2",
        )
        .await;
    let shown = browser
        .script(
            "return [...document.querySelectorAll('tr[data-run]')].map((tr) => [tr.dataset.run, tr.dataset.status]);",
        )
        .await;
    let mut shown: Vec<(String, String)> = serde_json::from_value(shown).unwrap();
    shown.sort();
    canceled.sort();
    let expected: Vec<(String, String)> = canceled.iter().map(|id| (id.clone(), "canceled".into())).collect();
    assert_eq!(shown, expected);
    browser.screenshot("runs-canceled-filter").await;
    browser.close().await;
    server.stop().await;
}

/// A yearly schedule in a time zone shows its next fire on the workflow
/// page: 9:00 on January 1st in Paris (+01:00 then), in the year to come;
/// a webhook shows its route, its signature and what it does; an MCP tool
/// says so, with its description.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yearly_schedule_shows_its_next_fire_in_its_time_zone() {
    let yaml = "name: yearly\ntriggers:\n  - schedule: \"0 9 1 1 *\"\n    timezone: Europe/Paris\n  - webhook: yearly-hook\n    secret: HOOK\n    signature: stripe\n    event: year.turned\nmcp: { description: Marks the year. }\nsteps:\n  - { id: one, module: echo, input: { n: 1 } }\n";
    let server = TestServer::with_workflow("yearly", yaml).await;
    use chrono::Datelike as _;
    let now = chrono::Utc::now();
    let this_year = chrono::DateTime::parse_from_rfc3339(&format!("{}-01-01T09:00:00+01:00", now.year())).unwrap();
    let year = if now < this_year { now.year() } else { now.year() + 1 };
    let expected = format!("{year}-01-01T09:00:00+01:00");

    let browser = Browser::open().await;
    browser.goto(&format!("{}/ui#/workflows", server.url)).await;
    browser.click("a[href=\"#/workflows/yearly\"]").await;
    let shown = browser.text("ul.triggers li").await;
    assert_eq!(shown, format!("0 9 1 1 * (Europe/Paris) — next: {expected}"));
    let hook = browser.text("ul.triggers li.hook").await;
    assert_eq!(
        hook,
        "Webhook POST /hooks/yearly-hook (signature: stripe) — posts event year.turned"
    );
    assert_eq!(
        browser.text("p.mcp").await,
        "An MCP tool: agents call yearly at POST /mcp — Marks the year."
    );
    browser.screenshot("yearly-schedule").await;
    browser.close().await;
    server.stop().await;
}
