//! The command line: `run`, `check`, `ddl`, and a bare spec path meaning `run`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, error, info};

use crate::cassandra::ddl;
use crate::metrics::{Metrics, get};
use crate::pipeline::replay::Replay;
use crate::pipeline::{self, Half, Mode, Options};
use crate::{incremental, preview, progress, spec, spec_test};

/// Exit code of a bad spec or bad usage (clap's own usage errors use it too).
pub const EXIT_INVALID: u8 = 2;
/// Exit code of a runtime failure.
pub const EXIT_FAILED: u8 = 1;

/// A bad spec or bad usage: the command fails with exit 2, printed as it is (a spec's errors
/// are `file:line:col: key: message` lines). Any other error is a runtime failure (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// Reports the error a command ended with, once, and gives its exit code: [`Invalid`] is
/// printed as it is (exit 2); anything else is logged with all its causes on one line, so JSON
/// logs carry it too (exit 1).
pub fn fail(e: &anyhow::Error) -> ExitCode {
    if let Some(invalid) = e.downcast_ref::<Invalid>() {
        eprintln!("{invalid}");
        return ExitCode::from(EXIT_INVALID);
    }
    error!("{e:#}");
    ExitCode::from(EXIT_FAILED)
}

/// Loads a spec; its errors make the command [`Invalid`].
fn load(path: &Path) -> anyhow::Result<spec::Spec> {
    spec::load(path).map_err(|errors| Invalid(errors.to_string()).into())
}

