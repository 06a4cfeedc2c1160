//! CPU time of this process and of a server process, from /proc (Linux).

use std::time::Instant;

/// Clock ticks a second (`getconf CLK_TCK`; 100 on Linux).
const TICKS: f64 = 100.0;

fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields follow the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / TICKS)
}

fn cores() -> f64 {
    #[allow(clippy::cast_precision_loss)]
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// Measures the share of the machine's cores a client and a server use.
pub(crate) struct Meter {
    started: Instant,
    client: Option<f64>,
    server: Option<(u32, f64)>,
}

impl Meter {
    pub(crate) fn start(server: Option<u32>) -> Self {
        Self {
            started: Instant::now(),
            client: cpu_seconds("self"),
            server: server.and_then(|pid| cpu_seconds(&pid.to_string()).map(|s| (pid, s))),
        }
    }

    /// (client share, server share) of all cores over the interval.
    pub(crate) fn stop(self) -> (f64, Option<f64>) {
        let wall = self.started.elapsed().as_secs_f64().max(1e-6) * cores();
        let client = match (self.client, cpu_seconds("self")) {
            (Some(a), Some(b)) => (b - a) / wall,
            _ => 0.0,
        };
        let server = self
            .server
            .and_then(|(pid, a)| cpu_seconds(&pid.to_string()).map(|b| (b - a) / wall));
        (client, server)
    }
}

/// A process's resident memory now, MiB (`VmRSS` in /proc/PID/status).
pub(crate) fn resident_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}
