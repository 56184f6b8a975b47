//! The growth profile as pprof (github.com/google/pprof, proto/profile.proto), gzipped: it
//! opens in `go tool pprof`, Grafana Pyroscope and Parca. The messages are declared here
//! with prost's derive (the fields leaktracer writes, with profile.proto's tags), so no
//! protoc is needed.
use std::collections::HashMap;
use std::io::Write as _;

use anyhow::Context as _;
use prost::Message as _;

use crate::model::growth::GrowthProfile;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Mapping {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    #[prost(int64, tag = "5")]
    pub filename: i64,
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
}

/// The string table: index 0 is "", each string once.
#[derive(Default)]
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Self::default();
        s.get("");
        s
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// Build the pprof message. Sample values: the samples taken (`alloc_samples`) and the
/// bytes they stand for (`alloc_space`, samples × the mean interval: memory made resident at
/// that stack), then the same for anonymous mmap and brk growth (`mapped_samples`,
/// `mapped_space`; `-sample_index=mapped_space`). A stack has one kind: the other pair is 0,
/// so memory mapped and then touched is never summed twice in one view, and the default view
/// (`alloc_space`) is resident growth. Each sample is labelled `growth` = touched, mapped or
/// brk. There is no `inuse_space`: a page given back is not traced to the stack that
/// touched it. Each sample carries its pid and command as labels. Locations are per (process, address): processes map binaries at different
/// addresses.
pub fn encode(p: &GrowthProfile) -> Profile {
    let mut s = Strings::new();
    let mut out = Profile {
        sample_type: vec![
            ValueType {
                r#type: s.get("alloc_samples"),
                unit: s.get("count"),
            },
            ValueType {
                r#type: s.get("alloc_space"),
                unit: s.get("bytes"),
            },
            ValueType {
                r#type: s.get("mapped_samples"),
                unit: s.get("count"),
            },
            ValueType {
                r#type: s.get("mapped_space"),
                unit: s.get("bytes"),
            },
        ],
        period_type: Some(ValueType {
            r#type: s.get("alloc_space"),
            unit: s.get("bytes"),
        }),
        period: p.mean_bytes as i64,
        time_nanos: p.start_unix_ns,
        duration_nanos: p.duration_ns,
        ..Profile::default()
    };
    out.default_sample_type = out.sample_type[1].r#type;
    out.comment.push(s.get(&format!(
        "leaktracer growth profile: first-touch page faults (alloc_space), and anonymous mmap and brk growth (mapped_space), sampled every {} bytes on average (Poisson); a sample stands for that many bytes",
        p.mean_bytes
    )));
    for (i, m) in p.mappings.iter().enumerate() {
        let build_id = m.build_id.as_deref().map_or(0, |b| s.get(b));
        out.mapping.push(Mapping {
            id: i as u64 + 1,
            memory_start: m.start,
            memory_limit: m.end,
            file_offset: m.offset,
            filename: s.get(&m.path.to_string_lossy()),
            build_id,
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
        });
    }
    let mut functions: HashMap<(String, String), u64> = HashMap::new();
    let mut locations: HashMap<(u32, u64), u64> = HashMap::new();
    let (pid_key, comm_key, growth_key) = (s.get("pid"), s.get("comm"), s.get("growth"));
    for st in &p.stacks {
        let mut ids = Vec::with_capacity(st.frames.len());
        for f in &st.frames {
            let next_id = locations.len() as u64 + 1;
            let id = *locations.entry((st.pid, f.address)).or_insert(next_id);
            if id == next_id {
                let line = match &f.resolved.function {
                    Some(name) => {
                        let file = f.resolved.file.clone().unwrap_or_default();
                        let next_fn = functions.len() as u64 + 1;
                        let fid = *functions
                            .entry((name.clone(), file.clone()))
                            .or_insert(next_fn);
                        if fid == next_fn {
                            let n = s.get(name);
                            out.function.push(Function {
                                id: fid,
                                name: n,
                                system_name: n,
                                filename: s.get(&file),
                            });
                        }
                        vec![Line {
                            function_id: fid,
                            line: i64::from(f.resolved.line.unwrap_or(0)),
                        }]
                    }
                    None => Vec::new(),
                };
                out.location.push(Location {
                    id,
                    mapping_id: f.mapping.map_or(0, |m| m as u64 + 1),
                    address: f.address,
                    line,
                });
            }
            ids.push(id);
        }
        let comm = p.comms.get(&st.pid).cloned().unwrap_or_default();
        out.sample.push(Sample {
            location_id: ids,
            value: {
                let pair = [st.samples as i64, (st.samples * p.mean_bytes) as i64];
                if st.kind.is_touched() {
                    vec![pair[0], pair[1], 0, 0]
                } else {
                    vec![0, 0, pair[0], pair[1]]
                }
            },
            label: vec![
                Label {
                    key: pid_key,
                    num: i64::from(st.pid),
                    ..Label::default()
                },
                Label {
                    key: comm_key,
                    str: s.get(&comm),
                    ..Label::default()
                },
                Label {
                    key: growth_key,
                    str: s.get(st.kind.as_str()),
                    ..Label::default()
                },
            ],
        });
    }
    out.string_table = s.table;
    out
}

