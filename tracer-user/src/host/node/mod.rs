//! The node's memory that no process owns: the kernel's accounting (/proc/meminfo), its slab
//! caches (/proc/slabinfo) and memory cgroups removed but still held by the kernel (zombies).
//! Nodes also die of these (leaked memory cgroups, dentry caches blown up by a file walker),
//! and a sum over processes cannot see them.
pub mod meminfo;
pub mod reader;
pub mod slabinfo;
pub mod zombies;

pub use reader::{HeldCache, NodeReader, NodeReading};
