//! Entry points into internal work for the fuzz targets, benchmarks and tests (feature
//! `testing`, which the tests, examples and benches switch on and apps never do). Not part of
//! the API: no stability promise.

pub mod bench;
pub mod fuzz;
pub mod link;
