//! CPU cost of the per-record stages, on stand-in users through `pipelines/users.toml`:
//! decoding a Kafka payload, JSON Schema validation, the Kafka key, mapping to a row (jq + CQL
//! conversion) and serializing for Kafka. Prints records per second; run with
//! `cargo bench --bench stages`. The whole pipeline is `scripts/bench` (benches/pipeline.rs).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use aqueduct::jq::Json;
use aqueduct::{map, spec, validate};
use randomuser_standin as standin;

fn measure<T>(name: &str, records: &[T], mut f: impl FnMut(&T)) {
    // Warm up, then run for at least a second.
    records.iter().take(1000).for_each(&mut f);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(1) {
        for r in records {
            f(r);
        }
        n += records.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<28} {:>10.0} records/s  ({:.2} µs/record)",
        n as f64 / secs,
        secs * 1e6 / n as f64
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test --all-targets` builds and runs benches without it
    }
    let spec = spec::load(Path::new("pipelines/users.toml")).unwrap_or_else(|e| panic!("{e}"));
    let records: Vec<_> = (0..10_000)
        .map(|i| standin::user("bench", 1, i, false))
        .collect();
    let schema = spec.validate.schema.as_ref();
    let key = spec.kafka.key.as_ref().expect("users.toml has a key");
    println!(
        "aqueduct per-record stages, pipelines/users.toml, {} stand-in users",
        records.len()
    );
    measure("validate (JSON Schema)", &records, |r| {
        black_box(validate::violations(schema, r));
    });
    measure("kafka key (jq)", &records, |r| {
        black_box(key.run_one(r).unwrap());
    });
    let payloads: Vec<Vec<u8>> = records.iter().map(|r| r.to_string().into_bytes()).collect();
    measure("decode (serde_json::Value)", &payloads, |p| {
        black_box(serde_json::from_slice::<serde_json::Value>(p).unwrap());
    });
    measure("decode (borrowed, as loaded)", &payloads, |p| {
        black_box(serde_json::from_slice::<Json>(p).unwrap());
    });
    measure("decode + map (created_users, 12 columns)", &payloads, |p| {
        let record: Json = serde_json::from_slice(p).unwrap();
        black_box(map::row(&spec.cassandra.tables[0], &record).unwrap());
    });
    measure("decode + map (both tables, 18 columns)", &payloads, |p| {
        let record: Json = serde_json::from_slice(p).unwrap();
        let input = aqueduct::jq::Input::new(&record);
        for t in &spec.cassandra.tables {
            black_box(map::row_of(t, &input).unwrap());
        }
    });
    measure("serialize for Kafka (JSON)", &records, |r| {
        black_box(r.to_string());
    });
}
