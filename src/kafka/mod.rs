//! The Kafka side: client configuration (the one place librdkafka keys are written, also for
//! the clients of [`crate::incremental`]), topic creation, the idempotent producer, the
//! at-least-once consumer and its offset tracker.

pub mod consume;
pub mod offsets;
pub mod produce;

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};
use tracing::debug;

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
    #[error("Kafka at {servers} refused aqueduct: {reason}")]
    Refused { servers: String, reason: String },
    #[error(
        "cannot reach Kafka at {servers}: {message} (is it running? `scripts/stack up` starts one on 127.0.0.1:9092)"
    )]
    Unreachable { servers: String, message: String },
    #[error("creating topic {topic} at {servers}: {message}")]
    CreateTopic {
        topic: String,
        servers: String,
        message: String,
    },
    #[error(
        "topic {topic} is not at {servers}: a pipeline without [source] loads a topic others produce, and never creates it"
    )]
    MissingTopic { topic: String, servers: String },
    #[error("producing to topic {topic}: {source}")]
    Produce {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("the cursor topic: {message}")]
    CursorTopic { message: String },
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

/// A consumer's config for reading a topic outside any group (`tap`): assigned partitions,
/// nothing committed.
pub fn reader_config(k: &spec::Kafka) -> ClientConfig {
    let mut config = base_config(k);
    config
        .set("group.id", format!("aqueduct-tap-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    for (key, value) in &k.consumer_properties {
        config.set(key, value);
    }
    config
}

/// Settings shared by every client: the servers, TLS and SASL, then the spec's extra
/// properties (none of which collides with those).
fn base_config(k: &spec::Kafka) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &k.bootstrap_servers);
    let protocol = match (&k.tls, &k.sasl) {
        (None, None) => None,
        (Some(_), None) => Some("ssl"),
        (None, Some(_)) => Some("sasl_plaintext"),
        (Some(_), Some(_)) => Some("sasl_ssl"),
    };
    if let Some(protocol) = protocol {
        config.set("security.protocol", protocol);
    }
    if let Some(tls) = &k.tls {
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        if let Some(ca) = &tls.ca_file {
            config.set("ssl.ca.location", path(ca));
        }
        if let Some(client) = &tls.client {
            config.set("ssl.certificate.location", path(&client.cert_file));
            config.set("ssl.key.location", path(&client.key_file));
            if let Some(password) = &client.key_password {
                config.set("ssl.key.password", &password.0);
            }
        }
        let algorithm = if tls.verify_hostname { "https" } else { "none" };
        config.set("ssl.endpoint.identification.algorithm", algorithm);
    }
    if let Some(sasl) = &k.sasl {
        config
            .set("sasl.mechanism", sasl.mechanism)
            .set("sasl.username", &sasl.username)
            .set("sasl.password", &sasl.password.0);
    }
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

/// Settings of the cursor topic's reader ([`crate::incremental::store`]): outside any group
/// (it assigns itself the partition), committing nothing.
pub fn cursor_reader_config(k: &spec::Kafka) -> ClientConfig {
    let mut config = base_config(k);
    config
        .set("group.id", format!("{}-cursor-reader", k.group_id))
        .set("enable.auto.commit", "false");
    config
}

/// Settings of the ingest lease's group member ([`crate::incremental::lease`]): the group
/// `<group_id>-ingest`, nothing committed, and a short session so a standby takes over within
/// seconds of a holder that stopped answering.
pub fn lease_config(k: &spec::Kafka) -> ClientConfig {
    let mut config = base_config(k);
    config
        .set("group.id", format!("{}-ingest", k.group_id))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    config
}

