//! Criterion benchmark of the shipped rule pack over the simulated tenants of `wbd-bench`:
//! `cargo bench -p wbd-bench --bench rules`. (The `--all` run of `wbd-bench` measures the same
//! shapes in a plain loop so that its report has the figures.)

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wbd_bench::rules::{SHAPES, compiled_custom_rules, facts_for};
use wbd_rules::custom::evaluate_custom;

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

fn cel_custom_rules(c: &mut Criterion) {
    let rules = compiled_custom_rules().expect("the benchmark's custom rules compile");
    let mut group = c.benchmark_group("cel_custom_rules");
    for shape in SHAPES {
        let facts = facts_for(shape);
        group.throughput(Throughput::Elements(rules.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(shape.name), &facts, |b, facts| {
            b.iter(|| evaluate_custom(&rules, std::hint::black_box(facts)))
        });
    }
    group.finish();
    c.bench_function("cel_compile_all", |b| b.iter(compiled_custom_rules));
}

criterion_group!(benches, shipped_pack, cel_custom_rules);
criterion_main!(benches);
