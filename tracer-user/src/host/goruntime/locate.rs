//! Where the runtime's variables are (link-time addresses): `runtime.memstats`,
//! `runtime.gcController`, `runtime.sched`, `runtime.allglen` and `runtime.allp`.
//!
//! With ELF symbols this is a lookup. Stripped binaries (`-ldflags=-s -w`) have none, but
//! `.gopclntab` still names every function, and the runtime's own functions address these
//! variables with RIP-relative operands. Each variable is recognised in one function by a
//! pattern that holds from Go 1.19 to 1.27, and that must match exactly once:
//!
//! - `gcController`: `readmemstats_m` loads its address into RAX right before calling a
//!   `(*gcControllerState)` method (the receiver is the first register argument). A program
//!   that never calls `runtime.ReadMemStats` has no `readmemstats_m` (the linker drops it);
//!   then the GC's own `gcStart`, `gcMarkDone` and `gcMarkTermination`, always linked, are
//!   read the same way, and all their votes must agree.
//! - `memstats`: `readmemstats_m` reads `numgc`, `numforcedgc` and `gc_cpu_fraction`; one
//!   base address puts all three field offsets on operands of the function. Without it,
//!   `gcMarkTermination` writes the same three.
//! - `sched`: `gfget` touches `sched.gFree`'s lock, both lists and their counts; likewise.
//! - `allp`: `retake` reads a slice's pointer and length (`for i < len(allp)`): the only
//!   pair of 8-byte operands 8 bytes apart.
//! - `allglen`: `allgadd` stores `len(allgs)` into it with an atomic exchange through a
//!   register loaded by LEA; `allgs` is the slice whose three words the function uses.
//!
//! tests/go_runtime.rs checks each against the symbol table of every supported release.
use std::collections::BTreeSet;

use anyhow::{Context as _, bail};
use iced_x86::{Decoder, DecoderOptions, Instruction, MemorySize, Mnemonic, OpKind, Register};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

use super::fields::Fields;
use crate::host::gobin::Pclntab;

/// Link-time addresses of the runtime variables read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Globals {
    pub memstats: u64,
    pub gc_controller: u64,
    pub sched: u64,
    pub allglen: u64,
    pub allp: u64,
}

/// From ELF symbols; None when the binary has none of them (stripped).
pub fn from_symbols(file: &object::File<'_>) -> anyhow::Result<Option<Globals>> {
    let wanted = [
        "runtime.memstats",
        "runtime.gcController",
        "runtime.sched",
        "runtime.allglen",
        "runtime.allp",
    ];
    let mut found = [None; 5];
    for symbol in file.symbols() {
        if let Ok(name) = symbol.name()
            && let Some(i) = wanted.iter().position(|w| *w == name)
        {
            found[i] = Some(symbol.address());
        }
    }
    if found.iter().all(Option::is_none) {
        return Ok(None);
    }
    let get = |i: usize| found[i].with_context(|| format!("no symbol {}", wanted[i]));
    Ok(Some(Globals {
        memstats: get(0)?,
        gc_controller: get(1)?,
        sched: get(2)?,
        allglen: get(3)?,
        allp: get(4)?,
    }))
}

