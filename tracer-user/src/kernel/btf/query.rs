//! Lookups over the decoded types: follow the qualifier chain, size a type, find a member
//! (through anonymous structs/unions) by a dotted path, and turn it into a byte offset.
use std::collections::HashSet;

use anyhow::{Context as _, anyhow, bail, ensure};

use super::decode::{KernelBtf, Ty};

/// Qualifier chains, anonymous-member nesting and array nesting are a handful deep in real
/// kernels; the bound turns malformed (cyclic or absurdly deep) input into an error instead of
/// an endless loop or a stack overflow.
pub(super) const MAX_DEPTH: usize = 32;
/// BTF does not record pointer sizes; the kernels we trace are 64-bit.
const PTR_SIZE: u32 = 8;

/// The resolved type of a member, as far as offsets need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeInfo {
    Int {
        size: u32,
    },
    Ptr,
    Array {
        elem: Box<TypeInfo>,
        elem_size: u32,
        len: u32,
    },
    /// `name` is empty for an anonymous struct.
    Struct {
        name: String,
        size: u32,
    },
    Union {
        name: String,
        size: u32,
    },
    /// ENUM or ENUM64.
    Enum {
        size: u32,
    },
    Other,
}

/// A member found by a path: its total bit offset from the start of the outer type.
#[derive(Clone, Copy, Debug)]
pub(super) struct Found {
    pub(super) bits: u32,
    pub(super) ty: u32,
    pub(super) bitfield_size: u8,
}

/// State of one member search through anonymous members.
struct Search {
    /// Anonymous types already searched without a match: a second visit could only fail
    /// again (the same type has the same members), and skipping it keeps the search linear
    /// in the blob's size even when crafted input shares anonymous types exponentially.
    done: HashSet<u32>,
    /// The anonymous types being searched (the path from the outer type): meeting one again
    /// means a type contains itself, which only malformed BTF can say.
    stack: Vec<u32>,
}

impl KernelBtf {
    /// Follow typedef/const/volatile/restrict/type_tag to the underlying type id.
    pub(super) fn resolve(&self, id: u32) -> anyhow::Result<u32> {
        let mut cur = id;
        for _ in 0..MAX_DEPTH {
            match self.ty(cur)? {
                Ty::Qualifier { target } => cur = *target,
                _ => return Ok(cur),
            }
        }
        bail!("typedef/qualifier chain from type {id} is longer than {MAX_DEPTH} (a loop?)")
    }

    /// "struct mm_struct (type [264])", "anonymous union (type [745])".
    pub(super) fn describe(&self, id: u32) -> String {
        let (kind, name) = match self.ty(id) {
            Ok(ty @ Ty::Composite { name, .. }) => (ty.kind_name(), *name),
            Ok(ty) => (ty.kind_name(), 0),
            Err(_) => ("invalid type", 0),
        };
        match self.string(name) {
            Ok(n) if !n.is_empty() => {
                format!("{kind} {} (type [{id}])", String::from_utf8_lossy(n))
            }
            _ => format!("anonymous {kind} (type [{id}])"),
        }
    }

    pub(super) fn size_of(&self, id: u32, depth: usize) -> anyhow::Result<u32> {
        ensure!(
            depth < MAX_DEPTH,
            "type nesting deeper than {MAX_DEPTH} at type {id} (a loop?)"
        );
        let rid = self.resolve(id)?;
        Ok(match *self.ty(rid)? {
            Ty::Int { size, .. }
            | Ty::Enum { size }
            | Ty::Float { size }
            | Ty::Composite { size, .. } => size,
            Ty::Ptr => PTR_SIZE,
            Ty::Array { elem, nelems } => self
                .size_of(elem, depth + 1)?
                .checked_mul(nelems)
                .with_context(|| format!("size of array type {rid} overflows"))?,
            ref other => bail!("{} (type {rid}) has no size", other.kind_name()),
        })
    }

    pub(super) fn info(&self, id: u32, depth: usize) -> anyhow::Result<TypeInfo> {
        ensure!(
            depth < MAX_DEPTH,
            "type nesting deeper than {MAX_DEPTH} at type {id} (a loop?)"
        );
        let rid = self.resolve(id)?;
        Ok(match *self.ty(rid)? {
            Ty::Int { size, .. } => TypeInfo::Int { size },
            Ty::Ptr => TypeInfo::Ptr,
            Ty::Array { elem, nelems } => TypeInfo::Array {
                elem: Box::new(self.info(elem, depth + 1)?),
                elem_size: self.size_of(elem, depth + 1)?,
                len: nelems,
            },
            Ty::Composite {
                name,
                size,
                is_union,
                ..
            } => {
                let name = String::from_utf8_lossy(self.string(name)?).into_owned();
                if is_union {
                    TypeInfo::Union { name, size }
                } else {
                    TypeInfo::Struct { name, size }
                }
            }
            Ty::Enum { size } => TypeInfo::Enum { size },
            Ty::Void | Ty::Qualifier { .. } | Ty::Float { .. } | Ty::Other { .. } => {
                TypeInfo::Other
            }
        })
    }

    /// Find member `name` of composite `id` (already resolved), searching anonymous
    /// struct/union members recursively in declaration order. Offset is relative to `id`.
    fn find_member(&self, id: u32, name: &str) -> anyhow::Result<Option<Found>> {
        let mut search = Search {
            done: HashSet::new(),
            stack: vec![id],
        };
        self.find_in(id, name.as_bytes(), &mut search)
    }

