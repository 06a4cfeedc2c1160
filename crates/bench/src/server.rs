//! Processes under measurement: `leadflow serve` and the echo server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tonic::transport::Channel;

/// A child process serving gRPC on loopback; killed on drop.
pub(crate) struct Process {
    child: Child,
    pub(crate) address: String,
}

impl Process {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `program args… --listen 127.0.0.1:PORT` and waits until it answers.
    pub(crate) async fn start(program: &Path, args: &[&str], dir: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let address = format!("127.0.0.1:{port}");
        let child = Command::new(program)
            .args(args)
            .args(["--listen", &address])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", program.display()))?;
        let mut process = Self { child, address };
        for _ in 0..300 {
            if let Some(status) = process.child.try_wait()? {
                anyhow::bail!("{} exited at start: {status}", program.display());
            }
            if tokio::net::TcpStream::connect(&process.address).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Ok(process);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        process.stop();
        anyhow::bail!("{} did not come up", program.display())
    }

    /// `n` client channels (HTTP/2 connections).
    pub(crate) async fn channels(&self, n: usize) -> anyhow::Result<Vec<Channel>> {
        connect(&self.address, n).await
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `n` client channels (HTTP/2 connections) to `address` (`host:port`).
pub(crate) async fn connect(address: &str, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(
            tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    Ok(out)
}

/// The `leadflow` binary next to this one (both built by one `cargo build --release`).
pub(crate) fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}
