//! Decoding a raw BTF blob: the header, the type section into [`Ty`] records (members kept
//! flat), and the string section. Every read is bounds-checked and every reference validated
//! here, so the lookups in `query` can trust the ids they follow.
use std::{collections::HashMap, path::Path};

use anyhow::{Context as _, anyhow, bail, ensure};

pub(super) const MAGIC: u16 = 0xeb9f;
pub(super) const VERSION: u8 = 1;
/// magic(2) version(1) flags(1) hdr_len(4) type_off type_len str_off str_len (4 each).
pub(super) const HEADER_LEN: usize = 24;

pub(super) const KIND_INT: u32 = 1;
pub(super) const KIND_PTR: u32 = 2;
pub(super) const KIND_ARRAY: u32 = 3;
pub(super) const KIND_STRUCT: u32 = 4;
pub(super) const KIND_UNION: u32 = 5;
pub(super) const KIND_ENUM: u32 = 6;
pub(super) const KIND_FWD: u32 = 7;
pub(super) const KIND_TYPEDEF: u32 = 8;
pub(super) const KIND_VOLATILE: u32 = 9;
pub(super) const KIND_CONST: u32 = 10;
pub(super) const KIND_RESTRICT: u32 = 11;
pub(super) const KIND_FUNC: u32 = 12;
pub(super) const KIND_FUNC_PROTO: u32 = 13;
pub(super) const KIND_VAR: u32 = 14;
pub(super) const KIND_DATASEC: u32 = 15;
pub(super) const KIND_FLOAT: u32 = 16;
pub(super) const KIND_DECL_TAG: u32 = 17;
pub(super) const KIND_TYPE_TAG: u32 = 18;
pub(super) const KIND_ENUM64: u32 = 19;

/// One struct/union member, with the offset already decoded from the kind_flag encoding.
#[derive(Clone, Copy, Debug)]
pub(super) struct Member {
    pub(super) name: u32,
    pub(super) ty: u32,
    pub(super) bit_offset: u32,
    /// Non-zero only for kind_flag bitfields.
    pub(super) bitfield_size: u8,
}

/// A decoded type; ids index `KernelBtf::types` (id 0 is void).
#[derive(Clone, Copy, Debug)]
pub(super) enum Ty {
    Void,
    Int {
        size: u32,
        /// From the INT encoding word: a value narrower than its size, or starting past bit 0,
        /// is an (old-style) bitfield.
        bits: u8,
        bit_offset: u8,
    },
    Ptr,
    Array {
        elem: u32,
        nelems: u32,
    },
    Composite {
        name: u32,
        size: u32,
        is_union: bool,
        /// Range into `KernelBtf::members` (kept flat: one allocation instead of ~80k).
        first: u32,
        count: u32,
    },
    Enum {
        size: u32,
    },
    /// typedef/const/volatile/restrict/type_tag: transparent for layout.
    Qualifier {
        target: u32,
    },
    Float {
        size: u32,
    },
    /// FWD, FUNC, FUNC_PROTO, VAR, DATASEC, DECL_TAG: never a sized member type.
    Other {
        kind: u32,
    },
}

/// The parsed type and string sections of one BTF blob.
pub struct KernelBtf {
    pub(super) types: Vec<Ty>,
    pub(super) members: Vec<Member>,
    pub(super) strings: Vec<u8>,
    /// Struct/union name -> ids carrying that name, in id order (names can repeat).
    pub(super) by_name: HashMap<String, Vec<u32>>,
}

