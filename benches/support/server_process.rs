//! The reference server binary run as its own process on 127.0.0.1, as the examples that
//! measure or torture the client use it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use async_offers::ServerConfig;
use serde_json::Value;

type Failure = Box<dyn std::error::Error>;

/// A server process with a data dir of its own, killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// What the client needs to reach it.
    pub config: ServerConfig,
    /// Its paths for the wallet, hex, as the command line takes them.
    pub paths_hex: String,
    /// Kept open: the server writes more lines, and a closed pipe would end it.
    _stdout: BufReader<ChildStdout>,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `binary` with `extra_args`, serving the recipient `recipient`.
    pub fn spawn(binary: &Path, recipient: &str, extra_args: &[&str]) -> Result<Self, Failure> {
        let dir = tempfile::tempdir()?;
        let mut child = Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--recipient", recipient])
            .arg("--data-dir")
            .arg(dir.path())
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let described: Value = serde_json::from_str(&line)?;
        let field = |name: &str| described[name].as_str().unwrap_or_default().to_string();
        let config = ServerConfig::from_hex(&field("node_id"), &field("address"), &field("paths"))?;
        Ok(Self {
            child,
            config,
            paths_hex: field("paths"),
            _stdout: stdout,
            _dir: dir,
        })
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The reference server binary, built in release next to the running example.
pub fn release_server_binary() -> Result<PathBuf, Failure> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", "async-offers-server"])
        .status()?;
    if !status.success() {
        return Err("building async-offers-server failed".into());
    }
    sibling_binary("async-offers-server")
}

/// A binary of this workspace, next to the running example's own directory.
pub fn sibling_binary(name: &str) -> Result<PathBuf, Failure> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("unexpected example location")?;
    Ok(dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
}