/// From the runtime's code, found through `.gopclntab` (works with or without symbols).
pub fn from_code(
    file: &object::File<'_>,
    pclntab: &Pclntab,
    fields: &Fields,
) -> anyhow::Result<Globals> {
    let code = |name: &str| -> anyhow::Result<Vec<Instruction>> {
        decode(file, pclntab, name).with_context(|| format!("decoding {name}"))
    };
    let memstats_fields = [
        fields.memstats_numgc,
        fields.memstats_numforcedgc,
        fields.memstats_gc_cpu_fraction,
    ];
    let (gc_controller, memstats) = if pclntab.find("runtime.readmemstats_m").is_some() {
        let readmemstats = code("runtime.readmemstats_m")?;
        (
            gc_controller(&[readmemstats.as_slice()], pclntab).context("gcController")?,
            struct_base(&readmemstats, &memstats_fields)
                .context("memstats in runtime.readmemstats_m")?,
        )
    } else {
        let gc_code = [
            "runtime.gcStart",
            "runtime.gcMarkDone",
            "runtime.gcMarkTermination",
        ]
        .iter()
        .filter(|name| pclntab.find(name).is_some())
        .map(|name| code(name))
        .collect::<anyhow::Result<Vec<_>>>()?;
        let slices: Vec<&[Instruction]> = gc_code.iter().map(Vec::as_slice).collect();
        let termination = code("runtime.gcMarkTermination")?;
        (
            gc_controller(&slices, pclntab)
                .context("gcController in the GC's functions (no readmemstats_m)")?,
            struct_base(&termination, &memstats_fields)
                .context("memstats in runtime.gcMarkTermination (no readmemstats_m)")?,
        )
    };
    let mut gfree = vec![
        fields.sched_gfree_lock,
        fields.sched_gfree_stack,
        fields.sched_gfree_nostack,
    ];
    gfree.extend(&fields.sched_gfree_counts);
    let sched = struct_base(&code("runtime.gfget")?, &gfree).context("sched in runtime.gfget")?;
    let allp = allp(&code("runtime.retake")?).context("allp in runtime.retake")?;
    let allglen = allglen(&code("runtime.allgadd")?).context("allglen in runtime.allgadd")?;
    Ok(Globals {
        memstats,
        gc_controller,
        sched,
        allglen,
        allp,
    })
}

/// The instructions of function `name`.
fn decode(
    file: &object::File<'_>,
    pclntab: &Pclntab,
    name: &str,
) -> anyhow::Result<Vec<Instruction>> {
    let f = pclntab.find(name).context("not in .gopclntab")?;
    let section = file
        .sections()
        .find(|s| {
            s.address() <= f.entry
                && s.address()
                    .checked_add(s.size())
                    .is_some_and(|e| f.end <= e)
        })
        .context("no section holds the function")?;
    let data = section.data().context("reading the code")?;
    let from = usize::try_from(f.entry - section.address())?;
    let to = usize::try_from(f.end - section.address())?;
    let bytes = data
        .get(from..to)
        .context("function past its section's data")?;
    let mut decoder = Decoder::with_ip(64, bytes, f.entry, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        out.push(decoder.decode());
    }
    Ok(out)
}

/// The RIP-relative address `i` refers to, if any.
fn target(i: &Instruction) -> Option<u64> {
    i.is_ip_rel_memory_operand()
        .then(|| i.ip_rel_memory_address())
}

/// An 8-byte integer memory access (not an address computation).
fn accesses_word(i: &Instruction) -> Option<u64> {
    let word = matches!(i.memory_size(), MemorySize::UInt64 | MemorySize::Int64);
    (i.mnemonic() != Mnemonic::Lea && word)
        .then(|| target(i))
        .flatten()
}

fn gc_controller(functions: &[&[Instruction]], pclntab: &Pclntab) -> anyhow::Result<u64> {
    let mut votes = BTreeSet::new();
    for code in functions {
        for (n, call) in code.iter().enumerate() {
            if call.mnemonic() != Mnemonic::Call {
                continue;
            }
            let callee = pclntab.lookup(call.near_branch_target());
            if !callee.is_some_and(|c| c.function.name.starts_with("runtime.(*gcControllerState)."))
            {
                continue;
            }
            // The receiver's address: a LEA into RAX among the few instructions before.
            let lea = code[n.saturating_sub(3)..n]
                .iter()
                .rev()
                .find(|i| i.mnemonic() == Mnemonic::Lea && i.op0_register() == Register::RAX);
            if let Some(t) = lea.and_then(target) {
                votes.insert(t);
            }
        }
    }
    unique(votes, "calls of a (*gcControllerState) method on a global")
}