/// Bounds-checked little-endian reader over the type section.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn u32(&mut self) -> anyhow::Result<u32> {
        let v = read_u32(self.b, self.pos).ok_or_else(|| {
            anyhow!(
                "type section truncated: need 4 bytes at {} of {}",
                self.pos,
                self.b.len()
            )
        })?;
        self.pos += 4;
        Ok(v)
    }

    /// Skip `n` records of `size` bytes (the per-kind trailing data we do not need).
    fn skip(&mut self, n: u32, size: usize) -> anyhow::Result<()> {
        let end = (n as usize)
            .checked_mul(size)
            .and_then(|len| self.pos.checked_add(len))
            .filter(|&end| end <= self.b.len())
            .ok_or_else(|| {
                anyhow!(
                    "type section truncated: {n} x {size} bytes at {} of {}",
                    self.pos,
                    self.b.len()
                )
            })?;
        self.pos = end;
        Ok(())
    }
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

/// The section `[hdr_len + off, hdr_len + off + len)`; offsets count from the header's end.
fn section<'a>(
    b: &'a [u8],
    hdr_len: usize,
    off: u32,
    len: u32,
    what: &str,
) -> anyhow::Result<&'a [u8]> {
    hdr_len
        .checked_add(off as usize)
        .and_then(|start| Some(start..start.checked_add(len as usize)?))
        .and_then(|r| b.get(r))
        .ok_or_else(|| {
            anyhow!(
                "{what} section out of bounds: offset {off} length {len} after a {hdr_len}-byte header, \
                 blob is {} bytes",
                b.len()
            )
        })
}

fn kind_name(kind: u32) -> &'static str {
    match kind {
        0 => "void",
        KIND_INT => "int",
        KIND_PTR => "pointer",
        KIND_ARRAY => "array",
        KIND_STRUCT => "struct",
        KIND_UNION => "union",
        KIND_ENUM => "enum",
        KIND_FWD => "forward declaration",
        KIND_TYPEDEF => "typedef",
        KIND_VOLATILE => "volatile",
        KIND_CONST => "const",
        KIND_RESTRICT => "restrict",
        KIND_FUNC => "function",
        KIND_FUNC_PROTO => "function prototype",
        KIND_VAR => "variable",
        KIND_DATASEC => "data section",
        KIND_FLOAT => "float",
        KIND_DECL_TAG => "decl tag",
        KIND_TYPE_TAG => "type tag",
        KIND_ENUM64 => "enum64",
        _ => "unknown kind",
    }
}

impl Ty {
    pub(super) fn kind_name(&self) -> &'static str {
        match self {
            Ty::Void => "void",
            Ty::Int { .. } => "int",
            Ty::Ptr => "pointer",
            Ty::Array { .. } => "array",
            Ty::Composite { is_union: true, .. } => "union",
            Ty::Composite { .. } => "struct",
            Ty::Enum { .. } => "enum",
            Ty::Qualifier { .. } => "qualifier",
            Ty::Float { .. } => "float",
            Ty::Other { kind } => kind_name(*kind),
        }
    }
}

