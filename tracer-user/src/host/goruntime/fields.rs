//! Where, inside the runtime's variables, the numbers we read are: byte offsets of struct
//! fields, which change between Go releases. Taken from the binary's DWARF when it has some
//! (the compiler's own word), else from tables for the releases we have checked against
//! DWARF (tests/go_runtime.rs compares every table entry with a real build's DWARF).
use anyhow::{Context as _, bail};
use gimli::{AttributeValue, EndianSlice, LittleEndian};
use object::{Object as _, ObjectSection as _};

/// Offsets inside `runtime.gcControllerState`, `runtime.mstats`, `runtime.schedt` and
/// `runtime.p` of what leaktracer reads, and of the fields that only serve to recognise the
/// variables in stripped binaries (see `locate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fields {
    /// gcControllerState.heapMarked: bytes marked live by the last completed GC.
    pub gc_heap_marked: u64,
    /// gcControllerState.gcPercentHeapGoal: the GOGC heap goal (all ones when GOGC=off).
    pub gc_percent_heap_goal: u64,
    /// gcControllerState.memoryLimit: the soft memory limit (math.MaxInt64 when unset).
    pub gc_memory_limit: u64,
    /// mstats.numgc: completed GC cycles (what MemStats.NumGC says).
    pub memstats_numgc: u64,
    /// mstats.numforcedgc, mstats.gc_cpu_fraction: read next to numgc by readmemstats_m,
    /// they pin down `runtime.memstats` in stripped binaries.
    pub memstats_numforcedgc: u64,
    pub memstats_gc_cpu_fraction: u64,
    /// schedt.gFree.lock and its lists: gfget touches all of them, which pins down
    /// `runtime.sched` in stripped binaries.
    pub sched_gfree_lock: u64,
    pub sched_gfree_stack: u64,
    pub sched_gfree_nostack: u64,
    /// The counts of free goroutines on the global lists: one (`gFree.n`) before Go 1.25,
    /// one per list (`gFree.stack.size`, `gFree.noStack.size`) from 1.25.
    pub sched_gfree_counts: Vec<u64>,
    /// schedt.ngsys: system goroutines (not counted by runtime.NumGoroutine).
    pub sched_ngsys: u64,
    /// p.gFree.n (p.gFree.size from 1.25): free goroutines cached on one P.
    pub p_gfree_count: u64,
}

/// Field paths, as DWARF names them, for a release.
struct Paths {
    sched_gfree_counts: &'static [&'static str],
    p_gfree_count: &'static str,
}

fn paths(release: (u32, u32)) -> Paths {
    if release >= (1, 25) {
        Paths {
            sched_gfree_counts: &["gFree.stack.size", "gFree.noStack.size"],
            p_gfree_count: "gFree.size",
        }
    } else {
        Paths {
            sched_gfree_counts: &["gFree.n"],
            p_gfree_count: "gFree.n",
        }
    }
}

/// The releases whose layout is in [`table`], oldest first.
pub const TABLE_RELEASES: &[(u32, u32)] = &[
    (1, 19),
    (1, 21),
    (1, 22),
    (1, 23),
    (1, 24),
    (1, 25),
    (1, 26),
    (1, 27),
];

/// The offsets for a release, from tables checked against DWARF of real builds
/// (go1.19.8, go1.21.13, go1.22.10, go1.23.9, go1.24.11, go1.25.5, go1.26.6, go1.27.3).
/// Go 1.20 is missing: no toolchain of it was at hand to check, and a guessed offset would
/// read a wrong number. Outside the table, a binary is read only when it has DWARF.
pub fn table(release: (u32, u32)) -> Option<Fields> {
    // (heapMarked, gcPercentHeapGoal, memoryLimit, numgc, numforcedgc, gc_cpu_fraction,
    //  gFree.lock, gFree.stack, gFree.noStack, [counts], ngsys, p.gFree count)
    let f = |gc: [u64; 3], ms: [u64; 3], gfree: [u64; 3], counts: &[u64], ngsys, p| Fields {
        gc_heap_marked: gc[0],
        gc_percent_heap_goal: gc[1],
        gc_memory_limit: gc[2],
        memstats_numgc: ms[0],
        memstats_numforcedgc: ms[1],
        memstats_gc_cpu_fraction: ms[2],
        sched_gfree_lock: gfree[0],
        sched_gfree_stack: gfree[1],
        sched_gfree_nostack: gfree[2],
        sched_gfree_counts: counts.to_vec(),
        sched_ngsys: ngsys,
        p_gfree_count: p,
    };
    TABLE
        .iter()
        .find(|row| row.0 == release)
        .map(|row| f(row.1, row.2, row.3, row.4, row.5, row.6))
}