/// The base of a struct of which the code uses every field at `offsets` (at least two).
/// The structs looked for hold 64-bit fields, so the linker aligns them to 8 bytes: an
/// unaligned base is a coincidence of other variables (gcMarkTermination has one).
fn struct_base(code: &[Instruction], offsets: &[u64]) -> anyhow::Result<u64> {
    let targets: BTreeSet<u64> = code.iter().filter_map(target).collect();
    let first = *offsets.first().context("no offsets")?;
    let bases = targets
        .iter()
        .filter_map(|t| t.checked_sub(first))
        .filter(|base| base % 8 == 0)
        .filter(|base| {
            offsets
                .iter()
                .all(|o| base.checked_add(*o).is_some_and(|a| targets.contains(&a)))
        })
        .collect();
    unique(bases, "addresses with all the fields")
}

/// The slice read as (pointer, length): 8-byte reads at T and T+8, and no other such pair.
fn allp(code: &[Instruction]) -> anyhow::Result<u64> {
    let words: BTreeSet<u64> = code.iter().filter_map(accesses_word).collect();
    let pairs = words
        .iter()
        .filter(|t| t.checked_add(8).is_some_and(|n| words.contains(&n)))
        .copied()
        .collect();
    unique(pairs, "slices read")
}

fn allglen(code: &[Instruction]) -> anyhow::Result<u64> {
    let words: BTreeSet<u64> = code.iter().filter_map(accesses_word).collect();
    let slices: BTreeSet<u64> = words
        .iter()
        .filter(|t| (1..=2).all(|k| t.checked_add(8 * k).is_some_and(|n| words.contains(&n))))
        .copied()
        .collect();
    let allgs = unique(slices, "slices grown (pointer, length, capacity)")?;
    // Which register holds what: loaded from a global (MOV r, [rip+x]) or its address (LEA).
    let mut loaded: [Option<u64>; 16] = [None; 16];
    let mut address: [Option<u64>; 16] = [None; 16];
    // The 64-bit general registers, RAX to R15, are consecutive in iced's enum.
    let slot = |r: Register| {
        let n = (r as usize).checked_sub(Register::RAX as usize)?;
        (n < 16).then_some(n)
    };
    let mut found = BTreeSet::new();
    for i in code {
        match i.mnemonic() {
            Mnemonic::Mov if i.op0_kind() == OpKind::Register => {
                if let Some(r) = slot(i.op0_register()) {
                    loaded[r] = accesses_word(i);
                    address[r] = None;
                }
            }
            Mnemonic::Lea => {
                if let Some(r) = slot(i.op0_register()) {
                    address[r] = target(i);
                    loaded[r] = None;
                }
            }
            // An atomic store of len(allgs) through a register holding a global's address.
            Mnemonic::Xchg => {
                let (mem, reg) = match (i.op0_kind(), i.op1_kind()) {
                    (OpKind::Memory, OpKind::Register) => (i.memory_base(), i.op1_register()),
                    (OpKind::Register, OpKind::Memory) => (i.memory_base(), i.op0_register()),
                    _ => continue,
                };
                if i.memory_displacement64() != 0 || i.memory_index() != Register::None {
                    continue;
                }
                if let (Some(m), Some(r)) = (slot(mem), slot(reg))
                    && loaded[r] == Some(allgs + 8)
                    && let Some(dest) = address[m]
                {
                    found.insert(dest);
                }
            }
            _ => {}
        }
    }
    unique(found, "atomic stores of len(allgs)")
}

