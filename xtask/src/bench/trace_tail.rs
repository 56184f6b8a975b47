//! Follow a `record` trace while it is written: new complete JSON lines since the last call.
use std::{
    fs::File,
    io::{Read as _, Seek as _, SeekFrom},
    path::PathBuf,
};

pub struct TraceTail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl TraceTail {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            offset: 0,
            partial: String::new(),
        }
    }

    /// Records written since the last call (a trailing partial line waits for the next).
    pub fn next_records(&mut self) -> Vec<serde_json::Value> {
        let Ok(mut f) = File::open(&self.path) else {
            return Vec::new();
        };
        let mut buf = String::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_string(&mut buf).is_err() {
            return Vec::new();
        }
        self.offset += buf.len() as u64;
        self.partial.push_str(&buf);
        let Some(end) = self.partial.rfind('\n') else {
            return Vec::new();
        };
        let complete: String = self.partial.drain(..=end).collect();
        complete
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::TraceTail;
    use std::io::Write as _;

    #[test]
    fn returns_complete_lines_once() {
        let path = std::env::temp_dir().join(format!("bench-tail-{}.jsonl", std::process::id()));
        let mut f = std::fs::File::create(&path).unwrap();
        write!(f, "{{\"type\":\"header\"}}\n{{\"type\":\"sam").unwrap();
        let mut tail = TraceTail::new(path.clone());
        assert_eq!(tail.next_records().len(), 1);
        assert!(tail.next_records().is_empty());
        writeln!(f, "ple\"}}").unwrap();
        let recs = tail.next_records();
        assert_eq!(recs[0]["type"], "sample");
        let _ = std::fs::remove_file(path);
    }
}
