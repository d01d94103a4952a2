//! The Schema Registry (`[kafka.schema_registry]`), through `schema_registry_converter`: the
//! subject a schema goes under, and its id, registered or looked up.

use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, perform_sr_call, post_schema,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{SchemaType, SrCall, SuppliedSchema};

use crate::spec::{CodecKind, Kafka, Part, RegistryAuth, SchemaRegistry, SubjectStrategy};

/// What went wrong with the registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the schema registry cannot be reached: {0}")]
    Unreachable(String),
    #[error("the schema registry refused the schema for subject {subject}: {reason}")]
    Refused { subject: String, reason: String },
    #[error(
        "subject {subject} has no version of the spec's schema and auto_register is false: register it first ({reason})"
    )]
    NotRegistered { subject: String, reason: String },
    #[error("the schema registry at {url} answered {status}: {answer}")]
    Answered {
        url: String,
        status: String,
        answer: String,
    },
    #[error("the schema registry's client cannot be set up: {0}")]
    Setup(String),
    #[error("the schema cannot be parsed: {0}")]
    Schema(String),
}

impl Error {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unreachable(_))
    }
}

/// The registry of a spec, ready for calls.
pub struct Client<'s> {
    registry: &'s SchemaRegistry,
}

impl<'s> Client<'s> {
    pub fn new(registry: &'s SchemaRegistry) -> Result<Client<'s>, Error> {
        let client = Client { registry };
        client.settings()?;
        Ok(client)
    }

    /// The converter's settings: the URL, the login, the CA and the timeout.
    pub fn settings(&self) -> Result<SrSettings, Error> {
        let r = self.registry;
        let url = r.url.as_str().trim_end_matches('/').to_owned();
        let mut builder = SrSettings::new_builder(url);
        builder.set_timeout(r.timeout);
        match &r.auth {
            RegistryAuth::None => {}
            RegistryAuth::Basic { username, password } => {
                builder.set_basic_authorization(username, Some(&password.0));
            }
            RegistryAuth::Bearer(token) => {
                builder.set_token_authorization(&token.0);
            }
        }
        builder
            .build_with(self.http_builder()?)
            .map_err(|e| Error::Setup(describe(&e)))
    }

    /// An HTTP client trusting the spec's CA.
    fn http_builder(&self) -> Result<reqwest::ClientBuilder, Error> {
        let mut client = reqwest::Client::builder();
        if let Some(file) = &self.registry.ca_file {
            let pem = std::fs::read(file)
                .map_err(|e| Error::Setup(format!("cannot read {}: {e}", file.display())))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::Setup(format!("{}: {e}", file.display())))?;
            for certificate in certificates {
                client = client.add_root_certificate(certificate);
            }
        }
        Ok(client)
    }

    fn http(&self) -> Result<reqwest::Client, Error> {
        self.http_builder()?
            .build()
            .map_err(|e| Error::Setup(e.to_string()))
    }

    /// The subject the schema of `part` goes under, by the spec's strategy.
    pub fn subject(&self, kafka: &Kafka, part: Part) -> String {
        let writer = self.registry.writer(part);
        let name = writer.record_name.as_deref().unwrap_or_default();
        match self.registry.subject_strategy {
            SubjectStrategy::TopicName => format!("{}-{}", kafka.topic, part.name()),
            SubjectStrategy::RecordName => name.to_owned(),
            SubjectStrategy::TopicRecordName => format!("{}-{name}", kafka.topic),
        }
    }

    /// The id of the spec's `schema` of `part` under its subject: registered there (a new
    /// version if the subject's compatibility allows it), or with `auto_register = false`
    /// looked up.
    pub async fn schema_id(&self, kafka: &Kafka, part: Part, schema: &str) -> Result<u32, Error> {
        let settings = self.settings()?;
        let codec = kafka.codec_of(part);
        let subject = self.subject(kafka, part);
        let kind = match codec {
            CodecKind::Avro => SchemaType::Avro,
            _ => SchemaType::Json,
        };
        let type_name = schema_type(codec);
        let refused = |e: SRCError, subject: String| match e.retriable {
            true => Error::Unreachable(format!("{}: {}", self.registry.url, describe(&e))),
            false => Error::Refused {
                subject,
                reason: describe(&e),
            },
        };
        if self.registry.auto_register {
            // Asked first, for the registry's reasons (a refused registration gives none).
            if let Compatibility::Incompatible { level, reasons } =
                self.compatibility(kafka, part, schema).await?
            {
                return Err(Error::Refused {
                    subject,
                    reason: format!("compatibility {level}: {}", reasons.join("; ")),
                });
            }
            let supplied = SuppliedSchema::new(None, kind, schema.to_owned());
            return post_schema(&settings, subject.clone(), supplied)
                .await
                .map(|registered| registered.id)
                .map_err(|e| refused(e, subject));
        }
        let body = serde_json::json!({ "schema": schema, "schemaType": type_name }).to_string();
        let found = perform_sr_call(&settings, SrCall::PostForVersion(&subject, &body))
            .await
            .map_err(|e| match e.retriable {
                true => refused(e, subject.clone()),
                false => Error::NotRegistered {
                    subject: subject.clone(),
                    reason: describe(&e),
                },
            })?;
        found.id.ok_or_else(|| Error::NotRegistered {
            subject,
            reason: "the registry's answer has no id".into(),
        })
    }
}

