//! Corpus-driven fuzzing of the input parsers (issue #5): the trace reader, the cgroup-path and
//! `/proc/<pid>/cgroup` parsers, the tracefs format-file parser and the BTF parser.
//!
//! `fuzz-corpus/<target>/` (next to Cargo.toml) keeps real inputs (this machine's tracefs
//! format files and `/proc/*/cgroup`, the recorded test trace, every cgroup path shape the
//! parser supports), broken variants of them, and what coverage-guided fuzzing found (see
//! docs/fuzzing.md). Every file is replayed through its parser here, and proptest mutates the
//! entries (truncate, flip/insert/delete bytes, insert dictionary tokens, duplicate lines,
//! splice two entries) with a fixed number of cases. Both check the parsers' invariants, not
//! just the absence of panics.
//!
//! A failing mutant is written to `fuzz-corpus/<target>/regression-<hash>` (so it is replayed
//! by every later run, whatever the corpus then holds) and its proptest seed to
//! `fuzz-corpus/regressions/<target>.txt`; commit both with the fix.
// An integration test crate: a panic (unwrap, expect) is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash as _, Hasher as _},
    path::{Path, PathBuf},
};

use proptest::{
    collection::vec,
    prelude::*,
    sample::Index,
    test_runner::{Config, FileFailurePersistence, TestCaseError, TestError, TestRunner},
};

use leaktracer::{
    host::identity::{Identity, PodNames, parse_cgroup_path, parse_proc_cgroup},
    kernel::btf::{KernelBtf, rss_layout, task_layout},
    kernel::tracefs::{Format, MAX_RECORD_SIZE},
    trace::Record,
    trace::reader::TraceReader,
};

/// trace_reader's line limit (private there); a longer line must be skipped, never parsed.
const MAX_LINE: usize = 1 << 20;
/// Mutants per target: keeps the whole module at a few seconds in a debug build.
const CASES: u32 = 256;

type Check = fn(&[u8]) -> Result<(), String>;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus")
}

