//! The CPU a process has spent, as the examples that measure it read it.

/// CPU time the live threads of a process (`self` or a pid) have run, ms; `None` without
/// Linux's /proc.
pub fn cpu_ms(process: &str) -> Option<f64> {
    let nanos: f64 = std::fs::read_dir(format!("/proc/{process}/task"))
        .ok()?
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum();
    Some(nanos / 1e6)
}
