//! Criterion benchmark of the shipped rule pack over the simulated tenants of `wbd-bench`:
//! `cargo bench -p wbd-bench --bench rules`. (The `--all` run of `wbd-bench` measures the same
//! shapes in a plain loop so that its report has the figures.)

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wbd_bench::rules::{SHAPES, facts_for};

fn shipped_pack(c: &mut Criterion) {
    let mut group = c.benchmark_group("shipped_pack");
    for shape in SHAPES {
        let facts = facts_for(shape);
        let verdicts = wbd_rules::evaluate(&facts).len() as u64;
        group.throughput(Throughput::Elements(verdicts));
        group.bench_with_input(BenchmarkId::from_parameter(shape.name), &facts, |b, facts| {
            b.iter(|| wbd_rules::evaluate(std::hint::black_box(facts)))
        });
    }
    group.finish();
}

// CEL custom rules: add a `cel_custom_rule` group here when `wbd_rules` exposes its CEL API
// (see the marked place in src/rules.rs).

criterion_group!(benches, shipped_pack);
criterion_main!(benches);
