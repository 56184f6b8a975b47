//! tracefs: where it is mounted, and the field offsets of tracepoint records read from
//! `events/<group>/<event>/format`. Rust eBPF cannot relocate field accesses (no CO-RE), so
//! these offsets are handed to the programs as globals; a wrong one silently yields garbage,
//! hence a strict parser.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

/// Where tracefs usually lives; the first that has an `events` directory wins.
const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// No field of a real tracepoint record ends past 64 KiB: `__data_loc` fields locate their data
/// with 16-bit offsets, and the kernel caps records far lower (PERF_MAX_TRACE_SIZE is 8 KiB).
/// A field beyond it is a corrupt format file, whose offset would be read outside the record.
pub const MAX_RECORD_SIZE: u32 = 1 << 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: u32,
    pub size: u32,
}

/// Parsed `format` file of one tracepoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Format {
    pub fields: HashMap<String, Field>,
}

impl Format {
    /// Parse the text of a `format` file. Lines look like
    /// `\tfield:unsigned long len;\toffset:24;\tsize:8;\tsigned:0;`; the field name is the last
    /// word of the declaration, without any array suffix (`char comm[16]` -> `comm`).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut fields = HashMap::new();
        for (lineno, line) in text.lines().enumerate() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("field:") else {
                continue;
            };
            let mut decl = None;
            let mut offset = None;
            let mut size = None;
            for (i, part) in rest.split(';').enumerate() {
                let part = part.trim();
                if i == 0 {
                    decl = Some(part);
                } else if let Some(v) = part.strip_prefix("offset:") {
                    offset = v.trim().parse::<u32>().ok();
                } else if let Some(v) = part.strip_prefix("size:") {
                    size = v.trim().parse::<u32>().ok();
                }
            }
            let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
                bail!("format line {}: cannot parse {line:?}", lineno + 1);
            };
            let name = decl
                .rsplit(|c: char| c.is_whitespace() || c == '*')
                .next()
                .unwrap_or("")
                .split('[')
                .next()
                .unwrap_or("");
            if name.is_empty() {
                bail!("format line {}: no field name in {decl:?}", lineno + 1);
            }
            if offset
                .checked_add(size)
                .is_none_or(|end| end > MAX_RECORD_SIZE)
            {
                bail!(
                    "format line {}: field {name} at offset {offset}, size {size} ends past any \
                     tracepoint record ({MAX_RECORD_SIZE} bytes)",
                    lineno + 1
                );
            }
            fields.insert(name.to_string(), Field { offset, size });
        }
        if fields.is_empty() {
            bail!("no fields found");
        }
        Ok(Self { fields })
    }

    /// Offset of a field that must exist.
    pub fn offset(&self, name: &str) -> anyhow::Result<u32> {
        self.fields
            .get(name)
            .map(|f| f.offset)
            .with_context(|| format!("field `{name}` missing"))
    }

    /// Offset of a field that newer kernels have (0 = absent, never a valid field offset:
    /// every record starts with the 8-byte common header).
    pub fn optional_offset(&self, name: &str) -> u32 {
        self.fields.get(name).map_or(0, |f| f.offset)
    }
}

/// A mounted tracefs.
#[derive(Clone, Debug)]
pub struct TraceFs {
    pub root: PathBuf,
}

impl TraceFs {
    /// Find tracefs under `host_root` (`/` normally, `/host` inside a container).
    pub fn locate(host_root: &Path) -> Option<Self> {
        CANDIDATES
            .iter()
            .map(|c| host_root.join(c.trim_start_matches('/')))
            .find(|root| root.join("events").is_dir())
            .map(|root| Self { root })
    }

    pub fn format_path(&self, group: &str, event: &str) -> PathBuf {
        self.root
            .join("events")
            .join(group)
            .join(event)
            .join("format")
    }

    pub fn has_event(&self, group: &str, event: &str) -> bool {
        self.format_path(group, event).is_file()
    }

    pub fn format(&self, group: &str, event: &str) -> anyhow::Result<Format> {
        let path = self.format_path(group, event);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "tracepoint {group}:{event} not available ({})",
                path.display()
            )
        })?;
        Format::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real content from kernel 6.18 (syscalls:sys_enter_mmap and sched:sched_process_exit).
    const MMAP: &str = "name: sys_enter_mmap\nID: 105\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:unsigned long addr;\toffset:16;\tsize:8;\tsigned:0;\n\tfield:unsigned long len;\toffset:24;\tsize:8;\tsigned:0;\n\tfield:unsigned long prot;\toffset:32;\tsize:8;\tsigned:0;\n\tfield:unsigned long flags;\toffset:40;\tsize:8;\tsigned:0;\n\tfield:unsigned long fd;\toffset:48;\tsize:8;\tsigned:0;\n\tfield:unsigned long off;\toffset:56;\tsize:8;\tsigned:0;\n\nprint fmt: \"addr: 0x%08lx\", ((unsigned long)(REC->addr))\n";
    const EXIT: &str = "name: sched_process_exit\nID: 300\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:int prio;\toffset:28;\tsize:4;\tsigned:1;\n\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n";

    #[test]
    fn parses_real_formats() {
        let f = Format::parse(MMAP).unwrap();
        assert_eq!(f.offset("len").unwrap(), 24);
        assert_eq!(f.offset("fd").unwrap(), 48);
        assert_eq!(
            f.fields["prot"],
            Field {
                offset: 32,
                size: 8
            }
        );
        let e = Format::parse(EXIT).unwrap();
        assert_eq!(e.offset("comm").unwrap(), 8);
        assert_eq!(e.optional_offset("group_dead"), 32);
        assert_eq!(e.optional_offset("no_such"), 0);
        assert!(e.offset("no_such").is_err());
    }

    #[test]
    fn data_loc_and_pointer_names() {
        let f = Format::parse("\tfield:__data_loc char[] comm;\toffset:12;\tsize:4;\tsigned:0;\n\tfield:const char * name;\toffset:16;\tsize:8;\tsigned:0;\n").unwrap();
        assert_eq!(f.offset("comm").unwrap(), 12);
        assert_eq!(f.offset("name").unwrap(), 16);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Format::parse("").is_err());
        assert!(Format::parse("field:int x;\toffset:abc;\tsize:4;").is_err());
        assert!(Format::parse("field:;offset:8;size:4;").is_err());
    }

    #[test]
    fn rejects_fields_outside_any_record() {
        // Found by fuzz_corpus: offsets up to u32::MAX were accepted and handed to the programs.
        for (off, size) in [
            ("4294967295", "8"),
            ("65535", "2"),
            ("65536", "1"),
            ("4294967288", "8"),
        ] {
            let text =
                format!("\tfield:unsigned long len;\toffset:{off};\tsize:{size};\tsigned:0;\n");
            let err = Format::parse(&text).unwrap_err().to_string();
            assert!(
                err.contains("ends past any tracepoint record"),
                "{off}+{size}: {err}"
            );
        }
        let last = Format::parse("\tfield:char x;\toffset:65535;\tsize:1;\tsigned:0;\n").unwrap();
        assert_eq!(last.offset("x").unwrap(), 65535);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = Format::parse(&s);
        }
        #[test]
        fn never_panics_on_field_lines(decl in "[a-z *\\[\\]0-9_]{0,30}", off in "[0-9a-z]{0,5}", size in "[0-9]{0,3}") {
            let _ = Format::parse(&format!("\tfield:{decl};\toffset:{off};\tsize:{size};\tsigned:0;\n"));
        }
    }
}
