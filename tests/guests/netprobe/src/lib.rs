//! Tries to open a TCP connection. Rust's std on wasm32-wasip2 reaches the
//! network through `wasi:sockets`, which the sandbox does not link.

wit_bindgen::generate!({ path: "../../../wit/step.wit", world: "step" });

struct NetProbe;

impl Guest for NetProbe {
    fn run(_ctx: Context, _input: String) -> Result<String, StepError> {
        match std::net::TcpStream::connect("127.0.0.1:80") {
            Ok(_) => Ok(r#"{"connected": true}"#.into()),
            Err(e) => Ok(serde_json::json!({ "connected": false, "error": e.to_string() }).to_string()),
        }
    }
}

export!(NetProbe);
