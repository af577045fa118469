//! `sandstep replay FILE.zip`: re-execute a run bundle's recorded attempts
//! (and its code against its journal) on this machine, with no server and
//! no data directory, and say for each whether it reproduced.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::EXIT_FAILED;
use crate::replay::{AttemptReplay, CodeReplay, Options, Report, Verdict};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A run bundle, as `sandstep runs export` writes it.
    pub bundle: PathBuf,
    /// Print the whole report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Replay only this step's recorded attempts, and print their logs.
    #[arg(long, value_name = "NAME")]
    pub step: Option<String>,
    /// With --step: run the step's last recorded attempt once with this
    /// input JSON instead (or @FILE).
    #[arg(long, value_name = "JSON", requires = "step")]
    pub input: Option<String>,
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let input = match &args.input {
        None => None,
        Some(text) => {
            let text = super::local::read_input(text)?;
            Some(serde_json::from_str(&text).context("--input is not JSON")?)
        }
    };
    let options = Options {
        step: args.step.clone(),
        input,
    };
    let sandbox = crate::replay::sandbox()?;
    let report = crate::replay::replay(&sandbox, &args.bundle, &options).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    let failed = report
        .attempts
        .iter()
        .any(|a| a.verdict == Verdict::ChangedInput && a.replayed.as_ref().is_some_and(|o| o.error.is_some()));
    Ok(if report.reproduced() && !failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

fn print_report(report: &Report) {
    for code in &report.code {
        println!("{}", code_line(code));
    }
    for attempt in &report.attempts {
        println!("{}", attempt_line(report, attempt));
        for line in &attempt.logs {
            let level = serde_json::to_value(line.level).ok();
            let level = level.as_ref().and_then(|l| l.as_str()).unwrap_or("info");
            println!("    [{level}] {}", line.message);
        }
        if attempt.verdict == Verdict::ChangedInput {
            if let Some(outcome) = &attempt.replayed {
                match (&outcome.output, &outcome.error) {
                    (Some(output), _) => println!("    output: {output}"),
                    (None, Some(error)) => println!("    error: {error}"),
                    (None, None) => {}
                }
            }
        }
        for op in attempt
            .diff
            .iter()
            .flat_map(|d| d.as_array().cloned().unwrap_or_default())
        {
            let value = op.get("value").map(|v| format!(" {v}")).unwrap_or_default();
            println!(
                "    {} {}{value}",
                op["op"].as_str().unwrap_or("?"),
                op["path"].as_str().unwrap_or("")
            );
        }
    }
    println!(
        "{} reproduced, {} differ, {} not replayable",
        report.same, report.different, report.not_replayable
    );
}

fn code_line(code: &CodeReplay) -> String {
    let mut line = format!("code of run {}: {}", code.run, verdict_text(code.verdict));
    if let (Some(before), Some(after)) = (code.recorded_fuel, code.replayed_fuel) {
        line += &format!(" (fuel {before} recorded, {after} replayed)");
    }
    if let Some(reason) = &code.reason {
        line += &format!(": {reason}");
    }
    line
}

fn attempt_line(report: &Report, attempt: &AttemptReplay) -> String {
    let run = if attempt.run == report.run {
        String::new()
    } else {
        format!("run {} ", attempt.run)
    };
    let item = attempt.item.map(|i| format!("[{i}]")).unwrap_or_default();
    let mut line = format!(
        "{run}{}{item} attempt {}: {}",
        attempt.step,
        attempt.attempt,
        verdict_text(attempt.verdict)
    );
    match (&attempt.recorded, &attempt.replayed) {
        (Some(before), Some(after)) if before.fuel_consumed != after.fuel_consumed => {
            line += &format!(
                " (fuel {} recorded, {} replayed)",
                before.fuel_consumed, after.fuel_consumed
            )
        }
        (_, Some(after)) => line += &format!(" (fuel {})", after.fuel_consumed),
        _ => {}
    }
    if let (Verdict::DifferentOutput, Some(before), Some(after)) =
        (attempt.verdict, &attempt.recorded, &attempt.replayed)
    {
        if before.error.is_some() || after.error.is_some() {
            line += &format!(": recorded {}, replayed {}", summary(before), summary(after));
        }
    }
    if let Some(reason) = &attempt.reason {
        line += &format!(": {reason}");
    }
    line
}

fn summary(outcome: &crate::replay::Outcome) -> String {
    match &outcome.error {
        Some(error) => error.to_string(),
        None => "an output".into(),
    }
}

fn verdict_text(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Same => "same output and fuel",
        Verdict::DifferentOutput => "different output",
        Verdict::DifferentFuel => "different fuel",
        Verdict::Diverged => "diverged",
        Verdict::NotReplayable => "not replayable",
        Verdict::ChangedInput => "ran with the changed input",
    }
}
