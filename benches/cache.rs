//! The offer cache at 10 and 1,000 offers: selecting the offer to hand out, an invoice
//! refresh confirmed (a state transition), encoding every record, and loading them back,
//! from bytes and from the data dir as a start does.
//!
//! `cargo bench --bench cache`

use async_offers::testing::bench::CacheWork;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn cache(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache");
    group.sample_size(20);
    for offers in [10u16, 1_000] {
        let dir = tempfile::tempdir().unwrap();
        let mut work = CacheWork::new(offers, dir.path()).unwrap();
        group.bench_function(BenchmarkId::new("select", offers), |b| {
            b.iter(|| assert!(work.select()))
        });
        group.bench_function(BenchmarkId::new("refresh_and_confirm", offers), |b| {
            b.iter(|| assert!(work.refresh_and_confirm()))
        });
        group.bench_function(BenchmarkId::new("serialize_all", offers), |b| {
            b.iter(|| work.serialize_all())
        });
        group.bench_function(BenchmarkId::new("decode_all", offers), |b| {
            b.iter(|| work.decode_all().unwrap())
        });
        group.bench_function(BenchmarkId::new("load_all_from_disk", offers), |b| {
            b.iter(|| assert_eq!(work.load_all().unwrap(), offers as usize))
        });
    }
    group.finish();
}

criterion_group!(benches, cache);
criterion_main!(benches);
