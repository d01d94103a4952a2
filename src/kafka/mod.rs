//! The Kafka side: client configuration (the one place librdkafka keys are written), topic
//! creation, the idempotent producer, the at-least-once consumer and its offset tracker.

pub mod consume;
pub mod offsets;
pub mod produce;

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::spec;

/// Errors talking to Kafka, each naming the topic or client concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `message` never holds a property's value: rdkafka's own error does (twice, once in its
    /// text and once as a field), and a value may be a password.
    #[error("creating the Kafka {client} for {servers}: {message}")]
    Client {
        client: &'static str,
        servers: String,
        message: String,
    },
    #[error(
        "creating topic {topic}: {message} (is Kafka running at {servers}? `scripts/stack up` starts one on 127.0.0.1:9092)"
    )]
    CreateTopic {
        topic: String,
        servers: String,
        message: String,
    },
    #[error("producing to topic {topic}: {source}")]
    Produce {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("consuming from topic {topic}: {source}")]
    Consume {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

impl Error {
    /// Kafka refused the message as larger than a message may be (`message.max.bytes`).
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            Error::Produce {
                source: KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                ..
            }
        )
    }

    /// A client could not be created. A configuration error names the property, not its value.
    pub fn client(client: &'static str, servers: &str, source: KafkaError) -> Error {
        let message = match &source {
            KafkaError::ClientConfig(_, description, key, value) => {
                let description = if value.is_empty() {
                    description.clone()
                } else {
                    description.replace(value.as_str(), "***")
                };
                format!("property `{key}`: {description}")
            }
            other => other.to_string(),
        };
        Error::Client {
            client,
            servers: servers.to_owned(),
            message,
        }
    }
}

/// Settings shared by every client: the servers, then the spec's extra properties.
fn base_config(k: &spec::Kafka) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &k.bootstrap_servers);
    for (key, value) in &k.properties {
        config.set(key, value);
    }
    config
}

/// Producer settings: idempotent, `acks=all`, so retries never duplicate or reorder.
pub fn producer_config(k: &spec::Kafka) -> ClientConfig {
    let mut config = base_config(k);
    for (key, value) in &k.producer_properties {
        config.set(key, value);
    }
    config.set("enable.idempotence", "true").set("acks", "all");
    config
}

/// Consumer settings: offsets are stored by aqueduct only once rows are written, and the
/// stored offsets are committed periodically and at shutdown.
pub fn consumer_config(k: &spec::Kafka) -> ClientConfig {
    let mut config = base_config(k);
    for (key, value) in &k.consumer_properties {
        config.set(key, value);
    }
    config
        .set("group.id", &k.group_id)
        .set("enable.auto.commit", "true")
        .set(
            "auto.commit.interval.ms",
            k.commit_interval.as_millis().to_string(),
        )
        .set("enable.auto.offset.store", "false");
    // Defaults a spec may override. librdkafka's own prefetch up to 64 MB (and 100,000
    // messages per partition) ahead of the loader; 2 MB (some 50 ms at full speed) keep it busy
    // and keep its memory small.
    let defaults = [
        ("auto.offset.reset", "earliest"),
        ("queued.max.messages.kbytes", "2048"),
        ("queued.min.messages", "10000"),
        // With a small prefetch queue, the default 1 s pause when it is full starves the loader.
        ("fetch.queue.backoff.ms", "10"),
        // The statistics the lag gauges come from (aqueduct_consumer_lag).
        ("statistics.interval.ms", "1000"),
    ];
    let set_by_spec = |key: &str| {
        (k.properties.iter().chain(&k.consumer_properties)).any(|(name, _)| name == key)
    };
    for (key, value) in defaults {
        if !set_by_spec(key) {
            config.set(key, value);
        }
    }
    config
}

/// Creates the topic and dead-letter topic if they are missing (when the spec allows).
pub async fn ensure_topics(k: &spec::Kafka) -> Result<(), Error> {
    if !k.create_topics {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = base_config(k)
        .create()
        .map_err(|source| Error::client("admin client", &k.bootstrap_servers, source))?;
    let mut names = vec![&k.topic, &k.dead_letter_topic];
    // One name once: a replay reads the dead-letter topic, and a request naming a topic twice
    // is refused.
    names.dedup();
    let topics: Vec<NewTopic> = names
        .into_iter()
        .map(|name| {
            NewTopic::new(
                name,
                k.partitions,
                TopicReplication::Fixed(k.replication_factor),
            )
        })
        .collect();
    // Bounded, so an unreachable cluster fails start-up in seconds, not minutes.
    let options = AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(15)))
        .operation_timeout(Some(Duration::from_secs(15)));
    let create_error = |topic: &str, message: String| Error::CreateTopic {
        topic: topic.to_owned(),
        servers: k.bootstrap_servers.clone(),
        message,
    };
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(|e| create_error(&k.topic, e.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(create_error(&topic, code.to_string())),
        }
    }
    Ok(())
}