/// The files of one target, sorted by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir().join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn replay(target: &str, check: Check) -> usize {
    let entries = corpus(target);
    assert!(!entries.is_empty(), "empty corpus for {target}");
    let failures: Vec<String> = entries
        .iter()
        .filter_map(|(name, data)| check(data).err().map(|e| format!("{target}/{name}: {e}")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    entries.len()
}

// ---------------------------------------------------------------- trace reader

pub fn check_trace(data: &[u8]) -> Result<(), String> {
    // What the reader must make of each line, computed independently of it.
    let segments: Vec<&[u8]> = data.split_inclusive(|&b| b == b'\n').collect();
    let blank = segments
        .iter()
        .filter(|s| {
            s.len() <= MAX_LINE && std::str::from_utf8(s).is_ok_and(|t| t.trim().is_empty())
        })
        .count();

    let mut lenient = TraceReader::new(data, true);
    let mut records = Vec::new();
    loop {
        match lenient.next_record() {
            Ok(Some(r)) => records.push(r),
            Ok(None) => break,
            Err(e) => return Err(format!("lenient reader failed: {e:#}")),
        }
    }
    if lenient.line() != segments.len() as u64 {
        return Err(format!(
            "line count {} for {} lines",
            lenient.line(),
            segments.len()
        ));
    }
    if lenient.bytes_read != data.len() as u64 {
        return Err(format!(
            "read {} of {} bytes",
            lenient.bytes_read,
            data.len()
        ));
    }
    if records.len() as u64 + lenient.skipped + blank as u64 != segments.len() as u64 {
        return Err(format!(
            "{} records + {} skipped + {blank} blank != {} lines",
            records.len(),
            lenient.skipped,
            segments.len()
        ));
    }
    if lenient.warnings.len() as u64 != lenient.skipped.min(10) {
        return Err(format!(
            "{} warnings for {} skipped",
            lenient.warnings.len(),
            lenient.skipped
        ));
    }
    for w in &lenient.warnings {
        let n = line_number(w).ok_or_else(|| format!("warning without line number: {w:?}"))?;
        if n == 0 || n > segments.len() as u64 {
            return Err(format!(
                "warning names line {n} of {}: {w:?}",
                segments.len()
            ));
        }
    }
    // What was read can be written back and read again (report/record round trip).
    for r in &records {
        let json =
            serde_json::to_string(r).map_err(|e| format!("cannot re-serialize {r:?}: {e}"))?;
        serde_json::from_str::<Record>(&json).map_err(|e| format!("cannot re-read {json}: {e}"))?;
    }

    // Strict: the same records up to the first bad line, then an error naming that line.
    let mut strict = TraceReader::new(data, false);
    let mut n = 0;
    loop {
        match strict.next_record() {
            Ok(Some(r)) => {
                if records.get(n) != Some(&r) {
                    return Err(format!("strict record {n} differs from lenient: {r:?}"));
                }
                n += 1;
            }
            Ok(None) => {
                if n != records.len() || lenient.skipped != 0 {
                    return Err(format!(
                        "strict read {n} records without error, lenient {} and skipped {}",
                        records.len(),
                        lenient.skipped
                    ));
                }
                break;
            }
            Err(e) => {
                let msg = e.to_string();
                if line_number(&msg) != Some(strict.line()) || strict.line() == 0 {
                    return Err(format!("error not naming line {}: {msg:?}", strict.line()));
                }
                if !msg.contains("--lenient") {
                    return Err(format!("error without the --lenient hint: {msg:?}"));
                }
                if lenient.skipped == 0 {
                    return Err(format!("strict failed ({msg}) but lenient skipped nothing"));
                }
                break;
            }
        }
    }
    Ok(())
}

/// `N` of a message starting with `line N:`.
fn line_number(msg: &str) -> Option<u64> {
    msg.strip_prefix("line ")?.split(':').next()?.parse().ok()
}

// ---------------------------------------------------------------- cgroup paths

fn is_lower_hex(c: u8) -> bool {
    c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
}

fn check_identity(id: &Identity, path: &str) -> Result<(), String> {
    if id.cgroup != path {
        return Err(format!("cgroup {:?} is not the input", id.cgroup));
    }
    if let Some(uid) = &id.pod_uid {
        let shape = uid.len() == 36
            && uid.bytes().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == b'-',
                _ => is_lower_hex(c),
            });
        // Never invented: the uid is in the path, dashed, underscored or (static pods) bare.
        let found = [uid.clone(), uid.replace('-', "_"), uid.replace('-', "")]
            .iter()
            .any(|u| path.contains(u.as_str()));
        if !shape || !found {
            return Err(format!(
                "bad pod uid {uid:?} (shape {shape}, in path {found})"
            ));
        }
    }
    if let Some(cid) = &id.container_id
        && (cid.len() != 64 || !cid.bytes().all(is_lower_hex) || !path.contains(cid.as_str()))
    {
        return Err(format!("bad container id {cid:?}"));
    }
    if id.qos.is_some() && id.pod_uid.is_none() {
        return Err(format!("QoS without a pod: {id:?}"));
    }
    if id.runtime.is_some() && id.container_id.is_none() {
        return Err(format!("runtime without a container: {id:?}"));
    }
    if let Some(unit) = &id.systemd_unit {
        let ok = (unit.ends_with(".service") || unit.ends_with(".scope"))
            && unit.len() <= 256
            && unit
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b":_.-@\\".contains(&c))
            && path.split('/').any(|c| c == unit);
        if !ok {
            return Err(format!("bad unit {unit:?}"));
        }
    }
    if id.names != PodNames::default() {
        return Err(format!("names filled by the path parser: {id:?}"));
    }
    if id.is_container() != id.container_id.is_some() {
        return Err("is_container disagrees with container_id".into());
    }
    let _ = (id.label(), id.short_container_id());
    Ok(())
}