/// Consumer settings for a member of `group`: offsets are stored by aqueduct only once rows
/// are written, and the stored offsets are committed periodically and at shutdown.
pub fn consumer_config(k: &spec::Kafka, group: &str) -> ClientConfig {
    let mut config = base_config(k);
    for (key, value) in &k.consumer_properties {
        config.set(key, value);
    }
    config
        .set("group.id", group)
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

/// Keeps the first error of a client that retrying cannot cure: a refused login or a failed
/// TLS handshake (librdkafka retries those for ever, logging each attempt).
#[derive(Default)]
struct RefusalWatch {
    refused: std::sync::Mutex<Option<String>>,
    /// The last error of any kind, to say why the cluster could not be reached.
    last: std::sync::Mutex<Option<String>>,
}

/// What librdkafka's reasons say when a broker refused the client (some arrive as transport
/// failures, the handshake having been cut).
const REFUSALS: &[&str] = &[
    "SSL handshake failed",
    "certificate verify failed",
    "SASL authentication error",
    "Authentication failed",
];

impl ClientContext for RefusalWatch {
    /// The check reports what failed itself; librdkafka's lines about each attempt are detail,
    /// but for a refusal, which some versions only log.
    fn log(&self, _: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        debug!(target: "librdkafka", facility, message, "while connecting");
        if REFUSALS.iter().any(|r| message.contains(r)) {
            self.refuse(message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        use RDKafkaErrorCode::{Authentication, SSL, SaslAuthenticationFailed};
        debug!(error = %error, reason, "kafka client error while connecting");
        if matches!(
            error.rdkafka_error_code(),
            Some(Authentication | SSL | SaslAuthenticationFailed)
        ) {
            self.refuse(reason);
        }
        self.note(reason);
    }
}

impl RefusalWatch {
    /// Keeps `reason` as the last error, and as the refusal when it reads like one.
    fn note(&self, reason: &str) {
        if REFUSALS.iter().any(|r| reason.contains(r)) {
            self.refuse(reason);
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_owned());
    }

    fn refuse(&self, reason: &str) {
        let mut first = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert_with(|| reason.to_owned());
    }
}

impl rdkafka::producer::ProducerContext for RefusalWatch {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// How long start-up waits for the cluster to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Connects to the cluster with the spec's settings and asks it for metadata, so a wrong
/// password, an untrusted certificate or an unreachable cluster fails start-up in seconds with
/// what went wrong, instead of clients retrying silently for ever.
pub async fn check_connection(k: &spec::Kafka) -> Result<(), Error> {
    let config = base_config(k);
    let servers = k.bootstrap_servers.clone();
    let check = move || {
        let client: BaseProducer<RefusalWatch> = config
            .create_with_context(RefusalWatch::default())
            .map_err(|source| Error::client("client", &servers, source))?;
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            let fetched = client
                .client()
                .fetch_metadata(None, Duration::from_millis(500));
            let last = match fetched {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            // Serves the error callbacks.
            client.poll(Duration::ZERO);
            let refused = client.context().refused.lock().map(|r| r.clone());
            if let Ok(Some(reason)) = refused {
                return Err(Error::Refused {
                    servers: servers.clone(),
                    reason,
                });
            }
            if Instant::now() >= deadline {
                let reason = client.context().last.lock().ok().and_then(|r| r.clone());
                return Err(Error::Unreachable {
                    servers: servers.clone(),
                    message: reason.unwrap_or_else(|| last.to_string()),
                });
            }
        }
    };
    tokio::task::spawn_blocking(check)
        .await
        .unwrap_or_else(|e| {
            Err(Error::Unreachable {
                servers: k.bootstrap_servers.clone(),
                message: format!("the connection check panicked: {e}"),
            })
        })
}

/// Creates the topic and dead-letter topic if they are missing (when the spec allows).
pub async fn ensure_topics(k: &spec::Kafka, produces: bool) -> Result<(), Error> {
    // A topic others produce is theirs: it must be there, and is never created.
    if !produces {
        topic_exists(k).await?;
    }
    let mut names = vec![&k.dead_letter_topic];
    if produces {
        names.insert(0, &k.topic);
    }
    // One name once: a replay reads the dead-letter topic, and a request naming a topic twice
    // is refused.
    names.dedup();
    let topics: Vec<NewTopic> = names
        .into_iter()
        .map(|name| {
            k.topic_properties.iter().fold(
                NewTopic::new(
                    name,
                    k.partitions,
                    TopicReplication::Fixed(k.replication_factor),
                ),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    create_missing(k, &topics).await
}

/// Fails unless `kafka.topic` exists (asked without creating it).
async fn topic_exists(k: &spec::Kafka) -> Result<(), Error> {
    let config = base_config(k);
    let (topic, servers) = (k.topic.clone(), k.bootstrap_servers.clone());
    let ask = move || {
        let client: BaseConsumer = config
            .clone()
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(|source| Error::client("client", &servers, source))?;
        let metadata = client
            .fetch_metadata(Some(&topic), CONNECT_TIMEOUT)
            .map_err(|e| Error::Unreachable {
                servers: servers.clone(),
                message: e.to_string(),
            })?;
        match metadata
            .topics()
            .first()
            .map(|t| (t.error(), t.partitions().len()))
        {
            Some((None, n)) if n > 0 => Ok(()),
            _ => Err(Error::MissingTopic { topic, servers }),
        }
    };
    tokio::task::spawn_blocking(ask).await.unwrap_or_else(|e| {
        Err(Error::Unreachable {
            servers: k.bootstrap_servers.clone(),
            message: format!("the topic check panicked: {e}"),
        })
    })
}

/// Creates those of `topics` that are missing, when the spec allows (`create_topics`).
pub async fn create_missing(k: &spec::Kafka, topics: &[NewTopic<'_>]) -> Result<(), Error> {
    if !k.create_topics {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = base_config(k)
        .create()
        .map_err(|source| Error::client("admin client", &k.bootstrap_servers, source))?;
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
        .create_topics(topics, &options)
        .await
        .map_err(|e| create_error(topics.first().map_or("", |t| t.name), e.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(create_error(&topic, code.to_string())),
        }
    }
    Ok(())
}
