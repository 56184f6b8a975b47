//! /proc/PID/maps: which file (and where in it) each address of a process comes from, so a
//! sampled address can be named after the process is gone: (file, file offset) is stable,
//! the address is not (ASLR).
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// Offset in the file of `start`.
    pub offset: u64,
    pub executable: bool,
    /// The backing file; None for anonymous memory, the stack, [vdso], ...
    pub path: Option<PathBuf>,
}

impl Mapping {
    /// The file offset of `addr`, which must lie in this mapping.
    pub fn file_offset(&self, addr: u64) -> u64 {
        addr - self.start + self.offset
    }
}

/// A process's mappings, in address order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Maps(pub Vec<Mapping>);

impl Maps {
    pub fn read(proc_root: &Path, pid: u32) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("maps"))?;
        Ok(Self::parse(&text))
    }

    /// Lines that do not parse are skipped.
    pub fn parse(text: &str) -> Self {
        let mut out: Vec<Mapping> = text.lines().filter_map(line).collect();
        out.sort_by_key(|m| m.start);
        Self(out)
    }

    /// The mapping holding `addr`.
    pub fn find(&self, addr: u64) -> Option<&Mapping> {
        let i = self.0.partition_point(|m| m.start <= addr).checked_sub(1)?;
        let m = &self.0[i];
        (addr < m.end).then_some(m)
    }
}

fn line(l: &str) -> Option<Mapping> {
    let mut f = l.split_whitespace();
    let (start, end) = f.next()?.split_once('-')?;
    let perms = f.next()?;
    let offset = u64::from_str_radix(f.next()?, 16).ok()?;
    let _dev = f.next()?;
    let _inode = f.next()?;
    // The path may hold spaces: the rest of the line after the inode.
    let rest: Vec<&str> = f.collect();
    let path = match rest.join(" ") {
        p if p.starts_with('/') => Some(PathBuf::from(p.trim_end_matches(" (deleted)"))),
        _ => None,
    };
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset,
        executable: perms.as_bytes().get(2) == Some(&b'x'),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
00400000-00401000 r--p 00000000 fe:01 123 /usr/bin/leaker
00401000-00480000 r-xp 00001000 fe:01 123 /usr/bin/leaker
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 
7f1000000000-7f1000028000 r--p 00000000 fe:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
7f1000028000-7f10001bd000 r-xp 00028000 fe:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
7ffd00100000-7ffd00102000 r-xp 00000000 00:00 0                          [vdso]
7f2000000000-7f2000001000 r-xp 00000000 fe:01 88 /tmp/my lib.so (deleted)
garbage line
";

    #[test]
    fn finds_the_file_and_offset_of_an_address() {
        let m = Maps::parse(SAMPLE);
        assert_eq!(m.0.len(), 8);
        let text = m.find(0x401234).unwrap();
        assert!(text.executable);
        assert_eq!(text.path.as_deref(), Some(Path::new("/usr/bin/leaker")));
        assert_eq!(text.file_offset(0x401234), 0x1234);
        let libc = m.find(0x7f1000030000).unwrap();
        assert_eq!(libc.file_offset(0x7f1000030000), 0x30000);
        assert_eq!(m.find(0x7f0000000010).unwrap().path, None);
        assert_eq!(m.find(0x7ffd00100010).unwrap().path, None, "[vdso]");
        assert_eq!(
            m.find(0x7f2000000010).unwrap().path.as_deref(),
            Some(Path::new("/tmp/my lib.so"))
        );
        assert_eq!(m.find(0x10), None);
        assert_eq!(m.find(0x480000), None, "end is exclusive");
    }
}