pub fn check_cgroup(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    // Each file is both a path and the contents of a /proc/<pid>/cgroup file.
    check_identity(&parse_cgroup_path(&text), &text)?;
    let p = parse_proc_cgroup(&text);
    for path in [p.unified.as_deref(), p.memory_v1.as_deref()]
        .into_iter()
        .flatten()
    {
        if !path.starts_with('/') || !text.contains(path) {
            return Err(format!(
                "/proc/<pid>/cgroup path {path:?} not an absolute path of the input"
            ));
        }
        check_identity(&parse_cgroup_path(path), path)?;
    }
    if p.memory_path() != p.memory_v1.as_deref().or(p.unified.as_deref()) {
        return Err("memory_path prefers the wrong line".into());
    }
    if Identity::from_proc_cgroup(&text) != p.memory_path().map(parse_cgroup_path) {
        return Err("from_proc_cgroup disagrees with parse_proc_cgroup".into());
    }
    Ok(())
}

// ---------------------------------------------------------------- tracefs format files

pub fn check_format(data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    let Ok(f) = Format::parse(&text) else {
        return Ok(());
    };
    if f.fields.is_empty() {
        return Err("parsed without fields".into());
    }
    for (name, field) in &f.fields {
        if name.is_empty()
            || name.contains(|c: char| c.is_whitespace() || c == '*' || c == '[')
            || !text.contains(name.as_str())
        {
            return Err(format!("bad field name {name:?}"));
        }
        // Inside the record: a field ending past it would be read from beyond the record.
        if field
            .offset
            .checked_add(field.size)
            .is_none_or(|end| end > MAX_RECORD_SIZE)
        {
            return Err(format!(
                "field {name} {field:?} outside a {MAX_RECORD_SIZE}-byte record"
            ));
        }
        if f.offset(name).ok() != Some(field.offset) {
            return Err(format!("offset({name}) disagrees with fields"));
        }
    }
    Ok(())
}

/// The real format files from a 6.18 kernel: must parse, with the fields the loader reads
/// (see loader.rs), the 8-byte common header first and no two fields overlapping.
#[test]
fn real_format_files_parse_with_the_loaders_fields() {
    let want: [(&str, &[&str]); 7] = [
        ("syscalls-sys_enter_mmap", &["len", "prot", "flags", "fd"]),
        ("syscalls-sys_exit_mmap", &["ret"]),
        ("kmem-rss_stat", &["mm_id", "curr", "member", "size"]),
        ("oom-mark_victim", &["pid"]),
        ("sched-sched_process_exec", &["old_pid"]),
        ("sched-sched_process_exit", &["pid", "comm"]),
        ("vmscan-mm_vmscan_memcg_reclaim_end", &["nr_reclaimed"]),
    ];
    for (file, fields) in want {
        let path = corpus_dir()
            .join("tracefs-format")
            .join(format!("{file}.format"));
        let f = Format::parse(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{file}: {e:#}"));
        assert_eq!(f.offset("common_type").unwrap(), 0, "{file}");
        for name in fields {
            assert!(
                f.offset(name).unwrap() >= 8,
                "{file}: {name} inside the common header"
            );
        }
        let mut spans: Vec<_> = f
            .fields
            .values()
            .map(|x| (x.offset, x.offset + x.size))
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "{file}: overlapping fields {spans:?}");
        }
    }
}

// ---------------------------------------------------------------- BTF

pub fn check_btf(data: &[u8]) -> Result<(), String> {
    let Ok(btf) = KernelBtf::parse(data) else {
        return Ok(());
    };
    // No invariant on the task layout beyond "no panic": the parser reports what the BTF
    // says, and members may legitimately share an offset (unions, anonymous members).
    let _ = task_layout(&btf);
    if let Ok(r) = rss_layout(&btf)
        && (r.stride == 0 || r.count.checked_add(8).is_none_or(|end| end > r.stride))
    {
        return Err(format!(
            "rss layout element does not hold its counter: {r:?}"
        ));
    }
    let _ = btf.member_type("mm_struct", "rss_stat.count");
    let _ = btf.member_offset("task_struct", "mm");
    Ok(())
}

/// `vmlinux-6.18-pruned.btf` is this machine's kernel BTF cut down to the types the layouts
/// walk (real sizes and offsets): the full success path, for the mutations to start from.
#[test]
fn pruned_kernel_btf_has_both_layouts() {
    let data = std::fs::read(corpus_dir().join("btf").join("vmlinux-6.18-pruned.btf")).unwrap();
    let btf = KernelBtf::parse(&data).unwrap();
    let t = task_layout(&btf).unwrap();
    let r = rss_layout(&btf).unwrap();
    assert!(
        t.task_mm > 0 && t.task_pid > 0 && t.task_tgid > t.task_pid,
        "{t:?}"
    );
    assert!(r.mm_rss_stat > 0 && r.stride >= 8, "{r:?}");
}

