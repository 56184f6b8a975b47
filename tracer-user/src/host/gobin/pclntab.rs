//! Go's own symbol table, `.gopclntab`: every function's name, entry and end, and per-PC
//! tables giving the source file and line. The runtime needs it for stack traces and the GC,
//! so it survives `-ldflags="-s -w"` (k3s and most container images are built that way),
//! where ELF symbols and DWARF are gone. Layouts read: Go 1.18–1.19 (magic 0xfffffff0) and
//! Go 1.20 onwards (0xfffffff1). From Go 1.26 the header's text start is 0 (the runtime
//! takes it from its module data): the `.text` section's address stands in.
//!
//! Every read is bounds-checked: a truncated or corrupt table is an error or a miss, never a
//! panic.
use anyhow::{Context as _, bail};

use super::buildinfo::uvarint;

const MAGIC_GO118: u32 = 0xffff_fff0;
const MAGIC_GO120: u32 = 0xffff_fff1;

/// The header: magic, two pad bytes, the PC quantum, the pointer size, then eight
/// pointer-sized fields.
const HEADER_FIELDS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Go 1.18 and 1.19.
    Go118,
    /// Go 1.20 and later (1.26 with a zero text start).
    Go120,
}

/// A parsed `.gopclntab` (it owns the section's bytes).
pub struct Pclntab {
    data: Vec<u8>,
    pub layout: Layout,
    quantum: u32,
    /// Virtual address function entry offsets count from.
    pub text_start: u64,
    nfunc: usize,
    funcname: usize,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    functab: usize,
}

/// One function of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function<'a> {
    pub name: &'a str,
    /// Virtual addresses: [entry, end).
    pub entry: u64,
    pub end: u64,
}

/// Where a PC is in the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location<'a> {
    pub function: Function<'a>,
    pub file: Option<&'a str>,
    pub line: Option<u32>,
}

impl Pclntab {
    /// Parse a `.gopclntab` section; `text_addr` is the `.text` section's address (used when
    /// the header's text start is 0, as from Go 1.26).
    pub fn parse(data: Vec<u8>, text_addr: u64) -> anyhow::Result<Self> {
        let magic = u32::from_le_bytes(
            data.get(0..4)
                .context("pclntab shorter than its magic")?
                .try_into()?,
        );
        let layout = match magic {
            MAGIC_GO118 => Layout::Go118,
            MAGIC_GO120 => Layout::Go120,
            other => bail!(
                "pclntab magic {other:#x}: a layout older than Go 1.18 (or not a pclntab), not supported"
            ),
        };
        let (quantum, ptr_size) = (data.get(6).copied(), data.get(7).copied());
        let (Some(quantum), Some(8)) = (quantum, ptr_size) else {
            bail!("pclntab for {ptr_size:?}-byte pointers: only 64-bit binaries are read");
        };
        let field = |i: usize| -> anyhow::Result<u64> {
            let at = 8 + 8 * i;
            Ok(u64::from_le_bytes(
                data.get(at..at + 8)
                    .context("pclntab header truncated")?
                    .try_into()?,
            ))
        };
        let offset = |i: usize| -> anyhow::Result<usize> {
            let v = usize::try_from(field(i)?)?;
            if v > data.len() {
                bail!(
                    "pclntab header field {i} points past the table ({v} > {})",
                    data.len()
                );
            }
            Ok(v)
        };
        // The whole header first: a table cut inside it is refused here, not field by field.
        if data.len() < 8 + 8 * HEADER_FIELDS {
            bail!("pclntab header truncated ({} bytes)", data.len());
        }
        let nfunc = usize::try_from(field(0)?)?;
        let text_start = match field(2)? {
            0 => text_addr,
            t => t,
        };
        let table = Self {
            layout,
            quantum: u32::from(quantum.max(1)),
            text_start,
            nfunc,
            funcname: offset(3)?,
            cutab: offset(4)?,
            filetab: offset(5)?,
            pctab: offset(6)?,
            functab: offset(7)?,
            data,
        };
        // The function table: nfunc (entry, offset) pairs and the end entry.
        let needed = (nfunc + 1)
            .checked_mul(8)
            .and_then(|n| n.checked_add(table.functab));
        if needed.is_none_or(|n| n > table.data.len()) {
            bail!("pclntab's function table ({nfunc} functions) runs past the section");
        }
        Ok(table)
    }

    pub fn len(&self) -> usize {
        self.nfunc
    }

    pub fn is_empty(&self) -> bool {
        self.nfunc == 0
    }

