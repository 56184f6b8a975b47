//! Naming code addresses: (binary, file offset) to function, file and line. Go binaries are
//! read through their own symbol table (`.gopclntab`, see gobin/), which stripped builds
//! keep; everything else through blazesym (ELF symbols and DWARF). Each binary is opened
//! once per symbolizer.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use object::{Object as _, ObjectSection as _, ObjectSegment as _};

use crate::host::gobin::GoBinary;

/// Where an address is in the source, as far as the binary tells.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResolvedFrame {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// What is known of one binary.
pub struct Binary {
    /// GNU build id (hex), or Go's build id, when the binary has one.
    pub build_id: Option<String>,
    /// LOAD segments: (file offset, file size, virtual address).
    segments: Vec<(u64, u64, u64)>,
    go: Option<GoBinary>,
}

impl Binary {
    fn open(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)?;
        let file = object::File::parse(&*bytes)?;
        let build_id = match file.build_id() {
            Ok(Some(id)) => Some(id.iter().map(|b| format!("{b:02x}")).collect()),
            _ => file
                .section_by_name(".note.go.buildid")
                .and_then(|s| s.data().ok())
                .and_then(go_build_id),
        };
        let segments = file
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (off, size, s.address())
            })
            .collect();
        let go = GoBinary::parse(&bytes).ok().flatten();
        Ok(Self {
            build_id,
            segments,
            go,
        })
    }

    /// The virtual address (as in the binary) of a file offset.
    fn vaddr(&self, file_offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(off, size, _)| file_offset >= *off && file_offset < off + size)
            .map(|(off, _, vaddr)| file_offset - off + vaddr)
    }

    pub fn is_go(&self) -> bool {
        self.go.is_some()
    }
}

/// The Go build id note: a 16-byte header (namesz, descsz, type, "Go\0\0"), then the id.
fn go_build_id(note: &[u8]) -> Option<String> {
    let desc_len = u32::from_le_bytes(note.get(4..8)?.try_into().ok()?) as usize;
    let id = note.get(16..16 + desc_len)?;
    Some(
        String::from_utf8_lossy(id)
            .trim_end_matches('\0')
            .to_string(),
    )
}

pub struct Symbolizer {
    binaries: HashMap<PathBuf, Option<Binary>>,
    blaze: blazesym::symbolize::Symbolizer,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbolizer {
    pub fn new() -> Self {
        Self {
            binaries: HashMap::new(),
            blaze: blazesym::symbolize::Symbolizer::new(),
        }
    }

    /// Binaries opened so far (each keeps its symbol tables: a Go binary's `.gopclntab` is
    /// tens of MiB for the largest, so a long-lived symbolizer must not keep them all).
    pub fn cached_binaries(&self) -> usize {
        self.binaries.len()
    }

    /// The binary at `path` (opened once; None when it cannot be read as ELF).
    pub fn binary(&mut self, path: &Path) -> Option<&Binary> {
        self.binaries
            .entry(path.to_path_buf())
            .or_insert_with(|| match Binary::open(path) {
                Ok(b) => Some(b),
                Err(e) => {
                    log::debug!("{}: not symbolized: {e:#}", path.display());
                    None
                }
            })
            .as_ref()
    }

    /// Name the code at `file_offset` in the binary at `path`. A return address (every frame
    /// but a stack's first) points after its call: the byte before it is looked up, so the
    /// call's own line is named, not the next one.
    pub fn resolve(
        &mut self,
        path: &Path,
        file_offset: u64,
        return_address: bool,
    ) -> ResolvedFrame {
        let file_offset = file_offset.saturating_sub(u64::from(return_address));
        if let Some(bin) = self.binary(path)
            && let Some(go) = &bin.go
            && let Ok(table) = &go.pclntab
        {
            let found = bin.vaddr(file_offset).and_then(|v| table.lookup(v));
            if let Some(loc) = found {
                return ResolvedFrame {
                    function: Some(loc.function.name.to_string()),
                    file: loc.file.map(str::to_string),
                    line: loc.line,
                };
            }
        }
        let src =
            blazesym::symbolize::source::Source::Elf(blazesym::symbolize::source::Elf::new(path));
        match self
            .blaze
            .symbolize_single(&src, blazesym::symbolize::Input::FileOffset(file_offset))
        {
            Ok(blazesym::symbolize::Symbolized::Sym(sym)) => ResolvedFrame {
                function: Some(sym.name.to_string()),
                file: sym
                    .code_info
                    .as_ref()
                    .map(|c| c.file.to_string_lossy().into_owned()),
                line: sym.code_info.as_ref().and_then(|c| c.line),
            },
            _ => ResolvedFrame::default(),
        }
    }
}
