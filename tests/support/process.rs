//! The one way tests start the `sandstep` binary: a command with none of
//! the caller's Sandstep environment, and a real `sandstep serve` process
//! that is killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// `sandstep` with no `SANDSTEP_*` variable inherited from the test runner.
pub fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sandstep"));
    for var in [
        "SANDSTEP_LOG",
        "SANDSTEP_URL",
        "SANDSTEP_TOKEN",
        "SANDSTEP_API_TOKENS",
        "SANDSTEP_DATA_DIR",
        "SANDSTEP_DATABASE_URL",
        "SANDSTEP_SECRETS_KEY",
    ] {
        command.env_remove(var);
    }
    for (var, _) in std::env::vars().filter(|(k, _)| k.starts_with("SANDSTEP_SECRET_")) {
        command.env_remove(var);
    }
    command
}

/// A `sandstep serve` process on 127.0.0.1:0.
pub struct Served {
    pub child: Child,
    pub url: String,
    /// The rest of its stderr, once it exits.
    pub stderr: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Served {
    /// Starts `sandstep serve` on `data_dir` with `extra` arguments and
    /// waits until it listens.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Served {
        super::share_compiled(data_dir);
        let mut command = command();
        super::store::on(&mut command, data_dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra);
        Served::spawn(&mut command)
    }

    /// Starts a `sandstep serve` command and waits until it listens.
    pub fn spawn(command: &mut Command) -> Served {
        let mut child = command.stderr(Stdio::piped()).spawn().expect("the server starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("the server prints its address").unwrap();
            if let Some(url) = line.strip_prefix("sandstep listening on ") {
                break url.to_string();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        let stderr = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
        Served {
            child,
            url,
            stderr: Some(stderr),
        }
    }

    /// Sends a signal (`STOP`, `CONT`) with the system's `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Served {
    /// Never leave a server behind, whatever the test did.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