// ---------------------------------------------------------------- replay

#[test]
fn replay_trace_corpus() {
    assert!(replay("trace", check_trace) >= 10);
    // A line past the reader's limit cannot be kept in the corpus (files stay < 32 KiB): grow
    // one out of each seed (not the many small libFuzzer finds: 1 MiB each adds up).
    for (name, data) in corpus("trace")
        .into_iter()
        .filter(|(n, _)| !n.starts_with("fuzz-"))
    {
        let mut long = data.clone();
        let at = long
            .iter()
            .position(|&b| b == b'\n')
            .map_or(long.len(), |i| i + 1);
        let mut line = vec![b'{'; MAX_LINE + 7];
        line.push(b'\n');
        long.splice(at..at, line);
        check_trace(&long).unwrap_or_else(|e| panic!("trace/{name} + long line: {e}"));
    }
}

#[test]
fn replay_cgroup_path_corpus() {
    assert!(replay("cgroup-path", check_cgroup) >= 40);
}

#[test]
fn replay_tracefs_format_corpus() {
    assert!(replay("tracefs-format", check_format) >= 7);
}

#[test]
fn replay_btf_corpus() {
    assert!(replay("btf", check_btf) >= 1);
}

/// The recorded test trace reads cleanly, strict, with every record type it holds.
#[test]
fn valid_traces_read_strictly() {
    for name in ["small-trace.jsonl", "all-record-types.jsonl"] {
        let data = std::fs::read(corpus_dir().join("trace").join(name)).unwrap();
        let mut r = TraceReader::new(&data[..], false);
        let mut n = 0;
        while r
            .next_record()
            .unwrap_or_else(|e| panic!("{name}: {e:#}"))
            .is_some()
        {
            n += 1;
        }
        assert_eq!(n, r.line(), "{name}");
    }
}

// ---------------------------------------------------------------- mutation

#[derive(Clone, Debug)]
enum Mutation {
    Truncate(Index),
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    /// Insert a token of the target's dictionary.
    Token(Index, Index),
    /// Repeat the line around a position.
    DupLine(Index),
    /// This entry up to one point, another entry from another point.
    Splice(Index, Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => any::<Index>().prop_map(Mutation::Truncate),
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        2 => (any::<Index>(), vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        4 => (any::<Index>(), any::<Index>()).prop_map(|(i, t)| Mutation::Token(i, t)),
        1 => any::<Index>().prop_map(Mutation::DupLine),
        1 => (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(o, a, b)| Mutation::Splice(o, a, b)),
    ]
}

fn apply(entries: &[Vec<u8>], tokens: &[&[u8]], base: &Index, muts: &[Mutation]) -> Vec<u8> {
    let mut b = base.get(entries).clone();
    for m in muts {
        let at = |i: &Index, b: &Vec<u8>| i.index(b.len() + 1);
        match m {
            Mutation::Truncate(i) => b.truncate(at(i, &b)),
            Mutation::FlipBit(i, bit) if !b.is_empty() => {
                let i = i.index(b.len());
                b[i] ^= 1 << bit;
            }
            Mutation::SetByte(i, v) if !b.is_empty() => {
                let i = i.index(b.len());
                b[i] = *v;
            }
            Mutation::Insert(i, bytes) => {
                let i = at(i, &b);
                b.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = at(i, &b);
                b.drain(i..(i + n).min(b.len()));
            }
            Mutation::Token(i, t) => {
                let i = at(i, &b);
                b.splice(i..i, t.get(tokens).iter().copied());
            }
            Mutation::DupLine(i) => {
                let i = at(i, &b).min(b.len());
                let start = b[..i]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |p| p + 1);
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p + 1);
                let line = b[start..end].to_vec();
                b.splice(end..end, line);
            }
            Mutation::Splice(other, a, c) => {
                let other = other.get(entries);
                b.truncate(at(a, &b));
                b.extend_from_slice(&other[c.index(other.len() + 1)..]);
            }
            _ => {}
        }
    }
    b
}

