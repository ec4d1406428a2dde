//! Benchmarks comparing privasip with other implementations; see
//! `benches/` and BENCHMARKS.md at the repository root.