/// Decode the record starting at the cursor (its 12-byte common part already read).
fn decode_type(
    c: &mut Cursor<'_>,
    members: &mut Vec<Member>,
    info: u32,
    size_or_type: u32,
    name: u32,
    str_len: usize,
) -> anyhow::Result<Ty> {
    let vlen = info & 0xffff;
    let kind = (info >> 24) & 0x1f;
    let kind_flag = info >> 31 == 1;
    Ok(match kind {
        KIND_INT => {
            let enc = c.u32()?;
            Ty::Int {
                size: size_or_type,
                bits: (enc & 0xff) as u8,
                bit_offset: ((enc >> 16) & 0xff) as u8,
            }
        }
        KIND_PTR => Ty::Ptr,
        KIND_ARRAY => {
            let elem = c.u32()?;
            let _index_type = c.u32()?;
            let nelems = c.u32()?;
            Ty::Array { elem, nelems }
        }
        KIND_STRUCT | KIND_UNION => {
            let first = u32::try_from(members.len()).context("too many members")?;
            for i in 0..vlen {
                let (mname, ty, off) = (c.u32()?, c.u32()?, c.u32()?);
                ensure!(
                    (mname as usize) < str_len,
                    "member {i} name offset {mname} out of range (string section is {str_len} bytes)"
                );
                // With kind_flag the offset word packs (bitfield size << 24) | bit offset.
                let (bit_offset, bitfield_size) = if kind_flag {
                    (off & 0x00ff_ffff, (off >> 24) as u8)
                } else {
                    (off, 0)
                };
                members.push(Member {
                    name: mname,
                    ty,
                    bit_offset,
                    bitfield_size,
                });
            }
            Ty::Composite {
                name,
                size: size_or_type,
                is_union: kind == KIND_UNION,
                first,
                count: vlen,
            }
        }
        KIND_ENUM => {
            c.skip(vlen, 8)?;
            Ty::Enum { size: size_or_type }
        }
        KIND_ENUM64 => {
            c.skip(vlen, 12)?;
            Ty::Enum { size: size_or_type }
        }
        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
            Ty::Qualifier {
                target: size_or_type,
            }
        }
        KIND_FLOAT => Ty::Float { size: size_or_type },
        KIND_FWD | KIND_FUNC => Ty::Other { kind },
        KIND_FUNC_PROTO => {
            c.skip(vlen, 8)?;
            Ty::Other { kind }
        }
        KIND_VAR | KIND_DECL_TAG => {
            c.skip(1, 4)?;
            Ty::Other { kind }
        }
        KIND_DATASEC => {
            c.skip(vlen, 12)?;
            Ty::Other { kind }
        }
        // Its trailing size is unknown, so nothing after it can be decoded.
        k => bail!("unknown BTF kind {k}"),
    })
}

