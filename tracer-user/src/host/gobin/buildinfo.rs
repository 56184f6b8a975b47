//! The build information every Go binary carries in its `.go.buildinfo` section (what `go
//! version -m` prints): the Go version and the main module, present even when the binary is
//! stripped (`-ldflags="-s -w"` removes symbols and DWARF, not this).
use anyhow::{Context as _, bail};

/// The section's first 14 bytes.
const MAGIC: &[u8] = b"\xff Go buildinf:";

/// Flag bit: the version and module strings follow the header inline (Go 1.18 and later);
/// before, the header held pointers to them.
const FLAG_INLINE_STRINGS: u8 = 0x2;

/// Where the inline strings start: the magic, pointer size, flags, padded to 32 bytes.
const HEADER_LEN: usize = 32;

/// The module information wraps its text in 16-byte sentinels.
const MODINFO_SENTINEL_LEN: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildInfo {
    /// As `runtime.Version()` says it: "go1.21.13", "go1.26.6", ...
    pub go_version: String,
    /// The main package's import path ("path" line), when recorded.
    pub path: Option<String>,
    /// The main module's path and version ("mod" line), when recorded.
    pub module: Option<(String, String)>,
    /// The `-ldflags` build setting, when recorded ("-s -w" for a stripped build).
    pub ldflags: Option<String>,
}

impl BuildInfo {
    /// The Go version as (major, minor): "go1.21.13" is (1, 21). None for a development
    /// build ("devel ...") or an unexpected form.
    pub fn go_release(&self) -> Option<(u32, u32)> {
        let rest = self.go_version.strip_prefix("go")?;
        let mut parts = rest.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some((major, minor))
    }
}

/// Parse the bytes of a `.go.buildinfo` section.
pub fn parse(section: &[u8]) -> anyhow::Result<BuildInfo> {
    if section.len() < HEADER_LEN || !section.starts_with(MAGIC) {
        bail!("not Go build information (no \"\\xff Go buildinf:\" header)");
    }
    let flags = section[15];
    if flags & FLAG_INLINE_STRINGS == 0 {
        bail!(
            "Go build information in the pre-1.18 layout (pointers into the data segment): not supported"
        );
    }
    let mut rest = &section[HEADER_LEN..];
    let version = read_bytes(&mut rest).context("reading the Go version")?;
    let modinfo = read_bytes(&mut rest).context("reading the module information")?;
    if version.is_empty() {
        bail!("empty Go version in the build information");
    }
    Ok(parse_modinfo(
        String::from_utf8_lossy(version).into_owned(),
        strip_sentinels(modinfo),
    ))
}

/// A uvarint length, then that many bytes.
fn read_bytes<'a>(rest: &mut &'a [u8]) -> anyhow::Result<&'a [u8]> {
    let (len, n) = uvarint(rest).context("truncated length")?;
    let len = usize::try_from(len).context("length out of range")?;
    let bytes = rest
        .get(n..n.checked_add(len).context("length out of range")?)
        .context("string runs past the section")?;
    *rest = &rest[n + len..];
    Ok(bytes)
}

/// The module text without the 16 binary bytes on each side (the second set right after a
/// newline), as UTF-8 (lossily: it is for display).
fn strip_sentinels(modinfo: &[u8]) -> String {
    let n = modinfo.len();
    let text = if n > 2 * MODINFO_SENTINEL_LEN && modinfo[n - MODINFO_SENTINEL_LEN - 1] == b'\n' {
        &modinfo[MODINFO_SENTINEL_LEN..n - MODINFO_SENTINEL_LEN]
    } else {
        modinfo
    };
    String::from_utf8_lossy(text).into_owned()
}

/// Go's unsigned varint (encoding/binary): 7 bits a byte, low first; (value, bytes read).
pub(super) fn uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn parse_modinfo(go_version: String, text: String) -> BuildInfo {
    let mut info = BuildInfo {
        go_version,
        path: None,
        module: None,
        ldflags: None,
    };
    for line in text.lines() {
        let mut fields = line.split('\t');
        match (fields.next(), fields.next()) {
            (Some("path"), Some(p)) => info.path = Some(p.to_string()),
            (Some("mod"), Some(m)) => {
                info.module = Some((m.to_string(), fields.next().unwrap_or("").to_string()));
            }
            (Some("build"), Some(setting)) => {
                if let Some(v) = setting.strip_prefix("-ldflags=") {
                    info.ldflags = Some(v.trim_matches('"').to_string());
                }
            }
            _ => {}
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(version: &str, modinfo: &str) -> Vec<u8> {
        section_bytes(version, modinfo.as_bytes())
    }

    fn section_bytes(version: &str, modinfo: &[u8]) -> Vec<u8> {
        let mut s = MAGIC.to_vec();
        s.push(8);
        s.push(FLAG_INLINE_STRINGS);
        s.resize(HEADER_LEN, 0);
        for text in [version.as_bytes(), modinfo] {
            let mut len = text.len();
            loop {
                let b = (len & 0x7f) as u8;
                len >>= 7;
                if len == 0 {
                    s.push(b);
                    break;
                }
                s.push(b | 0x80);
            }
            s.extend_from_slice(text);
        }
        s
    }

    #[test]
    fn reads_the_version_and_the_main_module() {
        // Between binary sentinels (not UTF-8), as the linker writes them.
        let mut modinfo = vec![0xb2u8; 16];
        modinfo.extend_from_slice(b"path\texample.com/hello\nmod\texample.com/hello\t(devel)\t\nbuild\t-ldflags=\"-s -w\"\nbuild\tCGO_ENABLED=0\n");
        modinfo.extend_from_slice(&[0xf9u8; 16]);
        // A module text over 127 bytes: a two-byte length.
        assert!(modinfo.len() > 127);
        let info = parse(&section_bytes("go1.26.6", &modinfo)).unwrap();
        assert_eq!(info.go_version, "go1.26.6");
        assert_eq!(info.go_release(), Some((1, 26)));
        assert_eq!(info.path.as_deref(), Some("example.com/hello"));
        assert_eq!(
            info.module,
            Some(("example.com/hello".to_string(), "(devel)".to_string()))
        );
        assert_eq!(info.ldflags.as_deref(), Some("-s -w"));
    }

    #[test]
    fn a_binary_without_module_information_still_has_its_version() {
        let info = parse(&section("go1.19.8", "")).unwrap();
        assert_eq!(info.go_release(), Some((1, 19)));
        assert_eq!((info.path, info.module), (None, None));
    }

    #[test]
    fn rejects_what_is_not_go_build_information() {
        assert!(parse(b"").is_err());
        assert!(parse(&[0u8; 64]).is_err());
        let mut old = section("go1.17", "");
        old[15] = 0;
        let err = parse(&old).unwrap_err().to_string();
        assert!(err.contains("pre-1.18"), "{err}");
    }

    #[test]
    fn a_truncated_section_is_an_error_not_a_panic() {
        let full = section("go1.21.13", &"x".repeat(300));
        for cut in 0..full.len() {
            let _ = parse(&full[..cut]);
        }
        assert!(parse(&full[..HEADER_LEN + 5]).is_err());
    }

    #[test]
    fn development_versions_have_no_release() {
        let info = parse(&section("devel go1.27-abcdef", "")).unwrap();
        assert_eq!(info.go_release(), None);
    }
}