    fn find_in(&self, id: u32, name: &[u8], s: &mut Search) -> anyhow::Result<Option<Found>> {
        ensure!(
            s.stack.len() <= MAX_DEPTH,
            "anonymous members nested deeper than {MAX_DEPTH} below type {id}"
        );
        for m in self.members_of(self.ty(id)?)? {
            let hit = if m.name == 0 {
                let inner = self.resolve(m.ty)?;
                if !matches!(self.ty(inner)?, Ty::Composite { .. }) || s.done.contains(&inner) {
                    continue;
                }
                ensure!(
                    !s.stack.contains(&inner),
                    "{} contains itself",
                    self.describe(inner)
                );
                s.stack.push(inner);
                let found = self.find_in(inner, name, s)?;
                s.stack.pop();
                let Some(f) = found else {
                    s.done.insert(inner);
                    continue;
                };
                Found {
                    bits: m
                        .bit_offset
                        .checked_add(f.bits)
                        .context("member offset overflows")?,
                    ..f
                }
            } else if self.string(m.name)? == name {
                Found {
                    bits: m.bit_offset,
                    ty: m.ty,
                    bitfield_size: m.bitfield_size,
                }
            } else {
                continue;
            };
            return Ok(Some(hit));
        }
        Ok(None)
    }

    /// Follow a dotted `path` from type `id`. `Ok(Err(why))` means "no such member here"
    /// (the caller may try another type of the same name); `Err` means malformed BTF.
    fn walk(&self, id: u32, path: &str) -> anyhow::Result<Result<Found, String>> {
        let mut found = Found {
            bits: 0,
            ty: id,
            bitfield_size: 0,
        };
        let mut walked = self.describe(id);
        for part in path.split('.') {
            let outer = self.resolve(found.ty)?;
            let ty = self.ty(outer)?;
            if !matches!(ty, Ty::Composite { .. }) {
                return Ok(Err(format!(
                    "{walked} has type {}, not struct or union: no member {part:?} in it",
                    ty.kind_name()
                )));
            }
            let Some(f) = self.find_member(outer, part)? else {
                return Ok(Err(format!(
                    "{} has no member {part:?}",
                    self.describe(outer)
                )));
            };
            found = Found {
                bits: found
                    .bits
                    .checked_add(f.bits)
                    .context("member offset overflows")?,
                ..f
            };
            walked.push('.');
            walked.push_str(part);
        }
        Ok(Ok(found))
    }

    /// The member at `path` in the first struct/union named `struct_name` that has it.
    pub(super) fn locate(&self, struct_name: &str, path: &str) -> anyhow::Result<Found> {
        ensure!(
            path.split('.').all(|p| !p.is_empty()),
            "invalid member path {path:?}"
        );
        let ids = self
            .by_name
            .get(struct_name)
            .with_context(|| format!("no struct or union named {struct_name:?} in the BTF"))?;
        let mut misses = Vec::new();
        for &id in ids {
            match self.walk(id, path)? {
                Ok(found) => return Ok(found),
                Err(why) => misses.push(why),
            }
        }
        bail!("{}", misses.join("; "))
    }

    /// Like `locate`, from a type id (for anonymous types that have no name to look up).
    pub(super) fn locate_in(&self, id: u32, path: &str) -> anyhow::Result<Found> {
        self.walk(id, path)?.map_err(|why| anyhow!(why))
    }

    /// The byte offset of a found member: refuses bitfields and unaligned offsets, which a
    /// byte offset cannot describe.
    pub(super) fn byte_offset(&self, f: &Found) -> anyhow::Result<u32> {
        let int_bitfield = match *self.ty(self.resolve(f.ty)?)? {
            // Pre-kind_flag encoding: the bitfield lives in the INT type itself.
            Ty::Int {
                size,
                bits,
                bit_offset,
            } => bit_offset != 0 || u32::from(bits) != size.saturating_mul(8),
            _ => false,
        };
        ensure!(
            f.bitfield_size == 0 && !int_bitfield,
            "member is a bitfield (bit offset {}), it has no byte offset",
            f.bits
        );
        ensure!(
            f.bits.is_multiple_of(8),
            "member bit offset {} is not byte-aligned",
            f.bits
        );
        Ok(f.bits / 8)
    }

    /// Byte offset of a member of a named struct/union. `path` may be dotted
    /// ("rss_stat.count"); members inside anonymous structs/unions are found (the kernel's
    /// mm_struct wraps its fields in one). With several types of that name, the first that
    /// has the member wins.
    pub fn member_offset(&self, struct_name: &str, path: &str) -> anyhow::Result<u32> {
        self.locate(struct_name, path)
            .and_then(|f| self.byte_offset(&f))
            .with_context(|| format!("offset of {struct_name}.{path}"))
    }

    /// The resolved type (through typedef/const/volatile/restrict/type_tag) of that member.
    pub fn member_type(&self, struct_name: &str, path: &str) -> anyhow::Result<TypeInfo> {
        self.locate(struct_name, path)
            .and_then(|f| self.info(f.ty, 0))
            .with_context(|| format!("type of {struct_name}.{path}"))
    }
}
