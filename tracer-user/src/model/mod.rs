//! The bounded model: the process table with its per-process series and graveyard, rates
//! on those series, the verdicts on them (the bridge to the detector), the one ranking of
//! suspects, and the log of ended processes.
pub mod cgroups;
pub mod counters;
pub mod ended;
pub mod go;
pub mod growth;
pub mod node;
pub mod rank;
pub mod rates;
pub mod risk;
pub mod series;
pub mod sites;
pub mod suspect;
pub mod table;
pub mod verdicts;
