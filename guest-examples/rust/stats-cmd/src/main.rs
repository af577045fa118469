//! `stats-cmd`: a plain WASI command used as a step. Reads `{"numbers": [..]}`
//! on stdin, writes `{"count", "sum", "mean", "min", "max"}` on stdout.
//! `--round N` rounds the mean to N decimals. Bad input: a message on stderr
//! and exit code 2, which Sandstep turns into a failed attempt.

use std::io::Read;
use std::process::ExitCode;

fn fail(message: &str) -> ExitCode {
    eprintln!("stats-cmd: {message}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut round: Option<i32> = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--round" => match it.next().and_then(|n| n.parse().ok()) {
                Some(n) => round = Some(n),
                None => return fail("--round needs a whole number"),
            },
            other => return fail(&format!("unknown argument {other:?}")),
        }
    }
    let mut stdin = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut stdin) {
        return fail(&format!("cannot read stdin: {e}"));
    }
    let input: serde_json::Value = match serde_json::from_str(&stdin) {
        Ok(v) => v,
        Err(e) => return fail(&format!("input is not JSON: {e}")),
    };
    let Some(numbers) = input.get("numbers").and_then(|n| n.as_array()) else {
        return fail("input.numbers must be an array");
    };
    let Some(numbers) = numbers.iter().map(|n| n.as_f64()).collect::<Option<Vec<f64>>>() else {
        return fail("input.numbers must hold only numbers");
    };
    eprintln!("summarising {} numbers", numbers.len());
    let sum: f64 = numbers.iter().sum();
    let count = numbers.len();
    let mut mean = if count == 0 { 0.0 } else { sum / count as f64 };
    if let Some(places) = round {
        let factor = 10f64.powi(places);
        mean = (mean * factor).round() / factor;
    }
    let min = numbers.iter().cloned().fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))));
    let max = numbers.iter().cloned().fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    println!(
        "{}",
        serde_json::json!({ "count": count, "sum": sum, "mean": mean, "min": min, "max": max })
    );
    ExitCode::SUCCESS
}
