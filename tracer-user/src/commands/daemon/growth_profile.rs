//! `GET /debug/pprof/growth?pid=N&seconds=S[&rate=BYTES]`: where a process grows, on demand,
//! as a gzipped pprof profile — the capture `leaktracer profile --pid N` makes, served by the
//! DaemonSet so `go tool pprof http://NODE:9901/debug/pprof/growth?pid=N` works. One capture at
//! a time (each loads the sampling program), at most 60 s.
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    extract::Query,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::commands::profile::{self, Targets, pprof};

/// Longest capture a request may ask for.
pub const MAX_SECONDS: u64 = 60;
const DEFAULT_SECONDS: u64 = 10;
/// Mean bytes of first-touched memory per sample, as `profile --rate` (and its floor).
const DEFAULT_RATE: u64 = 512 << 10;
const MIN_RATE: u64 = 4 << 10;

/// What a request asks for, checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub pid: u32,
    pub seconds: u64,
    pub rate: u64,
}

/// Parse and check the query; the error is the message for a 400.
pub fn parse(q: &HashMap<String, String>) -> Result<Request, String> {
    let pid = q
        .get("pid")
        .ok_or("pid is required: /debug/pprof/growth?pid=N&seconds=S")?
        .parse::<u32>()
        .map_err(|_| "pid must be a process id")?;
    let seconds = match q.get("seconds") {
        None => DEFAULT_SECONDS,
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=MAX_SECONDS).contains(s))
            .ok_or(format!("seconds must be 1 to {MAX_SECONDS}"))?,
    };
    let rate = match q.get("rate") {
        None => DEFAULT_RATE,
        Some(r) => r
            .parse::<u64>()
            .ok()
            .filter(|r| *r >= MIN_RATE)
            .ok_or(format!(
                "rate must be bytes per sample, at least {MIN_RATE}"
            ))?,
    };
    Ok(Request { pid, seconds, rate })
}

/// Serve one request: 200 with the profile, 400 for a bad query, 404 for a process that is
/// not running, 409 while another capture runs, 500 when the capture failed.
pub async fn serve(
    host_root: PathBuf,
    busy: Arc<AtomicBool>,
    q: Query<HashMap<String, String>>,
) -> Response {
    let req = match parse(&q.0) {
        Ok(r) => r,
        Err(msg) => return (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response(),
    };
    if busy.swap(true, Ordering::AcqRel) {
        return (
            StatusCode::CONFLICT,
            "a growth profile is being captured; try again when it is done\n",
        )
            .into_response();
    }
    let targets = Targets {
        pids: vec![req.pid],
        ..Targets::default()
    };
    let result = profile::capture(
        &host_root,
        &targets,
        Duration::from_secs(req.seconds),
        req.rate,
        std::future::pending(),
    )
    .await
    .and_then(|(p, _)| pprof::gzipped(&p));
    busy.store(false, Ordering::Release);
    match result {
        Ok(bytes) => pprof_response(&format!("growth-{}.pb.gz", req.pid), bytes),
        Err(e) if e.downcast_ref::<crate::util::error::UsageError>().is_some() => {
            (StatusCode::NOT_FOUND, format!("{e:#}\n")).into_response()
        }
        Err(e) => {
            log::warn!("growth profile of pid {}: {e:#}", req.pid);
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response()
        }
    }
}

/// A gzipped pprof profile as a download named `filename`.
pub fn pprof_response(filename: &str, bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_query_is_checked() {
        assert_eq!(
            parse(&q(&[("pid", "42")])),
            Ok(Request {
                pid: 42,
                seconds: 10,
                rate: 512 << 10
            })
        );
        assert_eq!(
            parse(&q(&[("pid", "42"), ("seconds", "60"), ("rate", "65536")])),
            Ok(Request {
                pid: 42,
                seconds: 60,
                rate: 65536
            })
        );
        assert!(parse(&q(&[])).unwrap_err().contains("pid is required"));
        assert!(parse(&q(&[("pid", "x")])).is_err());
        assert!(parse(&q(&[("pid", "1"), ("seconds", "61")])).is_err());
        assert!(parse(&q(&[("pid", "1"), ("seconds", "0")])).is_err());
        assert!(parse(&q(&[("pid", "1"), ("rate", "100")])).is_err());
    }
}