/// Declarative data pipelines: HTTP JSON API -> JSON Schema -> Kafka -> jq -> Cassandra.
#[derive(Debug, Parser)]
#[command(
    name = "aqueduct",
    version,
    about,
    after_help = "`aqueduct SPEC` is short for `aqueduct run SPEC`."
)]
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Worker threads of the async runtime. Default: one less than the CPUs, at least one
    /// (librdkafka and Cassandra's driver add threads of their own; on two cores one worker
    /// spends less CPU per record than two).
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run pipelines: poll, validate, produce; consume, map, write. Several specs (or a
    /// folder of them) run in one process, each with its own Kafka clients.
    Run {
        /// The pipeline specs (TOML), or folders holding them.
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        /// Run one half only; loaders of one spec share a consumer group, so several can run.
        #[arg(long, value_enum)]
        only: Option<Half>,
        /// Poll once, load everything the topic holds, and exit.
        #[arg(long)]
        once: bool,
    },
    /// Check specs offline: syntax, keys, jq, JSON Schema, CQL types, primary key.
    Check {
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        /// Also ask each spec's schema registry whether the spec's schema may be registered
        /// under its subject (exit 2 if not, naming the subject, the level and the reasons).
        #[arg(long)]
        registry: bool,
    },
    /// Print the CREATE KEYSPACE and CREATE TABLE a spec implies.
    Ddl { spec: PathBuf },
    /// Show the rows a spec would write and the records it would dead-letter, from one poll
    /// of its API or from saved responses; writes nothing, connects to no Kafka or Cassandra.
    Preview {
        /// The pipeline spec (TOML).
        spec: PathBuf,
        /// Read API responses (JSON documents, one after another) from FILE, or `-` for
        /// stdin, instead of polling the API.
        #[arg(long, value_name = "FILE")]
        input: Option<PathBuf>,
        /// The input holds records, not API responses.
        #[arg(long, requires = "input")]
        records: bool,
        /// At most this many records.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: usize,
        /// Output format [default: table on a terminal, json otherwise].
        #[arg(long, value_enum)]
        format: Option<preview::Format>,
    },
    /// Send the dead-letter topic's records through the spec as it is now: rows that now pass
    /// are written, the others are dead-lettered again with their new reason. Reads up to the
    /// topic's end as of the start, in the consumer group `<group_id>-replay`, then exits.
    Replay {
        /// The pipeline spec (TOML).
        spec: PathBuf,
        /// Only dead letters from this time on: RFC 3339 (2026-11-30T04:00:00Z) or a
        /// duration ago (90m, 2h, 1d); older ones are read and passed over.
        #[arg(long, value_parser = parse_since)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Report what would happen: write nothing, dead-letter nothing, commit nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Fetch the time windows of a past range once (`[source.window]` specs) and load them,
    /// like `run --once`, without moving the live cursor; rows are upserts, so a backfill can
    /// run again, and beside the live pipeline.
    Backfill {
        /// The pipeline spec (TOML).
        spec: PathBuf,
        /// Start of the range: RFC 3339 (2026-11-01T00:00:00Z) or a duration ago (1d, 12h).
        #[arg(long, value_parser = parse_since)]
        from: chrono::DateTime<chrono::Utc>,
        /// End of the range (exclusive). Default: now less `source.window.lag`.
        #[arg(long, value_parser = parse_since)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// Run one half only: `ingest` when a live loader of the pipeline runs.
        #[arg(long, value_enum)]
        only: Option<Half>,
    },
    /// Print an incremental pipeline's cursor: its value, when and by whom it was saved, and
    /// for time windows how far behind now it is.
    Status {
        /// The pipeline spec (TOML).
        spec: PathBuf,
    },
    /// Set an incremental pipeline's cursor: the next poll starts from VALUE (for
    /// `[source.window]`, an RFC 3339 time; for `[source.cursor]`, JSON, or else a string).
    Cursor {
        /// The pipeline spec (TOML).
        spec: PathBuf,
        #[arg(long, value_name = "VALUE")]
        set: String,
    },
    /// Print what is on the pipeline's topic (or its dead-letter topic), each message decoded
    /// through the spec's codec; reads outside any consumer group and commits nothing.
    Tap {
        /// The pipeline spec (TOML).
        spec: PathBuf,
        /// The dead-letter topic instead.
        #[arg(long)]
        dead_letters: bool,
        /// Every message from each partition's first, not the last N.
        #[arg(long, conflicts_with = "last")]
        from_beginning: bool,
        /// The last N messages of the topic.
        #[arg(long, value_name = "N", default_value_t = 10)]
        last: usize,
        /// Then go on printing what arrives (JSON lines), until Ctrl-C.
        #[arg(long)]
        follow: bool,
        /// `json` (a line per message) or `table`. Default: a table on a terminal, else json.
        #[arg(long, value_enum)]
        format: Option<crate::tap::Format>,
    },
    /// Run the cases kept with each spec (`pipelines/tests/users.toml` for
    /// `pipelines/users.toml`), offline: exit 1 if one fails, 2 if a file is broken.
    Test {
        #[arg(required = true)]
        specs: Vec<PathBuf>,
    },
    /// Write a starting spec from one sample response: where the records are, their JSON
    /// Schema, a column per field, a partition key and the pagination, each guess marked
    /// `guessed` for review. Never overwrites a file (exit 2 if the output exists).
    #[command(group(clap::ArgGroup::new("sample").required(true).args(["url", "response", "source"])))]
    Init {
        /// The pipeline's name; its topic, keyspace and table are named after it.
        name: String,
        /// Ask this URL once (GET, no credentials).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Read a saved response (JSON documents, one after another) from FILE, or `-` for
        /// stdin.
        #[arg(long, value_name = "FILE")]
        response: Option<PathBuf>,
        /// Ask once as the `[source]` table of the TOML file FILE says (url, query, headers,
        /// auth, ...; environment overrides apply), and copy that table into the spec.
        #[arg(long, value_name = "FILE")]
        source: Option<PathBuf>,
        /// The jq expression selecting the records of a response, instead of the guess.
        #[arg(long, value_name = "EXPR")]
        records: Option<String>,
        /// Write the spec to FILE, which must not exist [default: stdout, also `-`].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print the JSON Schema of a spec file, for editors (taplo / Even Better TOML) to complete
    /// and check specs with: `#:schema` at a spec's top, or a `.taplo.toml` naming it.
    Schema,
    /// Write the pages generated from the code (the spec's JSON Schema and reference, the CLI
    /// and metrics references) into the repository at ROOT; for aqueduct's developers.
    #[command(hide = true)]
    Docs {
        /// The repository's root.
        #[arg(default_value = ".")]
        root: PathBuf,
    },
}

impl Cli {
    /// The runtime's worker threads, from `--threads` or the CPUs.
    pub fn worker_threads(&self) -> usize {
        match self.threads {
            Some(n) => usize::from(n),
            None => {
                std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
            }
        }
    }
}

/// `--since`: an RFC 3339 time, or a duration before now.
fn parse_since(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let ago = humantime::parse_duration(s)
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a duration like 2h"))?;
    chrono::Duration::from_std(ago)
        .ok()
        .and_then(|ago| chrono::Utc::now().checked_sub_signed(ago))
        .ok_or_else(|| format!("{s:?} is too long ago"))
}

/// The global flags that take their value as the next argument.
const VALUE_FLAGS: &[&str] = &["--log-format", "--threads"];

/// Inserts `run` when the first argument is a spec path rather than a command.
pub fn normalize_args(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut i = 1;
    while i < args.len() {
        let word = args[i].to_string_lossy();
        if VALUE_FLAGS.contains(&word.as_ref()) {
            i += 2; // the flag and its value
        } else if word.starts_with('-') {
            i += 1;
        } else {
            // The commands as clap knows them (`help` among them), so a new one is never
            // taken for a spec.
            let command = <Cli as clap::CommandFactory>::command();
            let known = command.get_subcommands().any(|c| c.get_name() == word) || word == "help";
            if !known {
                args.insert(i, "run".into());
            }
            break;
        }
    }
    args
}

/// How a run that ends by itself shows progress: a bar when stderr is a terminal and logs
/// are text, else log lines.
/// A bad `AQUEDUCT_PROGRESS_EVERY` is a usage error (exit 2).
fn progress_display(format: LogFormat) -> anyhow::Result<progress::Display> {
    if format == LogFormat::Text && std::io::stderr().is_terminal() {
        return Ok(progress::Display::Bar);
    }
    progress::line_interval()
        .map(progress::Display::Lines)
        .map_err(|e| Invalid(format!("aqueduct: {e}")).into())
}

/// Runs a parsed command line: `Ok` with the exit code of a command that ran to its end
/// (`check` and `test` report what they found through it), or the error it failed with (see
/// [`fail`]).
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let format = cli.log_format;
    match cli.command {
        Command::Check { specs, registry } => check(&specs, registry).await,
        Command::Init {
            name,
            url,
            response,
            source,
            records,
            output,
        } => {
            let from = match (url, response, source) {
                (Some(url), _, _) => crate::init::Input::Url(url),
                (_, Some(file), _) => crate::init::Input::Response(file),
                // clap requires one of the three.
                (_, _, file) => crate::init::Input::Source(file.unwrap_or_default()),
            };
            let out = output.filter(|o| o != Path::new("-"));
            match crate::init::run(&name, &from, records.as_deref(), out.as_deref()).await {
                Ok(text) if out.is_some() => eprint!("{text}"),
                Ok(text) => say(&text),
                Err(crate::init::Error::Invalid(m)) => return Err(Invalid(m).into()),
                Err(crate::init::Error::Failed(m)) => return Err(anyhow::anyhow!(m)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ddl { spec } => {
            say(&ddl::script(&load(&spec)?.cassandra));
            Ok(ExitCode::SUCCESS)
        }
        Command::Preview {
            spec,
            input,
            records,
            limit,
            format,
        } => preview(&load(&spec)?, input.as_deref(), records, limit, format).await,
        Command::Test { specs } => Ok(test(&specs)),
        Command::Schema => {
            say(&format!("{:#}\n", spec::json_schema()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Docs { root } => {
            for path in crate::docs::write(&root).context("docs")? {
                say(&format!("wrote {path}\n"));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            spec,
            since,
            dry_run,
        } => {
            let spec = load(&spec)?;
            let options = Options {
                mode: Mode::Replay(Replay { since, dry_run }),
                only: Some(Half::Load),
                progress: Some(progress_display(format)?),
            };
            run_pipeline(spec, options).await
        }
        Command::Run { specs, only, once } => {
            let mode = if once { Mode::Once } else { Mode::Live };
            let mut specs = load_all(&specs)?;
            if specs.len() > 1 {
                return run_pipelines(specs, mode, only).await;
            }
            let options = Options {
                mode,
                only,
                progress: once.then(|| progress_display(format)).transpose()?,
            };
            run_pipeline(specs.remove(0), options).await
        }
        Command::Backfill {
            spec,
            from,
            to,
            only,
        } => {
            let spec = load(&spec)?;
            let Some(spec::Incremental::Window(window)) = spec.incremental() else {
                return Err(Invalid(format!(
                    "backfill: {} has no [source.window]; backfill fetches time windows",
                    spec.path.display()
                ))
                .into());
            };
            let to = to.unwrap_or_else(|| incremental::live_until(window, chrono::Utc::now()));
            if from >= to {
                return Err(Invalid(format!(
                    "backfill: --from ({from}) is not before --to ({to})"
                ))
                .into());
            }
            let options = Options {
                mode: Mode::Backfill { from, to },
                only,
                progress: Some(progress_display(format)?),
            };
            run_pipeline(spec, options).await
        }
        Command::Status { spec } => status(&load(&spec)?).await,
        Command::Tap {
            spec,
            dead_letters,
            from_beginning,
            last,
            follow,
            format,
        } => {
            let stdout = std::io::stdout();
            let format = format.unwrap_or(match stdout.is_terminal() {
                true => crate::tap::Format::Table,
                false => crate::tap::Format::Json,
            });
            let options = crate::tap::Options {
                dead_letters,
                from_beginning,
                last,
                follow,
                format,
            };
            let stop = CancellationToken::new();
            let on_signal = stop.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    on_signal.cancel();
                }
            });
            match crate::tap::run(&load(&spec)?, options, &mut stdout.lock(), &stop).await {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
                Err(e) => Err(e.context("tap")),
            }
        }
        Command::Cursor { spec, set } => set_cursor(&load(&spec)?, &set).await,
    }
}

/// `aqueduct status`: the saved cursor.
async fn status(spec: &spec::Spec) -> anyhow::Result<ExitCode> {
    let Some(kind) = spec.incremental() else {
        return Err(Invalid(format!(
            "status: {} polls the same request each time (no [source.cursor] or [source.window]): it has no cursor",
            spec.path.display()
        ))
        .into());
    };
    say(&incremental::status(spec, kind).await?);
    Ok(ExitCode::SUCCESS)
}

/// A `[source.parent]` pipeline's cursor from `--set`: a JSON map from parent key to that
/// parent's cursor (for windows, a time as `--since` takes it).
fn parents_cursor(kind: &spec::Incremental, text: &str) -> Result<serde_json::Value, String> {
    let map = match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => {
            return Err(format!(
                "{text} is not a JSON map: with [source.parent] the cursor is one map from parent key to that parent's cursor, e.g. '{{\"acme/api\": ...}}' ('{{}}' starts every parent over)"
            ));
        }
    };
    if let spec::Incremental::Cursor(_) = kind {
        return Ok(serde_json::Value::Object(map));
    }
    map.into_iter()
        .map(|(key, value)| {
            let t = value
                .as_str()
                .ok_or_else(|| format!("{key}: {value} is not a time"))
                .and_then(|text| parse_since(text).map_err(|e| format!("{key}: {e}")))?;
            Ok((key, incremental::window_cursor(t)))
        })
        .collect()
}

/// `aqueduct cursor --set`.
async fn set_cursor(spec: &spec::Spec, text: &str) -> anyhow::Result<ExitCode> {
    let value = match spec.incremental() {
        None => {
            return Err(Invalid(format!(
                "cursor: {} has no [source.cursor] or [source.window]",
                spec.path.display()
            ))
            .into());
        }
        Some(kind) if spec.source.as_ref().is_some_and(|s| s.parent.is_some()) => {
            parents_cursor(kind, text).map_err(|e| Invalid(format!("cursor: --set {e}")))?
        }
        Some(spec::Incremental::Window(_)) => match parse_since(text) {
            Ok(t) => incremental::window_cursor(t),
            Err(e) => return Err(Invalid(format!("cursor: --set {e}")).into()),
        },
        Some(spec::Incremental::Cursor(_)) => serde_json::from_str(text)
            .unwrap_or_else(|_| serde_json::Value::String(text.to_owned())),
    };
    let found = incremental::set(spec, value).await?;
    say(&format!(
        "{}: cursor set to {} on topic {}; the next poll starts there\n",
        spec.name, found.saved.cursor, spec.kafka.cursor_topic
    ));
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a reader that went away (`aqueduct test ... | head`) is not an error, and
/// `println!` would panic on it.
fn say(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

async fn check(paths: &[PathBuf], registry: bool) -> anyhow::Result<ExitCode> {
    let mut ok = true;
    for path in paths {
        match spec::load(path) {
            Ok(spec) if registry => match registry_verdict(&spec).await? {
                None => say(&format!("{}: ok\n", path.display())),
                Some(refusal) => {
                    eprintln!("{}: {refusal}", path.display());
                    ok = false;
                }
            },
            Ok(_) => say(&format!("{}: ok\n", path.display())),
            Err(errors) => {
                eprintln!("{errors}");
                ok = false;
            }
        }
    }
    Ok(match ok {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(EXIT_INVALID),
    })
}

/// `check --registry`: why the registry would refuse the spec's schemas (the records', and
/// the keys' when aqueduct produces them), if it would; an error when it cannot be asked.
async fn registry_verdict(spec: &spec::Spec) -> anyhow::Result<Option<String>> {
    use crate::codec::registry::{Client, Compatibility};
    let k = &spec.kafka;
    let Some(registry) = k.schema_registry.as_ref().filter(|_| spec.source.is_some()) else {
        return Ok(None);
    };
    let client = Client::new(registry)?;
    let mut refusals = Vec::new();
    for part in [spec::Part::Value, spec::Part::Key] {
        let Some(schema) = &registry.writer(part).schema else {
            continue;
        };
        let subject = client.subject(k, part);
        let verdict = client
            .compatibility(k, part, schema)
            .await
            .with_context(|| {
                format!(
                    "check --registry: asking {} about subject {subject}",
                    registry.url
                )
            })?;
        if let Compatibility::Incompatible { level, reasons } = verdict {
            refusals.push(format!(
                "the schema registry would refuse the spec's {}schema for subject {subject} (compatibility {level}): {}",
                match part {
                    spec::Part::Key => "key ",
                    spec::Part::Value => "",
                },
                match reasons.is_empty() {
                    true => "no reason given".to_owned(),
                    false => reasons.join("; "),
                }
            ));
        }
    }
    Ok((!refusals.is_empty()).then(|| refusals.join("\n")))
}

async fn preview(
    spec: &spec::Spec,
    input: Option<&Path>,
    records: bool,
    limit: usize,
    format: Option<preview::Format>,
) -> anyhow::Result<ExitCode> {
    let inputs = match input {
        None => preview::from_api(spec, limit).await,
        Some(path) => preview::read_input(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))
            .and_then(|text| {
                preview::from_text(spec, &text, &path.display().to_string(), records, limit)
            }),
    };
    let inputs = inputs.map_err(|e| anyhow::anyhow!("preview: {e}"))?;
    let outcomes = preview::outcomes(spec, &inputs);
    let stdout = std::io::stdout();
    let format = format.unwrap_or(if stdout.is_terminal() {
        preview::Format::Table
    } else {
        preview::Format::Json
    });
    match preview::print(spec, &outcomes, format, &mut stdout.lock()) {
        Ok(()) => {}
        // `preview ... | head`: the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(anyhow::Error::new(e).context("preview: writing the output")),
    }
    eprintln!("{}: {}", spec.name, preview::summary(&outcomes));
    Ok(ExitCode::SUCCESS)
}

/// Runs each spec's cases; exit 1 if a case fails, 2 if a spec or test file is broken.
fn test(paths: &[PathBuf]) -> ExitCode {
    let (mut failed, mut broken, mut cases) = (0, 0, 0);
    for path in paths {
        let spec = match spec::load(path) {
            Ok(spec) => spec,
            Err(errors) => {
                eprintln!("{errors}");
                broken += 1;
                continue;
            }
        };
        let file = spec_test::file_for(path);
        match spec_test::run(&spec, &file) {
            Ok(verdicts) => {
                say(&format!("{} ({})\n", path.display(), file.display()));
                say(&spec_test::report(&verdicts));
                cases += verdicts.len();
                failed += verdicts
                    .iter()
                    .filter(|v| !v.differences.is_empty())
                    .count();
            }
            Err(e) => {
                eprintln!("test: {e}");
                broken += 1;
            }
        }
    }
    say(&format!(
        "{cases} cases: {} passed, {failed} failed{}\n",
        cases - failed,
        if broken > 0 {
            format!("; {broken} spec(s) or test file(s) broken")
        } else {
            String::new()
        }
    ));
    if broken > 0 {
        ExitCode::from(EXIT_INVALID)
    } else if failed > 0 {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// The specs at `paths`, a folder standing for the `*.toml` files in it; every error of every
/// spec at once, and two pipelines of one name refused (their cursors and groups would mix).
fn load_all(paths: &[PathBuf]) -> anyhow::Result<Vec<spec::Spec>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            if inside.is_empty() {
                return Err(Invalid(format!("{}: no *.toml spec in it", path.display())).into());
            }
            inside.sort();
            files.extend(inside);
        } else {
            files.push(path.clone());
        }
    }
    let mut specs = Vec::new();
    let mut errors = Vec::new();
    for file in &files {
        match spec::load(file) {
            Ok(spec) => specs.push(spec),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let mut names = std::collections::BTreeMap::new();
    for spec in &specs {
        if let Some(other) = names.insert(spec.name.clone(), spec.path.clone()) {
            errors.push(format!(
                "{} and {} are both pipeline `{}`: pipelines run together need names of their own (their cursors and consumer groups go by it)",
                other.display(),
                spec.path.display(),
                spec.name
            ));
        }
    }
    match errors.is_empty() {
        true => Ok(specs),
        false => Err(Invalid(errors.join("\n")).into()),
    }
}

/// Several pipelines in one process: one runtime and one metrics endpoint (the first address a
/// spec gives; every pipeline's metrics, by their `pipeline` label), each pipeline its own
/// Kafka clients and consumer groups. A pipeline that fails is logged and the others go on; a
/// signal stops them all, each committing its own. Fails if any pipeline failed.
async fn run_pipelines(
    mut specs: Vec<spec::Spec>,
    mode: Mode,
    only: Option<Half>,
) -> anyhow::Result<ExitCode> {
    let addresses: std::collections::BTreeSet<_> =
        specs.iter().filter_map(|s| s.metrics_address).collect();
    if addresses.len() > 1 {
        return Err(Invalid(format!(
            "pipelines run together serve one metrics endpoint, but their specs give {}: give one [metrics] address, or none but one",
            addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
        ))
        .into());
    }
    let metrics: Vec<Arc<Metrics>> = specs.iter().map(|s| Arc::new(metrics_of(s))).collect();
    let served = CancellationToken::new();
    let server = match addresses.first() {
        Some(addr) => Some(tokio::spawn(
            pipeline::serve_metrics(*addr, metrics.clone(), served.clone()).await?,
        )),
        None => None,
    };
    for spec in &mut specs {
        spec.metrics_address = None;
    }
    info!(pipelines = specs.len(), "running pipelines in one process");
    let shutdown = CancellationToken::new();
    let runs = specs.into_iter().zip(&metrics).map(|(spec, metrics)| {
        let name = spec.name.clone();
        let options = Options {
            mode,
            only,
            progress: None,
        };
        let span = tracing::info_span!("pipeline", name = %name);
        let run = pipeline::run(Arc::new(spec), options, shutdown.clone(), metrics.clone());
        async move {
            let result = run.await;
            log_summary(metrics);
            if let Err(e) = &result {
                error!(error = %format!("{e:#}"), "pipeline failed; the others go on");
            }
            (name, result)
        }
        .instrument(span)
    });
    let results = futures::future::join_all(runs).await;
    served.cancel();
    if let Some(server) = server {
        server.await??;
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(name, _)| name.clone())
        .collect();
    match results.into_iter().find_map(|(_, r)| r.err()) {
        None => Ok(ExitCode::SUCCESS),
        Some(first) => Err(first.context(format!("pipelines failed: {}", failed.join(", ")))),
    }
}

/// The metrics of `spec`'s pipeline.
fn metrics_of(spec: &spec::Spec) -> Metrics {
    let tables: Vec<&str> = spec
        .cassandra
        .tables
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    Metrics::new(&spec.name, &tables)
}

/// What a run did, in one log line.
fn log_summary(metrics: &Metrics) {
    let s = metrics.summary();
    info!(
        polled = s.polled,
        invalid = s.invalid,
        dropped = s.dropped,
        produced = s.produced,
        written = s.written,
        dead_lettered = s.dead_lettered,
        retries = s.retries,
        failed_polls = s.failed_polls,
        source_wait_s = s.source_wait_s,
        latency_p50_ms = s.latency_p50_ms,
        latency_p99_ms = s.latency_p99_ms,
        first_row_seconds = s.first_row_seconds,
        last_row_seconds = s.last_row_seconds,
        seconds = s.seconds,
        "summary"
    );
}

/// `tap ... | head`: the reader has what it wanted.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

async fn run_pipeline(spec: spec::Spec, options: Options) -> anyhow::Result<ExitCode> {
    let metrics = Arc::new(metrics_of(&spec));
    let shutdown = CancellationToken::new();
    let result = pipeline::run(Arc::new(spec), options, shutdown, metrics.clone()).await;
    log_summary(&metrics);
    let s = metrics.summary();
    if let Mode::Replay(replay) = options.mode {
        let r = &metrics.replay;
        if replay.dry_run {
            info!(
                read = get(&r.read),
                would_write = get(&r.would_write),
                would_dead_letter = get(&r.would_dead_letter),
                skipped = get(&r.skipped),
                unreadable = get(&r.unreadable),
                "replay summary (dry run: nothing written or committed)"
            );
        } else {
            info!(
                read = get(&r.read),
                written = s.written,
                dead_lettered_again = s.dead_lettered,
                skipped = get(&r.skipped),
                unreadable = get(&r.unreadable),
                "replay summary"
            );
        }
    }
    result.map(|()| ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize_args(args.iter().map(|a| a.into()).collect())
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn bare_spec_means_run() {
        assert_eq!(norm(&["aqueduct", "p.toml"]), ["aqueduct", "run", "p.toml"]);
        assert_eq!(
            norm(&["aqueduct", "--log-format", "json", "p.toml"]),
            ["aqueduct", "--log-format", "json", "run", "p.toml"]
        );
        assert_eq!(
            norm(&["aqueduct", "check", "p.toml"]),
            ["aqueduct", "check", "p.toml"]
        );
        assert_eq!(norm(&["aqueduct", "--help"]), ["aqueduct", "--help"]);
        // `--threads 1` took `1` for the spec (and `check` for its path).
        assert_eq!(
            norm(&["aqueduct", "--threads", "1", "check", "p.toml"]),
            ["aqueduct", "--threads", "1", "check", "p.toml"]
        );
        assert_eq!(
            norm(&["aqueduct", "--threads", "1", "p.toml"]),
            ["aqueduct", "--threads", "1", "run", "p.toml"]
        );
        // Every command is one (`tap` was taken for a spec, and run given `--last`).
        assert_eq!(
            norm(&["aqueduct", "tap", "p.toml"]),
            ["aqueduct", "tap", "p.toml"]
        );
        assert_eq!(norm(&["aqueduct", "help"]), ["aqueduct", "help"]);
    }

    /// Every global flag that takes a value is in VALUE_FLAGS.
    #[test]
    fn value_flags_are_the_global_flags_with_values() {
        use clap::CommandFactory;
        let mut with_values: Vec<String> = Cli::command()
            .get_arguments()
            .filter(|a| a.is_global_set() && a.get_action().takes_values())
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        with_values.sort();
        let mut known: Vec<String> = VALUE_FLAGS.iter().map(|f| f.to_string()).collect();
        known.sort();
        assert_eq!(with_values, known);
    }
}