    /// The i-th function, in address order.
    pub fn function(&self, i: usize) -> Option<Function<'_>> {
        if i >= self.nfunc {
            return None;
        }
        let entry_off = self.u32_at(self.functab + 8 * i)?;
        let end_off = self.u32_at(self.functab + 8 * (i + 1))?;
        let func = self.func_at(i)?;
        let name_off = usize::try_from(self.u32_at(func + 4)?).ok()?;
        Some(Function {
            name: self.cstr(self.funcname.checked_add(name_off)?)?,
            entry: self.text_start + u64::from(entry_off),
            end: self.text_start + u64::from(end_off),
        })
    }

    /// All functions, in address order (unreadable entries are skipped).
    pub fn functions(&self) -> impl Iterator<Item = Function<'_>> {
        (0..self.nfunc).filter_map(|i| self.function(i))
    }

    /// The function named `name` (e.g. "runtime.gcStart"), by a scan.
    pub fn find(&self, name: &str) -> Option<Function<'_>> {
        self.functions().find(|f| f.name == name)
    }

    /// The function holding `pc`, with its file and line there.
    pub fn lookup(&self, pc: u64) -> Option<Location<'_>> {
        let off = u32::try_from(pc.checked_sub(self.text_start)?).ok()?;
        // The last function whose entry offset is <= off.
        let (mut lo, mut hi) = (0usize, self.nfunc);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.u32_at(self.functab + 8 * mid)? <= off {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let i = lo.checked_sub(1)?;
        let function = self.function(i)?;
        if pc >= function.end {
            return None;
        }
        let func = self.func_at(i)?;
        let pcfile = self.u32_at(func + 20)?;
        let pcln = self.u32_at(func + 24)?;
        let cu = self.u32_at(func + 32)?;
        let line = self
            .pcvalue(pcln, function.entry, pc)
            .and_then(|v| u32::try_from(v).ok());
        let file = self
            .pcvalue(pcfile, function.entry, pc)
            .and_then(|fileno| self.file(cu, fileno));
        Some(Location {
            function,
            file,
            line,
        })
    }

    /// Offset of the i-th function's `_func` record.
    fn func_at(&self, i: usize) -> Option<usize> {
        let off = usize::try_from(self.u32_at(self.functab + 8 * i + 4)?).ok()?;
        let at = self.functab.checked_add(off)?;
        // The fields read: up to cuOffset (bytes 32..36).
        (at.checked_add(36)? <= self.data.len()).then_some(at)
    }

    /// The file name of file number `fileno` of compilation unit `cu`.
    fn file(&self, cu: u32, fileno: i32) -> Option<&str> {
        let index = usize::try_from(cu).ok()? + usize::try_from(fileno).ok()?;
        let off = self.u32_at(self.cutab.checked_add(index.checked_mul(4)?)?)?;
        if off == u32::MAX {
            return None;
        }
        self.cstr(self.filetab.checked_add(usize::try_from(off).ok()?)?)
    }

    /// The value a pc-value table (`table`, an offset into the pc tables) gives at `target`,
    /// for a function entered at `entry`: pairs of (zig-zag value delta, PC delta in
    /// quanta), each a varint, the value starting at -1; a zero value delta after the first
    /// pair ends the table.
    fn pcvalue(&self, table: u32, entry: u64, target: u64) -> Option<i32> {
        if table == 0 {
            return None;
        }
        let mut p = self.pctab.checked_add(usize::try_from(table).ok()?)?;
        let mut pc = entry;
        let mut value: i32 = -1;
        let mut first = true;
        loop {
            let (uvdelta, n) = uvarint(self.data.get(p..)?)?;
            if uvdelta == 0 && !first {
                return None;
            }
            p += n;
            let uvdelta = u32::try_from(uvdelta).ok()?;
            let delta = ((uvdelta >> 1) as i32) ^ -((uvdelta & 1) as i32);
            value = value.wrapping_add(delta);
            let (pcdelta, n) = uvarint(self.data.get(p..)?)?;
            p += n;
            pc = pc.checked_add(pcdelta.checked_mul(u64::from(self.quantum))?)?;
            if target < pc {
                return Some(value);
            }
            first = false;
        }
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(
            self.data.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    }

    /// A NUL-terminated string at `at` (None unless valid UTF-8).
    fn cstr(&self, at: usize) -> Option<&str> {
        let bytes = self.data.get(at..)?;
        let end = bytes.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&bytes[..end]).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of one function "main.f" at text+0x10..0x30 whose line is 7 up to +0x8 and 9
    /// after, all in "main.go": built by hand in the Go 1.20 layout.
    fn tiny(text_start: u64) -> Vec<u8> {
        let mut d = vec![0u8; 8 + 8 * HEADER_FIELDS];
        d[0..4].copy_from_slice(&MAGIC_GO120.to_le_bytes());
        d[6] = 1;
        d[7] = 8;
        let set = |d: &mut Vec<u8>, i: usize, v: u64| {
            d[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_le_bytes())
        };
        set(&mut d, 0, 1);
        set(&mut d, 1, 1);
        set(&mut d, 2, text_start);
        // funcname table
        let funcname = d.len();
        d.extend_from_slice(b"main.f\0");
        // cu table: file 0 of cu 0 is at filetab offset 0
        let cutab = d.len();
        d.extend_from_slice(&0u32.to_le_bytes());
        let filetab = d.len();
        d.extend_from_slice(b"main.go\0");
        // pc tables: offset 0 unused (0 means none)
        let pctab = d.len();
        d.push(0);
        // line table at pctab+1: value -1 -> 7 (delta +8: zigzag 16) for 8 bytes, then +2
        // (zigzag 4) for 0x18 bytes, then end.
        let pcln = d.len() - pctab;
        d.extend_from_slice(&[16, 8, 4, 0x18, 0]);
        // file table: -1 -> 0 (delta +1: zigzag 2) for 0x20 bytes, end.
        let pcfile = d.len() - pctab;
        d.extend_from_slice(&[2, 0x20, 0]);
        while !d.len().is_multiple_of(4) {
            d.push(0);
        }
        let functab = d.len();
        // (entry 0x10, func at +16), (end 0x30)
        d.extend_from_slice(&0x10u32.to_le_bytes());
        d.extend_from_slice(&16u32.to_le_bytes());
        d.extend_from_slice(&0x30u32.to_le_bytes());
        d.extend_from_slice(&0u32.to_le_bytes());
        // _func
        let mut f = vec![0u8; 44];
        f[0..4].copy_from_slice(&0x10u32.to_le_bytes());
        f[4..8].copy_from_slice(&0u32.to_le_bytes());
        f[20..24].copy_from_slice(&(pcfile as u32).to_le_bytes());
        f[24..28].copy_from_slice(&(pcln as u32).to_le_bytes());
        d.extend_from_slice(&f);
        for (i, v) in [
            (3, funcname),
            (4, cutab),
            (5, filetab),
            (6, pctab),
            (7, functab),
        ] {
            set(&mut d, i, v as u64);
        }
        d
    }

    #[test]
    fn finds_functions_files_and_lines() {
        let t = Pclntab::parse(tiny(0x40_1000), 0).unwrap();
        assert_eq!(t.layout, Layout::Go120);
        assert_eq!(t.len(), 1);
        let f = t.find("main.f").unwrap();
        assert_eq!((f.entry, f.end), (0x40_1010, 0x40_1030));
        let at = |pc| {
            t.lookup(pc).map(|l| {
                (
                    l.function.name.to_string(),
                    l.file.map(str::to_string),
                    l.line,
                )
            })
        };
        assert_eq!(
            at(0x40_1010),
            Some(("main.f".into(), Some("main.go".into()), Some(7)))
        );
        assert_eq!(at(0x40_1017).unwrap().2, Some(7));
        assert_eq!(at(0x40_1018).unwrap().2, Some(9));
        assert_eq!(at(0x40_102f).unwrap().2, Some(9));
        assert_eq!(at(0x40_1030), None, "past the end");
        assert_eq!(at(0x40_100f), None, "before the first function");
        assert_eq!(at(0x10), None, "below the text");
    }

    #[test]
    fn a_zero_text_start_is_the_text_section() {
        // Go 1.26 writes 0: the caller's .text address is used.
        let t = Pclntab::parse(tiny(0), 0x50_0000).unwrap();
        assert_eq!(t.find("main.f").unwrap().entry, 0x50_0010);
    }

    #[test]
    fn old_or_foreign_tables_are_refused() {
        let mut d = tiny(0x1000);
        d[0..4].copy_from_slice(&0xffff_fffbu32.to_le_bytes());
        let err = Pclntab::parse(d, 0).err().unwrap().to_string();
        assert!(err.contains("older than Go 1.18"), "{err}");
        let mut d = tiny(0x1000);
        d[7] = 4;
        assert!(Pclntab::parse(d, 0).is_err(), "32-bit");
    }

    #[test]
    fn truncated_or_corrupt_tables_never_panic() {
        let full = tiny(0x40_1000);
        for cut in 0..full.len() {
            if let Ok(t) = Pclntab::parse(full[..cut].to_vec(), 0) {
                for pc in 0x40_1000..0x40_1040 {
                    let _ = t.lookup(pc);
                }
                let _ = t.functions().count();
            }
        }
        // Every byte flipped in turn.
        for i in 0..full.len() {
            let mut d = full.clone();
            d[i] ^= 0xff;
            if let Ok(t) = Pclntab::parse(d, 0) {
                for pc in (0x40_1000..0x40_1040).step_by(3) {
                    let _ = t.lookup(pc);
                }
                let _ = t.functions().count();
            }
        }
    }
}