impl KernelBtf {
    /// The running kernel's BTF.
    #[allow(
        dead_code,
        reason = "API for callers without a host root; the loader uses from_path"
    )]
    pub fn from_sys_fs() -> anyhow::Result<Self> {
        Self::from_path(Path::new("/sys/kernel/btf/vmlinux"))
    }

    pub fn from_path(p: &Path) -> anyhow::Result<Self> {
        let bytes =
            std::fs::read(p).with_context(|| format!("reading kernel BTF {}", p.display()))?;
        Self::parse(&bytes).with_context(|| format!("parsing BTF from {}", p.display()))
    }

    /// Parse a raw little-endian BTF blob (header, type section, string section).
    pub fn parse(bytes: &[u8]) -> anyhow::Result<Self> {
        ensure!(
            bytes.len() >= HEADER_LEN,
            "BTF header truncated: {} bytes, need {HEADER_LEN}",
            bytes.len()
        );
        let magic = u16::from_le_bytes([bytes[0], bytes[1]]);
        ensure!(
            magic != MAGIC.swap_bytes(),
            "big-endian BTF is not supported"
        );
        ensure!(
            magic == MAGIC,
            "not BTF: bad magic {magic:#06x} (expected {MAGIC:#06x})"
        );
        ensure!(
            bytes[2] == VERSION,
            "unsupported BTF version {} (expected {VERSION})",
            bytes[2]
        );
        let word = |at| read_u32(bytes, at).context("BTF header truncated");
        let hdr_len = word(4)? as usize;
        // A longer header (future fields) is fine: sections are located relative to its end.
        ensure!(
            (HEADER_LEN..=bytes.len()).contains(&hdr_len),
            "BTF header length {hdr_len} invalid (blob is {} bytes)",
            bytes.len()
        );
        let (type_off, type_len) = (word(8)?, word(12)?);
        let (str_off, str_len) = (word(16)?, word(20)?);
        let type_sec = section(bytes, hdr_len, type_off, type_len, "type")?;
        let strings = section(bytes, hdr_len, str_off, str_len, "string")?;
        // As libbpf requires: offset 0 is the empty name, and the last string is terminated,
        // so any in-range offset names a terminated string.
        ensure!(
            strings.first() == Some(&0),
            "string section does not start with the empty string"
        );
        ensure!(
            strings.last() == Some(&0),
            "string section is not NUL-terminated"
        );

        // Records are at least 12 bytes: reserve for the common case without trusting it.
        let mut types = Vec::with_capacity(1 + type_sec.len() / 16);
        types.push(Ty::Void);
        let mut members = Vec::new();
        let mut c = Cursor {
            b: type_sec,
            pos: 0,
        };
        while c.pos < type_sec.len() {
            let (id, start) = (types.len(), c.pos);
            let ty = (|| {
                let name = c.u32()?;
                let info = c.u32()?;
                let size_or_type = c.u32()?;
                ensure!(
                    (name as usize) < strings.len(),
                    "name offset {name} out of range (string section is {} bytes)",
                    strings.len()
                );
                decode_type(
                    &mut c,
                    &mut members,
                    info,
                    size_or_type,
                    name,
                    strings.len(),
                )
            })()
            .with_context(|| format!("BTF type [{id}] at byte {start} of the type section"))?;
            types.push(ty);
        }
        ensure!(
            u32::try_from(types.len()).is_ok(),
            "too many BTF types ({})",
            types.len()
        );

        let btf = Self {
            types,
            members,
            strings: strings.to_vec(),
            by_name: HashMap::new(),
        };
        btf.validate_refs()?;
        Ok(Self {
            by_name: btf.index_names(),
            ..btf
        })
    }

    /// Every type id the lookups can follow must exist; checked once here so a corrupt blob
    /// fails at parse time with the offending type named.
    fn validate_refs(&self) -> anyhow::Result<()> {
        let n = self.types.len();
        // `what` is a closure so the common (valid) case formats nothing.
        let check = |id: usize, target: u32, what: &dyn Fn() -> String| {
            ensure!(
                (target as usize) < n,
                "BTF type [{id}]: {} refers to type {target}, but there are only {n} types",
                what()
            );
            Ok(())
        };
        for (id, ty) in self.types.iter().enumerate() {
            match *ty {
                Ty::Array { elem, .. } => check(id, elem, &|| "array element".into())?,
                Ty::Qualifier { target } => check(id, target, &|| "qualifier/typedef".into())?,
                Ty::Composite { .. } => {
                    for (i, m) in self.members_of(ty)?.iter().enumerate() {
                        check(id, m.ty, &|| format!("member {i}"))?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn index_names(&self) -> HashMap<String, Vec<u32>> {
        let mut by_name: HashMap<String, Vec<u32>> = HashMap::new();
        for (id, ty) in self.types.iter().enumerate() {
            if let Ty::Composite { name, .. } = *ty
                && name != 0
                // Non-UTF-8 names cannot match a &str query; skip rather than fail the blob.
                && let Ok(Ok(s)) = self.string(name).map(std::str::from_utf8)
            {
                // `id` fits in u32: checked in parse.
                by_name.entry(s.to_owned()).or_default().push(id as u32);
            }
        }
        by_name
    }

    /// Bytes of the NUL-terminated string at `off` (without the NUL).
    pub(super) fn string(&self, off: u32) -> anyhow::Result<&[u8]> {
        let rest = self
            .strings
            .get(off as usize..)
            .with_context(|| format!("string offset {off} out of range"))?;
        let end = rest
            .iter()
            .position(|&c| c == 0)
            .with_context(|| format!("string at offset {off} is not terminated"))?;
        Ok(&rest[..end])
    }

    pub(super) fn ty(&self, id: u32) -> anyhow::Result<&Ty> {
        self.types.get(id as usize).with_context(|| {
            format!(
                "type id {id} out of range (there are {} types)",
                self.types.len()
            )
        })
    }

    pub(super) fn members_of(&self, ty: &Ty) -> anyhow::Result<&[Member]> {
        match *ty {
            Ty::Composite { first, count, .. } => (first as usize)
                .checked_add(count as usize)
                .and_then(|end| self.members.get(first as usize..end))
                .context("member range out of bounds"),
            _ => Ok(&[]),
        }
    }
}
