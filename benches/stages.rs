//! CPU cost of the per-record stages, on stand-in users through `pipelines/users.toml`:
//! JSON Schema validation, the Kafka key, and mapping to a row (jq + CQL conversion).
//! Prints records per second; run with `cargo bench --bench stages`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use aqueduct::{map, spec, standin, validate};

fn measure(name: &str, records: &[serde_json::Value], mut f: impl FnMut(&serde_json::Value)) {
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
    measure("map to row (12 columns)", &records, |r| {
        black_box(map::row(&spec.cassandra, r).unwrap());
    });
    measure("serialize for Kafka (JSON)", &records, |r| {
        black_box(r.to_string());
    });
}