/// The registry's verdict on a schema against its subject.
#[derive(Debug, PartialEq, Eq)]
pub enum Compatibility {
    /// The subject has no version yet: anything may be registered.
    NewSubject,
    Compatible,
    /// Refused at the subject's compatibility level, for the registry's reasons.
    Incompatible {
        level: String,
        reasons: Vec<String>,
    },
}

impl Client<'_> {
    /// Whether the spec's `schema` of `part` may be registered under its subject
    /// (Confluent's `POST /compatibility/subjects/{subject}/versions?verbose=true`), and at
    /// which level (the subject's, else the registry's).
    pub async fn compatibility(
        &self,
        kafka: &Kafka,
        part: Part,
        schema: &str,
    ) -> Result<Compatibility, Error> {
        let subject = self.subject(kafka, part);
        let kind = schema_type(kafka.codec_of(part));
        let body = serde_json::json!({ "schema": schema, "schemaType": kind });
        // Against the versions the subject's level names (the latest, or every one for the
        // TRANSITIVE levels); a registry without that route (Karapace) does the same on the
        // latest version's route.
        let path = format!("compatibility/subjects/{subject}/versions?verbose=true");
        let (mut status, mut answer) = self
            .call(reqwest::Method::POST, &path, Some(body.clone()))
            .await?;
        // Confluent's "subject not found" and "version not found"; any other 404 (or a 405)
        // is a route the registry does not have.
        let not_found = matches!(answer["error_code"].as_u64(), Some(40401 | 40402));
        let no_route = matches!(status.as_u16(), 404 | 405) && !not_found;
        if no_route {
            let path = format!("compatibility/subjects/{subject}/versions/latest?verbose=true");
            (status, answer) = self.call(reqwest::Method::POST, &path, Some(body)).await?;
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Compatibility::NewSubject);
        }
        if !status.is_success() {
            return Err(Error::Answered {
                url: self.registry.url.to_string(),
                status: status.to_string(),
                answer: answer.to_string(),
            });
        }
        if answer["is_compatible"] == true {
            return Ok(Compatibility::Compatible);
        }
        let reasons = match &answer["messages"] {
            serde_json::Value::Array(m) => m
                .iter()
                .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let level = match self
            .call(
                reqwest::Method::GET,
                &format!("config/{subject}?defaultToGlobal=true"),
                None,
            )
            .await
        {
            Ok((status, config)) if status.is_success() => {
                config["compatibilityLevel"].as_str().map(str::to_owned)
            }
            _ => None,
        };
        let level = match level {
            Some(level) => level,
            None => self.call(reqwest::Method::GET, "config", None).await?.1["compatibilityLevel"]
                .as_str()
                .unwrap_or("unknown")
                .to_owned(),
        };
        Ok(Compatibility::Incompatible { level, reasons })
    }

    /// Fails unless the registry answers, and takes the login (`GET /subjects`).
    pub async fn reach(&self) -> Result<(), Error> {
        let (status, answer) = self.call(reqwest::Method::GET, "subjects", None).await?;
        match status.is_success() {
            true => Ok(()),
            false => Err(Error::Answered {
                url: self.registry.url.to_string(),
                status: status.to_string(),
                answer: answer.to_string(),
            }),
        }
    }

    /// One REST call: the status and the JSON answered (null when none).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(reqwest::StatusCode, serde_json::Value), Error> {
        let r = self.registry;
        let url = format!("{}/{path}", r.url.as_str().trim_end_matches('/'));
        let mut request = self.http()?.request(method, url).timeout(r.timeout);
        request = match &r.auth {
            RegistryAuth::None => request,
            RegistryAuth::Basic { username, password } => {
                request.basic_auth(username, Some(&password.0))
            }
            RegistryAuth::Bearer(token) => request.bearer_auth(&token.0),
        };
        if let Some(body) = body {
            request = request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/vnd.schemaregistry.v1+json",
                )
                .body(body.to_string());
        }
        let unreachable =
            |e: reqwest::Error| Error::Unreachable(format!("{}: {}", r.url, e.without_url()));
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        ))
    }
}

/// The registry's name of a codec's schema type.
fn schema_type(codec: CodecKind) -> &'static str {
    match codec {
        CodecKind::Avro => "AVRO",
        _ => "JSON",
    }
}

/// The HTTP status the registry answered a converter's call with, if it answered.
pub(super) fn status(e: &SRCError) -> Option<u16> {
    let (_, rest) = e.error.split_once("failed with status ")?;
    rest.get(..3)?.parse().ok()
}

/// The converter's error, without its flags.
pub(super) fn describe(e: &SRCError) -> String {
    match &e.cause {
        Some(cause) => format!("{}: {cause}", e.error),
        None => e.error.clone(),
    }
}