type Row = (
    (u32, u32),
    [u64; 3],
    [u64; 3],
    [u64; 3],
    &'static [u64],
    u64,
    u64,
);

/// Read from DWARF of real builds; tests/go_runtime.rs (`offsets_tables_match_dwarf`)
/// checks every row and prints what DWARF says when one differs.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    // release  gcController      memstats              sched.gFree         counts      ngsys p.gFree
    ((1, 19), [184, 104, 8], [7704, 7708, 7712], [152, 160, 168], &[176],      72, 2472),
    ((1, 21), [152, 72, 8],  [7704, 7708, 7712], [160, 168, 176], &[184],      72, 2472),
    ((1, 22), [152, 72, 8],  [7704, 7708, 7712], [160, 168, 176], &[184],      72, 2472),
    ((1, 23), [152, 72, 8],  [7704, 7708, 7712], [160, 168, 176], &[184],      72, 2464),
    ((1, 24), [152, 72, 8],  [7704, 7708, 7712], [160, 168, 176], &[184],      72, 2464),
    ((1, 25), [152, 72, 8],  [7680, 7684, 7688], [168, 176, 192], &[184, 200], 80, 2464),
    ((1, 26), [152, 72, 8],  [7680, 7684, 7688], [184, 192, 208], &[200, 216], 96, 2472),
    ((1, 27), [152, 72, 8],  [7680, 7684, 7688], [184, 192, 208], &[200, 216], 96, 2472),
];

/// The offsets from the binary's DWARF: None when it has none (stripped), an error when
/// it has some but a type or field is missing (a layout we do not understand).
pub fn from_dwarf(file: &object::File<'_>, release: (u32, u32)) -> anyhow::Result<Option<Fields>> {
    let Some(types) = RuntimeTypes::load(file)? else {
        return Ok(None);
    };
    let paths = paths(release);
    let gc = |p: &str| types.offset("runtime.gcControllerState", p);
    let ms = |p: &str| types.offset("runtime.mstats", p);
    let sched = |p: &str| types.offset("runtime.schedt", p);
    Ok(Some(Fields {
        gc_heap_marked: gc("heapMarked")?,
        gc_percent_heap_goal: gc("gcPercentHeapGoal")?,
        gc_memory_limit: gc("memoryLimit")?,
        memstats_numgc: ms("numgc")?,
        memstats_numforcedgc: ms("numforcedgc")?,
        memstats_gc_cpu_fraction: ms("gc_cpu_fraction")?,
        sched_gfree_lock: sched("gFree.lock")?,
        sched_gfree_stack: sched("gFree.stack")?,
        sched_gfree_nostack: sched("gFree.noStack")?,
        sched_gfree_counts: paths
            .sched_gfree_counts
            .iter()
            .map(|p| sched(p))
            .collect::<anyhow::Result<_>>()?,
        sched_ngsys: sched("ngsys")?,
        p_gfree_count: types.offset("runtime.p", paths.p_gfree_count)?,
    }))
}

/// The DWARF of the `runtime` compilation unit, owned (sections decompressed).
struct RuntimeTypes {
    sections: gimli::DwarfSections<Vec<u8>>,
}

type Slice<'a> = EndianSlice<'a, LittleEndian>;

impl RuntimeTypes {
    fn load(file: &object::File<'_>) -> anyhow::Result<Option<Self>> {
        if file.section_by_name(".debug_info").is_none() {
            return Ok(None);
        }
        let sections = gimli::DwarfSections::load(|id| -> anyhow::Result<Vec<u8>> {
            Ok(match file.section_by_name(id.name()) {
                Some(s) => s
                    .uncompressed_data()
                    .with_context(|| format!("decompressing {}", id.name()))?
                    .into_owned(),
                None => Vec::new(),
            })
        })?;
        Ok(Some(Self { sections }))
    }

