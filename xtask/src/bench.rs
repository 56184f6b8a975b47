//! `cargo xtask bench`: filled in by the benchmark work (issue: benchmarks against peers).
use std::path::Path;

pub fn run(_root: &Path, _bin: &Path, _smoke: bool) -> anyhow::Result<()> {
    anyhow::bail!("benchmarks are not implemented yet")
}
