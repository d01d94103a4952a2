//! The idempotent producer. `send` resolves only once the broker has acknowledged the
//! message (acks=all), so callers know what is safely in Kafka.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;

use super::{Error, producer_config};
use crate::dead_letter::DeadLetter;
use crate::spec;

/// The header carrying when a record's API response arrived, as epoch milliseconds in decimal.
pub const RECEIVED_AT: &str = "aqueduct-received-at";

/// Produces to the pipeline's topic and dead-letter topic.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
}

impl Producer {
    pub fn new(k: &spec::Kafka) -> Result<Producer, Error> {
        let inner = producer_config(k)
            .create()
            .map_err(|source| Error::client("producer", &k.bootstrap_servers, source))?;
        Ok(Producer { inner })
    }

    /// Sends one message and waits for its acknowledgement; gives its offset. librdkafka retries on its own
    /// (without duplicates, being idempotent) until `message.timeout.ms`; an error here is final.
    /// `received_at_ms`, when the record's API response arrived (epoch ms), travels in the
    /// [`RECEIVED_AT`] header so the loader can time the record end to end.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        received_at_ms: Option<i64>,
    ) -> Result<i64, Error> {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(at) = received_at_ms {
            let at = at.to_string();
            record = record.headers(OwnedHeaders::new_with_capacity(1).insert(Header {
                key: RECEIVED_AT,
                value: Some(&at),
            }));
        }
        self.inner
            .send(record, Timeout::Never)
            .await
            .map(|delivery| delivery.offset)
            .map_err(|(source, _)| Error::Produce {
                topic: topic.to_owned(),
                source,
            })
    }

    /// Produces a dead letter to `topic`, its record cut when the whole would be larger than a
    /// Kafka message (a poison record failing the schema can be as large as one Kafka refused).
    /// `key`: the key of the message dead-lettered, as it was.
    pub async fn dead_letter(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        dead_letter: DeadLetter,
        received_at_ms: Option<i64>,
    ) -> Result<(), Error> {
        let json = dead_letter.to_json();
        match self.send(topic, key, &json, received_at_ms).await {
            Err(e) if e.is_too_large() => {
                let cut = dead_letter.with_record_cut(json.len()).to_json();
                self.send(topic, key, &cut, received_at_ms).await?;
                Ok(())
            }
            sent => sent.map(|_| ()),
        }
    }

    /// Waits for every queued message to be delivered, up to `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        self.inner.flush(timeout).map_err(|source| Error::Produce {
            topic: "(flush)".into(),
            source,
        })
    }
}
