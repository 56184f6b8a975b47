//! Streaming reader of JSON Lines traces: one line at a time (bounded memory for traces of
//! any size), every error naming its line. `lenient` skips bad lines with a warning instead.
use std::io::BufRead;

use crate::{trace::Record, util::error::UsageError};

/// Longest line accepted: a sample is < 1 KiB; anything near this is not a trace.
const MAX_LINE: usize = 1 << 20;

pub struct TraceReader<R> {
    input: R,
    lineno: u64,
    lenient: bool,
    buf: Vec<u8>,
    /// Lines skipped in lenient mode, with the first few messages kept for the report.
    pub skipped: u64,
    pub warnings: Vec<String>,
    /// Bytes consumed so far (for progress).
    pub bytes_read: u64,
}

impl<R: BufRead> TraceReader<R> {
    pub fn new(input: R, lenient: bool) -> Self {
        Self {
            input,
            lineno: 0,
            lenient,
            buf: Vec::with_capacity(4096),
            skipped: 0,
            warnings: Vec::new(),
            bytes_read: 0,
        }
    }

    pub fn line(&self) -> u64 {
        self.lineno
    }

    fn problem(&mut self, msg: String) -> anyhow::Result<()> {
        if self.lenient {
            self.skipped += 1;
            if self.warnings.len() < 10 {
                self.warnings.push(msg);
            }
            Ok(())
        } else {
            Err(UsageError::new(format!("{msg} (use --lenient to skip bad lines)")).into())
        }
    }

    /// Next record, or None at the end.
    pub fn next_record(&mut self) -> anyhow::Result<Option<Record>> {
        loop {
            self.buf.clear();
            let n = read_line_bounded(&mut self.input, &mut self.buf)?;
            if n == 0 {
                return Ok(None);
            }
            self.bytes_read += n as u64;
            self.lineno += 1;
            if n > MAX_LINE {
                self.problem(format!(
                    "line {}: longer than {MAX_LINE} bytes, not a leaktracer trace line",
                    self.lineno
                ))?;
                continue;
            }
            let complete = self.buf.last() == Some(&b'\n');
            let text = match std::str::from_utf8(&self.buf) {
                Ok(t) => t.trim(),
                Err(_) => {
                    self.problem(format!("line {}: not UTF-8", self.lineno))?;
                    continue;
                }
            };
            if text.is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(text) {
                Ok(r) => return Ok(Some(r)),
                Err(e) if !complete => {
                    self.problem(format!(
                        "line {}: truncated ({e}); the recording was probably killed",
                        self.lineno
                    ))?;
                }
                Err(e) => {
                    self.problem(format!("line {}: {e}", self.lineno))?;
                }
            }
        }
    }
}

/// read_until('\n') that stops storing after MAX_LINE + 1 bytes (still consuming the line),
/// so a corrupt file without newlines cannot exhaust memory. Returns bytes consumed.
fn read_line_bounded<R: BufRead>(r: &mut R, out: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let (done, used) = {
            let avail = r.fill_buf()?;
            if avail.is_empty() {
                return Ok(total);
            }
            match avail.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    if out.len() <= MAX_LINE {
                        let room = MAX_LINE + 1 - out.len();
                        out.extend_from_slice(&avail[..(i + 1).min(room)]);
                    }
                    (true, i + 1)
                }
                None => {
                    if out.len() <= MAX_LINE {
                        let room = MAX_LINE + 1 - out.len();
                        out.extend_from_slice(&avail[..avail.len().min(room)]);
                    }
                    (false, avail.len())
                }
            }
        };
        r.consume(used);
        total += used;
        if done {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str, lenient: bool) -> anyhow::Result<(Vec<Record>, u64)> {
        let mut r = TraceReader::new(text.as_bytes(), lenient);
        let mut v = Vec::new();
        while let Some(rec) = r.next_record()? {
            v.push(rec);
        }
        Ok((v, r.skipped))
    }

    const GOOD: &str = "{\"type\":\"exec\",\"t\":1.0,\"pid\":5,\"comm\":\"x\"}\n{\"type\":\"exec\",\"t\":2.0,\"pid\":6,\"comm\":\"y\"}\n";

    #[test]
    fn reads_good_lines() {
        let (v, skipped) = read_all(GOOD, false).unwrap();
        assert_eq!((v.len(), skipped), (2, 0));
    }

    #[test]
    fn corrupt_line_is_named() {
        let bad = format!("{GOOD}{{\"type\":\"exec\",\"t\":\"oops\"}}\n");
        let err = read_all(&bad, false).unwrap_err().to_string();
        assert!(err.starts_with("line 3:"), "{err}");
        assert!(err.contains("--lenient"), "{err}");
        let (v, skipped) = read_all(&bad, true).unwrap();
        assert_eq!((v.len(), skipped), (2, 1));
    }

    #[test]
    fn truncated_last_line_is_explained() {
        let cut = format!("{GOOD}{{\"type\":\"exec\",\"t\":3.0,\"pi");
        let err = read_all(&cut, false).unwrap_err().to_string();
        assert!(err.contains("line 3: truncated"), "{err}");
        assert_eq!(read_all(&cut, true).unwrap().0.len(), 2);
    }

    #[test]
    fn binary_garbage_and_giant_lines_do_not_exhaust_memory() {
        let mut data = vec![0xffu8; 10];
        data.push(b'\n');
        data.extend(std::iter::repeat_n(b'a', 8 << 20));
        data.push(b'\n');
        let mut r = TraceReader::new(&data[..], true);
        assert!(r.next_record().unwrap().is_none());
        assert_eq!(r.skipped, 2);
        assert!(
            r.buf.capacity() <= (2 << 20),
            "buffer stayed bounded by 2x the line limit, not the 8 MiB line: {}",
            r.buf.capacity()
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            let mut r = TraceReader::new(&data[..], true);
            while let Ok(Some(_)) = r.next_record() {}
            let mut strict = TraceReader::new(&data[..], false);
            while let Ok(Some(_)) = strict.next_record() {}
        }

        #[test]
        fn never_panics_on_mutated_records(cut in 0usize..200, flip in 0usize..200, byte in proptest::prelude::any::<u8>()) {
            let line = "{\"type\":\"sample\",\"t\":1.5,\"pid\":7,\"comm\":\"a\",\"rss_anon\":1,\"rss_file\":2,\"rss_shmem\":0,\"rss_swap\":0,\"mapped_anon\":0,\"mapped_file\":0,\"reserved\":0,\"unmapped\":0,\"released\":0,\"brk_grown\":0,\"brk_shrunk\":0,\"mremap_grown\":0,\"mremap_shrunk\":0,\"calls\":{\"mmap\":0,\"munmap\":0,\"brk\":0,\"mremap\":0,\"madvise\":0},\"failed_calls\":0}\n";
            let mut b = line.as_bytes().to_vec();
            let f = flip % b.len();
            b[f] = byte;
            b.truncate(cut.min(b.len()));
            let mut r = TraceReader::new(&b[..], true);
            while let Ok(Some(_)) = r.next_record() {}
        }
    }
}