fn unique(set: BTreeSet<u64>, what: &str) -> anyhow::Result<u64> {
    let mut it = set.iter();
    match (it.next(), it.next()) {
        (Some(&one), None) => Ok(one),
        (None, _) => bail!("no {what}"),
        (Some(_), Some(_)) => bail!(
            "{} {what}, expected one: {:x?}",
            set.len(),
            set.iter().take(4).collect::<Vec<_>>()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x40_1000;

    /// Hand-assembled x86-64, each instruction with a RIP-relative operand.
    #[derive(Default)]
    struct Asm(Vec<u8>);

    impl Asm {
        /// `opcode` then a 32-bit displacement reaching `target` from the next instruction.
        fn rip(mut self, opcode: &[u8], target: u64) -> Self {
            let next = BASE + (self.0.len() + opcode.len() + 4) as u64;
            self.0.extend_from_slice(opcode);
            self.0
                .extend_from_slice(&((target as i64 - next as i64) as i32).to_le_bytes());
            self
        }
        fn load32(self, target: u64) -> Self {
            self.rip(&[0x8b, 0x05], target) // mov eax, [rip+x]
        }
        fn load64(self, target: u64) -> Self {
            self.rip(&[0x48, 0x8b, 0x05], target) // mov rax, [rip+x]
        }
        fn raw(mut self, bytes: &[u8]) -> Self {
            self.0.extend_from_slice(bytes);
            self
        }
        fn decode(&self) -> Vec<Instruction> {
            let mut d = Decoder::with_ip(64, &self.0, BASE, DecoderOptions::NONE);
            let mut out = Vec::new();
            while d.can_decode() {
                out.push(d.decode());
            }
            out
        }
    }

    #[test]
    fn a_struct_is_where_all_its_fields_are_used() {
        let (b, decoy) = (0x60_0000, 0x61_0000);
        let code = Asm::default()
            .load32(b + 8)
            .load32(decoy + 8)
            .load64(b + 16)
            .load32(b + 24)
            .load32(decoy + 16)
            .decode();
        assert_eq!(struct_base(&code, &[8, 16, 24]).unwrap(), b);
        let err = struct_base(&code, &[8, 16, 32]).unwrap_err().to_string();
        assert!(err.contains("no addresses"), "{err}");
        // Two structs using the same fields: ambiguous, refused.
        let two = Asm::default()
            .load32(b + 8)
            .load32(b + 16)
            .load32(decoy + 8)
            .load32(decoy + 16)
            .decode();
        let err = struct_base(&two, &[8, 16]).unwrap_err().to_string();
        assert!(err.contains("2 addresses"), "{err}");
    }

    #[test]
    fn a_slice_is_the_one_pair_of_words_read_8_bytes_apart() {
        let (allp, other) = (0x60_0000, 0x60_1000);
        let code = Asm::default()
            .load64(allp + 8)
            .load32(other)
            .load32(other + 8)
            .load64(allp)
            .decode();
        assert_eq!(super::allp(&code).unwrap(), allp);
        let more = Asm::default()
            .load64(allp)
            .load64(allp + 8)
            .load64(other)
            .load64(other + 8)
            .decode();
        assert!(super::allp(&more).is_err());
        assert!(super::allp(&Asm::default().load64(allp).decode()).is_err());
    }

    #[test]
    fn allglen_is_where_len_allgs_is_stored_atomically() {
        let (allgs, allglen, other) = (0x60_0000u64, 0x60_2000u64, 0x60_3000u64);
        let grow = Asm::default()
            .load64(allgs)
            .load64(allgs + 8)
            .load64(allgs + 16)
            .rip(&[0x48, 0x8d, 0x15], other); // lea rdx, [other]: not stored through
        // mov rcx, [allgs+8]; lea rdx, [allglen]; xchg [rdx], rcx
        let store = grow
            .rip(&[0x48, 0x8b, 0x0d], allgs + 8)
            .rip(&[0x48, 0x8d, 0x15], allglen)
            .raw(&[0x48, 0x87, 0x0a]);
        assert_eq!(super::allglen(&store.decode()).unwrap(), allglen);
        // Without the store, no answer rather than a guess.
        let no_store = Asm::default()
            .load64(allgs)
            .load64(allgs + 8)
            .load64(allgs + 16)
            .rip(&[0x48, 0x8d, 0x15], allglen)
            .decode();
        let err = super::allglen(&no_store).unwrap_err().to_string();
        assert!(err.contains("no atomic stores"), "{err}");
    }
}