    /// Byte offset of the field at `path` ("gFree.stack.size": members inside members)
    /// from the start of the struct type named `ty`.
    fn offset(&self, ty: &str, path: &str) -> anyhow::Result<u64> {
        let dwarf = self
            .sections
            .borrow(|s| EndianSlice::new(s.as_slice(), LittleEndian));
        let mut units = dwarf.units();
        while let Some(header) = units.next().context("reading DWARF units")? {
            let unit = dwarf.unit(header).context("reading a DWARF unit")?;
            let is_runtime = match unit.name {
                Some(name) => name.to_string_lossy() == "runtime",
                None => false,
            };
            if !is_runtime {
                continue;
            }
            // The runtime has several units (Go code, assembly): the types are in one.
            let Some(mut at) = find_struct(&dwarf, &unit, ty)? else {
                continue;
            };
            let mut total = 0u64;
            let mut members = path.split('.').peekable();
            while let Some(member) = members.next() {
                let (offset, member_type) = find_member(&dwarf, &unit, at, member)
                    .with_context(|| format!("{ty}.{path}"))?;
                total += offset;
                if members.peek().is_some() {
                    at = member_type
                        .with_context(|| format!("{ty}.{path}: {member} has no struct type"))?;
                }
            }
            return Ok(total);
        }
        bail!("the runtime's DWARF has no type {ty}")
    }
}

fn is_named(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    unit: &gimli::Unit<Slice<'_>>,
    entry: &gimli::DebuggingInformationEntry<Slice<'_>>,
    name: &str,
) -> anyhow::Result<bool> {
    let Some(value) = entry.attr_value(gimli::DW_AT_name) else {
        return Ok(false);
    };
    let s = dwarf.attr_string(unit, value)?;
    Ok(s.to_string_lossy() == name)
}

fn find_struct(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    unit: &gimli::Unit<Slice<'_>>,
    name: &str,
) -> anyhow::Result<Option<gimli::UnitOffset>> {
    let mut entries = unit.entries();
    while let Some(entry) = entries.next_dfs()? {
        if entry.tag() == gimli::DW_TAG_structure_type && is_named(dwarf, unit, entry, name)? {
            return Ok(Some(entry.offset()));
        }
    }
    Ok(None)
}

/// The member `name` of the struct at `at`: (its offset, its type in this unit with
/// typedefs seen through).
fn find_member(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    unit: &gimli::Unit<Slice<'_>>,
    at: gimli::UnitOffset,
    name: &str,
) -> anyhow::Result<(u64, Option<gimli::UnitOffset>)> {
    let mut tree = unit.entries_tree(Some(at))?;
    let root = tree.root()?;
    let mut children = root.children();
    while let Some(child) = children.next()? {
        let entry = child.entry();
        if entry.tag() != gimli::DW_TAG_member || !is_named(dwarf, unit, entry, name)? {
            continue;
        }
        let offset = match entry.attr_value(gimli::DW_AT_data_member_location) {
            Some(AttributeValue::Udata(v)) => v,
            Some(AttributeValue::Data1(v)) => u64::from(v),
            Some(AttributeValue::Data2(v)) => u64::from(v),
            Some(AttributeValue::Data4(v)) => u64::from(v),
            Some(AttributeValue::Data8(v)) => v,
            Some(AttributeValue::Sdata(v)) => u64::try_from(v)?,
            other => bail!("member {name}: location {other:?} is not a constant"),
        };
        // Types of other units (base types, mostly) are not followed: only struct members
        // lead somewhere, and the runtime's structs are in its own unit.
        let Some(mut ty) = type_in_unit(unit, entry.attr_value(gimli::DW_AT_type)) else {
            return Ok((offset, None));
        };
        // Named types may be typedefs of the struct (Go emits them for some types).
        for _ in 0..8 {
            let e = unit.entry(ty)?;
            match (e.tag(), type_in_unit(unit, e.attr_value(gimli::DW_AT_type))) {
                (gimli::DW_TAG_typedef, Some(next)) => ty = next,
                _ => break,
            }
        }
        return Ok((offset, Some(ty)));
    }
    bail!("no member {name}")
}

/// A type reference, when it points into `unit` (Go writes section-wide references).
fn type_in_unit(
    unit: &gimli::Unit<Slice<'_>>,
    value: Option<AttributeValue<Slice<'_>>>,
) -> Option<gimli::UnitOffset> {
    match value? {
        AttributeValue::UnitRef(offset) => Some(offset),
        AttributeValue::DebugInfoRef(offset) => offset.to_unit_offset(&unit.header),
        _ => None,
    }
}
