//! A WASI command that misbehaves on request: the first argument is the mode.

use std::io::{Read, Write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("echo");
    match mode {
        "echo" => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input).unwrap();
            eprintln!("read {} bytes", input.len());
            print!("{input}");
        }
        "args" => println!("{}", serde_json::json!({ "args": args })),
        "snoop" => {
            let passwd = std::fs::read_to_string("/etc/passwd").is_ok();
            let root = std::fs::read_dir("/").is_ok();
            let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
            println!("{}", serde_json::json!({ "passwd": passwd, "root_listing": root, "env": env }));
        }
        "fail" => {
            eprintln!("first problem");
            eprintln!("second problem");
            std::process::exit(3);
        }
        "non_json" => println!("hello, not json"),
        "invalid_utf8" => std::io::stdout().write_all(&[b'"', 0xff, 0xfe, b'"']).unwrap(),
        "big_output" => {
            let n: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
            println!("{}", serde_json::json!({ "data": "q".repeat(n) }));
        }
        #[cfg(target_env = "p2")]
        "raw_stdout" => {
            // One write of n bytes, without asking `check-write` first.
            let n: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
            let written = wasip2::cli::stdout::get_stdout().write(&vec![b'r'; n]).is_ok();
            eprintln!("written: {written}");
        }
        "stdout_flood" => loop {
            println!("flooding stdout with a line that is long enough to fill buffers quickly");
        },
        "stderr_flood" => loop {
            eprintln!("flooding stderr");
        },
        "loop" => loop {
            std::hint::black_box(0);
        },
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(64);
        }
    }
}
