//! CPU time of this process and of a server process, from /proc (Linux).

use std::time::Instant;

/// Clock ticks a second (`getconf CLK_TCK`; 100 on Linux).
const TICKS: f64 = 100.0;

fn cpu_seconds(pid: &str) -> Option<f64> {
    cpu_split(pid).map(|(user, system)| user + system)
}

/// A process's CPU time so far, split: (user, system) seconds.
fn cpu_split(pid: &str) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user / TICKS, system / TICKS))
}

/// Context switches of every thread of a process so far: (voluntary, forced).
fn switches(pid: u32) -> Option<(u64, u64)> {
    let mut total = (0, 0);
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(status) = std::fs::read_to_string(task.ok()?.path().join("status")) else {
            continue; // a thread that ended meanwhile
        };
        for line in status.lines() {
            let count = |prefix: &str| {
                line.strip_prefix(prefix)
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            if let Some(n) = count("voluntary_ctxt_switches:") {
                total.0 += n;
            } else if let Some(n) = count("nonvoluntary_ctxt_switches:") {
                total.1 += n;
            }
        }
    }
    Some(total)
}

/// What a server spent on a stretch of calls: CPU time and context
/// switches, read from /proc before and after.
pub(crate) struct Spent {
    pid: u32,
    cpu: (f64, f64),
    switches: (u64, u64),
}

impl Spent {
    pub(crate) fn start(pid: u32) -> Option<Self> {
        Some(Self {
            pid,
            cpu: cpu_split(&pid.to_string())?,
            switches: switches(pid)?,
        })
    }

    /// Per call: user µs, system µs, context switches (all of the server's
    /// threads; a thread that ended during the stretch is not counted).
    pub(crate) fn per_call(&self, calls: u64) -> Option<(f64, f64, f64)> {
        let (user, system) = cpu_split(&self.pid.to_string())?;
        let (voluntary, forced) = switches(self.pid)?;
        #[allow(clippy::cast_precision_loss)]
        let n = calls.max(1) as f64;
        #[allow(clippy::cast_precision_loss)]
        let switched = (voluntary + forced).saturating_sub(self.switches.0 + self.switches.1) as f64;
        Some((
            (user - self.cpu.0) * 1e6 / n,
            (system - self.cpu.1) * 1e6 / n,
            switched / n,
        ))
    }
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
    status_mib(pid, "VmRSS:")
}

/// A process's resident memory at its peak since the peak was last reset
/// (`VmHWM`), MiB.
pub(crate) fn peak_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmHWM:")
}

/// A `kB` line of /proc/PID/status, MiB.
fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}