/// The profile gzipped (pprof's usual form).
pub fn gzipped(p: &GrowthProfile) -> anyhow::Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&encode(p).encode_to_vec())
        .context("compressing the profile")?;
    gz.finish().context("compressing the profile")
}

/// Write the profile gzipped.
pub fn write(p: &GrowthProfile, path: &std::path::Path) -> anyhow::Result<()> {
    std::fs::write(path, gzipped(p)?).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::symbols::ResolvedFrame;
    use crate::model::growth::{Frame, GrowthKind, MappingInfo, ProcessStack};

    #[test]
    fn encodes_a_profile_that_decodes_back() {
        let f = |addr, name: &str| Frame {
            address: addr,
            mapping: Some(0),
            resolved: ResolvedFrame {
                function: Some(name.into()),
                file: Some("main.go".into()),
                line: Some(7),
            },
        };
        let p = GrowthProfile {
            mean_bytes: 524_288,
            start_unix_ns: 1,
            duration_ns: 2,
            comms: [(42, "leaker".to_string())].into(),
            mappings: vec![MappingInfo {
                pid: 42,
                start: 0x400000,
                end: 0x500000,
                offset: 0,
                path: "/bin/leaker".into(),
                build_id: Some("abcd".into()),
            }],
            stacks: vec![
                ProcessStack {
                    pid: 42,
                    kind: GrowthKind::Touched,
                    samples: 3,
                    frames: vec![f(0x401000, "main.retain"), f(0x402000, "main.main")],
                },
                ProcessStack {
                    pid: 42,
                    kind: GrowthKind::Mapped,
                    samples: 1,
                    frames: vec![f(0x402000, "main.main")],
                },
            ],
        };
        let bytes = encode(&p).encode_to_vec();
        let back = Profile::decode(bytes.as_slice()).unwrap();
        let st = &back.string_table;
        assert_eq!(st[0], "");
        assert_eq!(back.sample.len(), 2);
        assert_eq!(back.sample[0].value, vec![3, 3 * 524_288, 0, 0]);
        assert_eq!(
            back.sample[1].value,
            vec![0, 0, 1, 524_288],
            "mapped growth apart"
        );
        let growth = |i: usize| st[back.sample[i].label[2].str as usize].as_str();
        assert_eq!((growth(0), growth(1)), ("touched", "mapped"));
        assert_eq!(back.location.len(), 2, "main.main's address shared");
        assert_eq!(back.function.len(), 2);
        assert_eq!(st[back.function[0].name as usize], "main.retain");
        assert_eq!(st[back.mapping[0].build_id as usize], "abcd");
        assert_eq!(back.period, 524_288);
        assert_eq!(st[back.default_sample_type as usize], "alloc_space");
    }
}
