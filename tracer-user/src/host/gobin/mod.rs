//! Go binaries seen from outside: which Go built them and for which module (build info), and
//! Go's own symbol table (`.gopclntab`), which names functions, files and lines even in
//! stripped binaries. The ground for naming growth sites in Go code and for finding a Go
//! runtime's variables.
pub mod buildinfo;
pub mod pclntab;

use std::path::Path;

use anyhow::Context as _;
use object::{Object as _, ObjectSection as _};

pub use buildinfo::BuildInfo;
pub use pclntab::Pclntab;

/// What a Go binary tells about itself.
pub struct GoBinary {
    pub build: BuildInfo,
    /// Go's symbol table; None (with the reason) when it cannot be read.
    pub pclntab: Result<Pclntab, String>,
    /// Whether ELF symbols are present (`-s` removes them; pclntab stays).
    pub has_symbols: bool,
}

impl GoBinary {
    /// Read the ELF file at `path` (e.g. /proc/PID/exe). Ok(None) when it is not a Go binary
    /// (no `.go.buildinfo` section); an error when it cannot be read or parsed as ELF, or its
    /// build information is corrupt.
    pub fn open(path: &Path) -> anyhow::Result<Option<Self>> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&bytes).with_context(|| format!("reading {} as a Go binary", path.display()))
    }

    /// The same, from the file's bytes.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<Option<Self>> {
        let file = object::File::parse(bytes).context("not an ELF file")?;
        let Some(section) = file.section_by_name(".go.buildinfo") else {
            return Ok(None);
        };
        let build = buildinfo::parse(section.data().context("reading .go.buildinfo")?)?;
        let text = file.section_by_name(".text").map_or(0, |s| s.address());
        let pclntab = match file.section_by_name(".gopclntab") {
            Some(s) => s
                .data()
                .map_err(|e| e.to_string())
                .and_then(|d| Pclntab::parse(d.to_vec(), text).map_err(|e| format!("{e:#}"))),
            None => Err("no .gopclntab section".to_string()),
        };
        let has_symbols = file.symbols().next().is_some();
        Ok(Some(Self {
            build,
            pclntab,
            has_symbols,
        }))
    }
}
