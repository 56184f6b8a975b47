//! Skipped end-to-end tests, counted. A test that skips itself (LEAKTRACER_SKIP_PRIVILEGED=1)
//! would otherwise show as `ok`: each one appends
//! `<test>\t<reason>` to the file named by $LEAKTRACER_SKIP_LOG (tests/src/lib.rs
//! `record_skip`), and `cargo xtask test` prints how many there were, naming them, and fails
//! with `--forbid-skips` (CI) when there was any.
use std::path::Path;

use anyhow::{Context as _, bail};

/// The variable naming the skip log; the same name as tests/src/lib.rs `SKIP_LOG_ENV`.
pub const LOG_ENV: &str = "LEAKTRACER_SKIP_LOG";

/// One skipped test: its name and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Skip {
    pub test: String,
    pub reason: String,
}

/// The skips recorded in `log`; none when no test wrote it.
pub fn read(log: &Path) -> anyhow::Result<Vec<Skip>> {
    match std::fs::read_to_string(log) {
        Ok(text) => Ok(parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading the skip log {}", log.display())),
    }
}

fn parse(text: &str) -> Vec<Skip> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (test, reason) = l.split_once('\t').unwrap_or((l, "no reason given"));
            Skip {
                test: test.to_string(),
                reason: reason.to_string(),
            }
        })
        .collect()
}

/// "0 end-to-end tests skipped." or "2 end-to-end tests SKIPPED: a (why), b (why)".
pub fn summary(skips: &[Skip]) -> String {
    if skips.is_empty() {
        return "xtask: 0 end-to-end tests skipped.".to_string();
    }
    let list: Vec<String> = skips
        .iter()
        .map(|s| format!("{} ({})", s.test, s.reason))
        .collect();
    format!(
        "xtask: {} end-to-end test{} SKIPPED: {}",
        skips.len(),
        if skips.len() == 1 { "" } else { "s" },
        list.join(", ")
    )
}

/// With `forbid` (CI), any skip is a failure.
pub fn check(skips: &[Skip], forbid: bool) -> anyhow::Result<()> {
    if forbid && !skips.is_empty() {
        bail!(
            "{} test(s) skipped and --forbid-skips is set: every privileged test must run here",
            skips.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_names_and_fails_only_when_forbidden() {
        let skips = parse(
            "foundation::brk_calls_match_stress_ng\tLEAKTRACER_SKIP_PRIVILEGED=1\n\noom::x\tno v1\n",
        );
        assert_eq!(skips.len(), 2);
        assert_eq!(skips[1].test, "oom::x");
        assert_eq!(skips[1].reason, "no v1");
        let text = summary(&skips);
        assert!(
            text.starts_with(
                "xtask: 2 end-to-end tests SKIPPED: foundation::brk_calls_match_stress_ng"
            ),
            "{text}"
        );
        assert!(check(&skips, false).is_ok());
        assert!(check(&skips, true).is_err());
        assert_eq!(summary(&[]), "xtask: 0 end-to-end tests skipped.");
        assert!(check(&[], true).is_ok());
    }

    #[test]
    fn a_missing_log_means_no_skips() {
        assert_eq!(
            read(Path::new("/nonexistent/skip-log")).unwrap(),
            Vec::new()
        );
    }
}
