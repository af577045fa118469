//! A real server on 127.0.0.1:0 in this process, and a real HTTP client.

use std::time::Duration;

use sandstep::server::{self, ServerConfig};
use serde_json::Value;

use super::guests;

pub struct TestServer {
    pub url: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
    pub data_dir: std::path::PathBuf,
    _dir: Option<tempfile::TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self::start_in(dir.path(), configure).await;
        server._dir = Some(dir);
        server
    }

    /// A server on an existing data directory (to restart on the same one).
    pub async fn start_in(data_dir: &std::path::Path, configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        super::share_compiled(data_dir);
        let mut config = ServerConfig::new(data_dir.to_path_buf());
        config.store = super::store::location(data_dir);
        configure(&mut config);
        let token = config.tokens.first().map(|t| t.secret.clone());
        let state = server::start(&config).await.expect("the server starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server::serve(listener, state, &config, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            url,
            http: reqwest::Client::new(),
            token,
            data_dir: data_dir.to_path_buf(),
            _dir: None,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.url));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        answer(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        answer(self.request(reqwest::Method::POST, path).json(&body)).await
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let response = self.request(reqwest::Method::GET, "/metrics").send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    pub async fn push(&self, name: &str, path: &std::path::Path) -> (u16, Value) {
        let bytes = std::fs::read(path).unwrap();
        answer(
            self.request(reqwest::Method::POST, "/v1/modules")
                .query(&[("name", name)])
                .header("content-type", "application/wasm")
                .body(bytes),
        )
        .await
    }

    pub async fn apply(&self, name: &str, yaml: &str) -> (u16, Value) {
        answer(
            self.request(reqwest::Method::PUT, &format!("/v1/workflows/{name}"))
                .header("content-type", "application/yaml")
                .body(yaml.to_string()),
        )
        .await
    }

    /// Pushes the usual test modules.
    pub async fn push_test_modules(&self) {
        let g = guests();
        for (name, path) in [
            ("hostile", g.hostile.clone()),
            ("hello", g.example("hello")),
            ("echo", g.example("echo")),
        ] {
            let (status, body) = self.push(name, &path).await;
            assert_eq!(status, 201, "{body}");
        }
    }

    /// A server with the test modules pushed and `yaml` applied as `name`.
    pub async fn with_workflow(name: &str, yaml: &str) -> TestServer {
        let server = TestServer::start().await;
        server.push_test_modules().await;
        let (status, body) = server.apply(name, yaml).await;
        assert_eq!(status, 201, "{body}");
        server
    }

    /// Starts a run of `workflow` with no input; returns its id.
    pub async fn start_run(&self, workflow: &str) -> String {
        let (status, run) = self
            .post_json(&format!("/v1/workflows/{workflow}/runs"), serde_json::json!({}))
            .await;
        assert_eq!(status, 201, "{run}");
        run["id"].as_str().expect("a run id").to_string()
    }

    /// Polls a run until its status is final.
    pub async fn wait_run(&self, id: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (_, run) = self.get(&format!("/v1/runs/{id}")).await;
            if ["completed", "failed", "canceled"].contains(&run["status"].as_str().unwrap_or("")) {
                return run;
            }
            assert!(std::time::Instant::now() < deadline, "run {id} did not end: {run}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
    }
}

/// Status and JSON body (Null when empty), asserting problem responses are
/// problem+json.
pub async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = response.text().await.unwrap();
    if status >= 400 {
        assert_eq!(content_type, "application/problem+json", "{status}: {text}");
    }
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// The problem type's last segment (`not-found`).
pub fn problem(body: &Value) -> &str {
    body["type"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("")
}
