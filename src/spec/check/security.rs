//! What `[kafka.tls]`, `[kafka.sasl]` and `[cassandra.tls]` share: secrets given in the spec,
//! the environment or a file, and TLS files read and checked for what they should hold, so a
//! swapped or wrong file is named by `check` rather than by a failed handshake.

use std::path::{Path, PathBuf};

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use super::Checker;
use crate::spec::raw::{RawSasl, RawTls};
use crate::spec::{ClientCertificate, Sasl, Secret, Tls};

/// A secret set as `key` or read from the file `<key>_file` (relative to `base`, without a
/// trailing newline); errors name the file, never its text.
pub(super) fn secret(
    c: &mut Checker,
    key: &str,
    inline: Option<String>,
    file: Option<PathBuf>,
    base: &Path,
) -> Option<Secret> {
    let file_key = format!("{key}_file");
    match (inline, file) {
        (inline, None) => inline.map(Secret),
        (None, Some(file)) => read_secret(c, &file_key, &base.join(file)),
        (Some(_), Some(_)) => {
            let name = key.rsplit('.').next().unwrap_or(key);
            c.err(
                &file_key,
                format!("set one of `{name}` and `{name}_file`, not both"),
            );
            None
        }
    }
}

/// A secret read from `file` (without a trailing newline); errors, under `key`, name the
/// file, never its text.
pub(super) fn read_secret(c: &mut Checker, key: &str, file: &Path) -> Option<Secret> {
    match std::fs::read_to_string(file) {
        Ok(text) => {
            let secret = text.trim_end_matches(['\n', '\r']);
            if secret.is_empty() {
                c.err(key, format!("{} is empty", file.display()));
                return None;
            }
            Some(Secret(secret.to_owned()))
        }
        Err(e) => {
            c.err(key, format!("cannot read {}: {e}", file.display()));
            None
        }
    }
}

/// `[<section>.tls]`; problems are recorded in `c`.
pub(super) fn tls(c: &mut Checker, section: &str, raw: RawTls, base: &Path) -> Tls {
    let ca_file = raw.ca_file.map(|file| base.join(file));
    if let Some(file) = &ca_file {
        certificates(c, &format!("{section}.tls.ca_file"), file);
    }
    let key_password = secret(
        c,
        &format!("{section}.tls.key_password"),
        raw.key_password,
        raw.key_password_file,
        base,
    );
    let client = match (raw.cert_file, raw.key_file) {
        (Some(cert_file), Some(key_file)) => {
            let (cert_file, key_file) = (base.join(cert_file), base.join(key_file));
            let cert = certificates(c, &format!("{section}.tls.cert_file"), &cert_file);
            let key = private_key(c, section, &key_file, key_password.as_ref());
            if let (Some(cert), Some(key)) = (cert, key) {
                if !cert.public_key().is_ok_and(|public| public.public_eq(&key)) {
                    c.err(
                        &format!("{section}.tls.key_file"),
                        format!(
                            "{} is not the key of the certificate in {}",
                            key_file.display(),
                            cert_file.display()
                        ),
                    );
                }
            }
            Some(ClientCertificate {
                cert_file,
                key_file,
                key_password,
            })
        }
        (None, None) => {
            if key_password.is_some() {
                c.err(
                    &format!("{section}.tls.key_password"),
                    "is the password of `key_file`, which is not set",
                );
            }
            None
        }
        _ => {
            c.err(
                &format!("{section}.tls"),
                "set both `cert_file` and `key_file` (a client certificate and its key), or neither",
            );
            None
        }
    };
    Tls {
        ca_file,
        client,
        verify_hostname: raw.verify_hostname,
    }
}

/// The first certificate of a PEM file that must hold one or more.
fn certificates(c: &mut Checker, key: &str, file: &Path) -> Option<X509> {
    let pem = read(c, key, file)?;
    match X509::stack_from_pem(&pem) {
        Ok(mut certs) if !certs.is_empty() => Some(certs.swap_remove(0)),
        _ => {
            c.err(key, format!("{} holds no PEM certificate", file.display()));
            None
        }
    }
}

/// The private key of a PEM file, decrypted with `password` when it is encrypted. Never asks
/// on the terminal (OpenSSL's default without a password callback).
fn private_key(
    c: &mut Checker,
    section: &str,
    file: &Path,
    password: Option<&Secret>,
) -> Option<PKey<Private>> {
    let key = format!("{section}.tls.key_file");
    let pem = read(c, &key, file)?;
    let encrypted = String::from_utf8_lossy(&pem).contains("ENCRYPTED");
    let parsed = PKey::private_key_from_pem_callback(&pem, |buf| {
        let password = password.map_or(&[][..], |p| p.0.as_bytes());
        let n = password.len().min(buf.len());
        buf[..n].copy_from_slice(&password[..n]);
        Ok(n)
    });
    match parsed {
        Ok(key) => Some(key),
        Err(_) if encrypted && password.is_none() => {
            c.err(
                &format!("{section}.tls.key_password"),
                format!(
                    "{} is encrypted: set `key_password` (or `key_password_file`)",
                    file.display()
                ),
            );
            None
        }
        Err(_) if encrypted => {
            c.err(
                &format!("{section}.tls.key_password"),
                format!("does not decrypt {}", file.display()),
            );
            None
        }
        Err(_) => {
            c.err(&key, format!("{} holds no PEM private key", file.display()));
            None
        }
    }
}

fn read(c: &mut Checker, key: &str, file: &Path) -> Option<Vec<u8>> {
    std::fs::read(file)
        .map_err(|e| c.err(key, format!("cannot read {}: {e}", file.display())))
        .ok()
}

/// The SASL mechanisms aqueduct offers, as librdkafka names them.
const SASL_MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// `[kafka.sasl]`.
pub(super) fn sasl(c: &mut Checker, raw: RawSasl, base: &Path) -> Option<Sasl> {
    let mechanism = SASL_MECHANISMS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(&raw.mechanism));
    if mechanism.is_none() {
        c.err(
            "kafka.sasl.mechanism",
            format!(
                "`{}` is not one of {}",
                raw.mechanism,
                SASL_MECHANISMS.join(", ")
            ),
        );
    }
    if raw.username.is_empty() {
        c.err("kafka.sasl.username", "is empty");
    }
    let given = raw.password.is_some() || raw.password_file.is_some();
    let password = secret(
        c,
        "kafka.sasl.password",
        raw.password,
        raw.password_file,
        base,
    );
    if !given {
        c.err(
            "kafka.sasl",
            "set `password` (or `password_file`, or AQUEDUCT_KAFKA__SASL__PASSWORD)",
        );
    }
    Some(Sasl {
        mechanism: mechanism?,
        username: raw.username,
        password: password?,
    })
}
