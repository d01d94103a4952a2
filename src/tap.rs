//! `aqueduct tap`: what is on a pipeline's topic (or its dead-letter topic), each message
//! decoded through the pipeline's codec, read by an assigned consumer outside any group: it
//! commits nothing and moves no loader's offsets (Control Center's topic view, `vector tap`).

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::codec::{Codec, Codecs};
use crate::spec::Spec;

/// Where `tap` starts and whether it ends.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub dead_letters: bool,
    /// From each partition's first message; otherwise the last `last` of the topic.
    pub from_beginning: bool,
    pub last: usize,
    /// Go on printing what arrives after the end, until stopped.
    pub follow: bool,
    pub format: Format,
}

/// How messages are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object a line: topic, partition, offset, timestamp, key, record.
    Json,
    /// A table (the record cut to fit).
    Table,
}

/// Prints the messages `options` asks for to `out`.
pub async fn run(
    spec: &Spec,
    options: Options,
    out: &mut impl Write,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let k = &spec.kafka;
    // Dead letters are JSON, keyed as the messages they stand for.
    let codecs = Codecs::connect(k, false).await?;
    let (topic, codecs) = match options.dead_letters {
        true => (
            &k.dead_letter_topic,
            Codecs {
                value: Codec::Json,
                ..codecs
            },
        ),
        false => (&k.topic, codecs),
    };
    crate::kafka::check_connection(k).await?;
    // The end of each partition is signalled (as far as committed transactions reach: a
    // transaction's marker is never delivered, so offsets cannot tell).
    let consumer: StreamConsumer = crate::kafka::reader_config(k)
        .set("enable.partition.eof", "true")
        .create()?;
    // Where each partition starts, and where it ended when tap began.
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .first()
        .filter(|t| t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| anyhow::anyhow!("tap: topic {topic} is not at {}", k.bootstrap_servers))?;
    let mut assignment = TopicPartitionList::new();
    let mut unread = HashSet::new();
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        let start = match options.from_beginning {
            true => low,
            false => (high - options.last as i64).max(low),
        };
        assignment.add_partition_offset(topic, p, Offset::Offset(start))?;
        if high > start {
            unread.insert(p);
        }
    }
    consumer.assign(&assignment)?;
    let mut stream = consumer.stream();
    let mut history = Vec::new();
    // What was there when tap began (the last `last` of it, oldest first).
    while !unread.is_empty() {
        let m = tokio::select! {
            m = stream.next() => m,
            _ = stop.cancelled() => return Ok(()),
        };
        match m {
            None => break,
            Some(Err(KafkaError::PartitionEOF(p))) => {
                unread.remove(&p);
            }
            Some(m) => history.push(shown(topic, &codecs, &m?).await),
        }
    }
    history.sort_by_key(|m| {
        (
            m["timestamp_ms"].as_i64(),
            m["partition"].as_i64(),
            m["offset"].as_i64(),
        )
    });
    if !options.from_beginning {
        let skip = history.len().saturating_sub(options.last);
        history.drain(..skip);
    }
    print(&history, options.format, out)?;
    if !options.follow {
        return Ok(());
    }
    loop {
        let m = tokio::select! {
            m = stream.next() => m,
            _ = stop.cancelled() => return Ok(()),
        };
        let m = match m {
            None => return Ok(()),
            Some(Err(KafkaError::PartitionEOF(_))) => continue,
            Some(m) => shown(topic, &codecs, &m?).await,
        };
        print(&[m], Format::Json, out)?;
    }
}

/// A message as tap shows it: where it is, when, its key and its record decoded (or why they
/// could not be, with their bytes in base64).
async fn shown(topic: &str, codecs: &Codecs, m: &impl Message) -> Value {
    let timestamp_ms = m.timestamp().to_millis();
    let time = timestamp_ms
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let mut shown = json!({
        "topic": topic,
        "partition": m.partition(),
        "offset": m.offset(),
        "timestamp": time,
        "timestamp_ms": timestamp_ms,
    });
    match m.key() {
        None => shown["key"] = Value::Null,
        Some(key) => match codecs.key.decode_key(key).await {
            Ok(key) => shown["key"] = key,
            Err(e) => {
                shown["key_error"] = Value::String(e.to_string());
                shown["key_base64"] =
                    Value::String(base64::engine::general_purpose::STANDARD.encode(key));
            }
        },
    }
    let decoded = match m.payload() {
        None => Ok(Value::Null),
        Some(payload) => match codecs.value.decode(payload).await {
            Ok(text) => serde_json::from_slice(&text).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
    };
    match decoded {
        Ok(record) => shown["record"] = record,
        Err(error) => {
            let payload = m.payload().unwrap_or_default();
            shown["error"] = Value::String(error);
            shown["payload_base64"] =
                Value::String(base64::engine::general_purpose::STANDARD.encode(payload));
        }
    }
    shown
}

fn print(messages: &[Value], format: Format, out: &mut impl Write) -> std::io::Result<()> {
    match format {
        Format::Json => {
            for m in messages {
                let mut m = m.clone();
                if let Some(fields) = m.as_object_mut() {
                    fields.remove("timestamp_ms");
                }
                writeln!(out, "{m}")?;
            }
        }
        Format::Table => {
            let mut table = comfy_table::Table::new();
            table.set_header(["partition", "offset", "timestamp", "key", "record"]);
            for m in messages {
                let record = match m.get("error") {
                    Some(error) => format!("(cannot be read: {})", error.as_str().unwrap_or("")),
                    None => crate::text::shorten(&m["record"].to_string(), 100),
                };
                let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                table.add_row([
                    m["partition"].to_string(),
                    m["offset"].to_string(),
                    text(&m["timestamp"]),
                    text(&m["key"]),
                    record,
                ]);
            }
            writeln!(out, "{table}")?;
        }
    }
    out.flush()
}
