//! `report --flame out.svg`: the trace's growth sites (`record --stacks`) as a flame graph,
//! one tower per process, each frame as wide as the memory first touched below it.
use std::{io::BufWriter, path::Path};

use anyhow::Context as _;

use crate::{commands::report::GrowthSitesReport, util::error::UsageError, util::format};

/// Write the folded stacks (see `SiteLog::folded`) as an SVG flame graph.
pub fn write_svg(
    path: &Path,
    folded: &[String],
    sampling: Option<&GrowthSitesReport>,
) -> anyhow::Result<()> {
    let Some(sampling) = sampling.filter(|_| !folded.is_empty()) else {
        return Err(UsageError::new(
            "--flame: the trace has no growth-site stacks of the processes asked for (record it with --stacks)",
        )
        .into());
    };
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = "Memory growth sites".into();
    opts.subtitle = Some(format!(
        "first-touched memory, one sample per {} on average; {} samples",
        format::bytes(sampling.mean_bytes as f64),
        sampling.samples
    ));
    opts.count_name = "bytes".into();
    opts.name_type = "Function:".into();
    opts.colors =
        inferno::flamegraph::color::Palette::Basic(inferno::flamegraph::color::BasicPalette::Mem);
    let file = std::fs::File::create(path)
        .with_context(|| format!("creating flame graph {}", path.display()))?;
    inferno::flamegraph::from_lines(
        &mut opts,
        folded.iter().map(String::as_str),
        BufWriter::new(file),
    )
    .with_context(|| format!("writing flame graph {}", path.display()))
}