/// Run `CASES` mutants of the `target` corpus through `check`. A failure is saved (shrunk) as
/// a corpus file and its seed in `persistence`.
fn fuzz(target: &str, tokens: &[&[u8]], check: Check, persistence: &'static str) {
    let entries: Vec<Vec<u8>> = corpus(target).into_iter().map(|(_, d)| d).collect();
    let config = Config {
        cases: CASES,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(persistence))),
        // Shrinking re-runs the parsers on inputs up to ~60 KiB: bound it.
        max_shrink_iters: 2048,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = (any::<Index>(), vec(mutation(), 1..6))
        .prop_map(move |(base, muts)| apply(&entries, tokens, &base, &muts));
    match runner.run(&strategy, |input| {
        check(&input).map_err(TestCaseError::fail)
    }) {
        Ok(()) => {}
        Err(TestError::Fail(why, input)) => {
            let mut h = DefaultHasher::new();
            input.hash(&mut h);
            let path = corpus_dir()
                .join(target)
                .join(format!("regression-{:016x}", h.finish()));
            let saved = std::fs::write(&path, &input).is_ok();
            panic!(
                "{target}: {why}\ninput ({} bytes{}): {:?}",
                input.len(),
                if saved {
                    format!(", saved as {}", path.display())
                } else {
                    String::new()
                },
                String::from_utf8_lossy(&input[..input.len().min(2000)])
            );
        }
        Err(e) => panic!("{target}: {e}"),
    }
}

#[test]
fn mutated_traces() {
    let tokens: &[&[u8]] = &[
        b"\n",
        b"\r\n",
        b"\"",
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b"null",
        b"-1",
        b"1e999",
        b"18446744073709551616",
        b"0.5",
        b"\"type\":\"exec\",",
        b"\"type\":\"memcg\",",
        b"\"kind\":\"pressure\",",
        b"\"t\":",
        b"\\u0000",
        b"\\ud800",
        b"\xff",
        b"\xc3",
        b" ",
    ];
    fuzz(
        "trace",
        tokens,
        check_trace,
        "fuzz-corpus/regressions/trace.txt",
    );
}

#[test]
fn mutated_cgroup_paths() {
    let tokens: &[&[u8]] = &[
        b"/",
        b"..",
        b".",
        b"//",
        b".slice",
        b".scope",
        b".service",
        b"kubepods",
        b"kubepods-",
        b"pod",
        b"burstable",
        b"besteffort",
        b"docker",
        b"cri-containerd-",
        b"crio-",
        b"crio-conmon-",
        b":",
        b"_",
        b"-",
        b" (deleted)",
        b"\n0::/",
        b"\n4:memory:/",
        b"0123456789abcdef",
        b"\xc3\xa9",
    ];
    fuzz(
        "cgroup-path",
        tokens,
        check_cgroup,
        "fuzz-corpus/regressions/cgroup-path.txt",
    );
}

#[test]
fn mutated_tracefs_formats() {
    let tokens: &[&[u8]] = &[
        b"field:",
        b";",
        b"offset:",
        b"size:",
        b"signed:",
        b"\t",
        b"\n",
        b"[",
        b"]",
        b"*",
        b" ",
        b"4294967295",
        b"65536",
        b"-1",
        b"0",
        b"__data_loc ",
        b"\r",
    ];
    fuzz(
        "tracefs-format",
        tokens,
        check_format,
        "fuzz-corpus/regressions/tracefs-format.txt",
    );
}

#[test]
fn mutated_btf() {
    let tokens: &[&[u8]] = &[
        &[0; 4],
        &[0xff; 4],
        &[0x9f, 0xeb, 1, 0],
        &[0, 0, 0, 4],
        &[0, 0, 0, 0x84],
        &[1, 0, 0, 0],
        &[0x18, 0, 0, 0],
        b"task_struct\0",
        b"mm_struct\0",
        b"rss_stat\0",
    ];
    fuzz("btf", tokens, check_btf, "fuzz-corpus/regressions/btf.txt");
}
