//! `wbd-api check-config`: what this process would run with, checked without serving or changing
//! anything. The settings (already validated when they loaded), the addresses and files they
//! name, the secrets key, the database (reached, migrations compared with this build's; nothing
//! applied, no SQLite file created) and the message broker (reached, nothing declared). Prints
//! the settings with every secret redacted, then one line per check; any failed check makes the
//! exit code non-zero.

use std::fmt::Write as _;

use wbd_notify::sealing::Sealer;
use wbd_notify::ssrf::{IpNet, NetworkPolicy};
use wbd_platform::Settings;
use wbd_platform::settings::redact_url;

/// The report to print, and whether every check passed.
pub struct Report {
    pub text: String,
    pub ok: bool,
}

/// A secret as shown: whether it is set.
fn hide(key: &str) -> String {
    if key.is_empty() { String::new() } else { "(set, hidden)".to_owned() }
}

/// The settings as they will be used, with passwords in URLs and the secrets keys hidden.
pub fn redacted(settings: &Settings) -> serde_json::Value {
    let mut shown = settings.clone();
    shown.database.url = redact_url(&settings.database.url);
    shown.queue.amqp_url = redact_url(&settings.queue.amqp_url);
    shown.delivery.secrets_key = hide(&settings.delivery.secrets_key);
    shown.delivery.previous_secrets_keys =
        settings.delivery.previous_secrets_keys.iter().map(|k| hide(k)).collect();
    shown.graph.client_secret = hide(&settings.graph.client_secret);
    serde_json::to_value(&shown).unwrap_or(serde_json::Value::Null)
}

pub async fn run(settings: &Settings) -> Report {
    let mut text = String::new();
    let settings_json = serde_json::to_string_pretty(&redacted(settings)).unwrap_or_default();
    let _ = writeln!(text, "settings (defaults, then the file, then the environment; secrets hidden):");
    let _ = writeln!(text, "{settings_json}");
    let mut ok = true;
    let mut line = |passed: Result<String, String>, what: &str| match passed {
        Ok(detail) => {
            let _ = writeln!(text, "ok    {what}: {detail}");
        }
        Err(problem) => {
            ok = false;
            let _ = writeln!(text, "FAIL  {what}: {problem}");
        }
    };

    line(
        settings
            .server
            .trusted_proxies
            .iter()
            .map(|p| IpNet::parse(p).map_err(|why| format!("`{p}`: {why}")))
            .collect::<Result<Vec<_>, _>>()
            .map(|nets| format!("{} trusted prox{}", nets.len(), if nets.len() == 1 { "y" } else { "ies" })),
        "server.trusted_proxies",
    );
    line(
        NetworkPolicy::new(&settings.delivery.allow_networks, settings.delivery.https_only)
            .map(|_| format!("{} network(s) allowed", settings.delivery.allow_networks.len())),
        "delivery.allow_networks",
    );
    if settings.tls_enabled() {
        line(
            crate::startup::load_tls(settings)
                .map(|_| "certificate and key load".to_owned())
                .map_err(|e| format!("{e:#}")),
            "server.tls_cert_file / tls_key_file",
        );
    }
    let postgres = !settings.database.url.starts_with("sqlite:");
    let key = &settings.delivery.secrets_key;
    line(
        match (key.is_empty(), postgres) {
            (false, _) => Sealer::new(key, &settings.delivery.previous_secrets_keys)
                .map(|_| "integration credentials can be sealed and opened".to_owned()),
            (true, false) => {
                Ok("empty: a key file beside the SQLite database is used (made at first start)".to_owned())
            }
            (true, true) => {
                Err("empty on PostgreSQL: integrations cannot be saved; set the same key on every process"
                    .to_owned())
            }
        },
        "delivery.secrets_key",
    );

    line(
        match settings.graph.app() {
            Ok(None) => Ok("not configured: no central Microsoft Graph reads".to_owned()),
            Ok(Some(app)) => Ok(match &app.credential {
                wbd_graph::ClientCredential::Certificate(cert) => format!(
                    "app {} in the {} cloud, certificate x5t#S256 {} ({}) valid until {}",
                    app.client_id,
                    settings.graph.cloud(),
                    cert.thumbprint_s256(),
                    cert.algorithm().as_str(),
                    cert.not_after().map_or_else(|| "an unreadable date".to_owned(), |t| t.to_rfc3339()),
                ),
                wbd_graph::ClientCredential::Secret(_) => {
                    format!(
                        "app {} in the {} cloud, client secret (hidden)",
                        app.client_id,
                        settings.graph.cloud()
                    )
                }
            }),
            Err(e) => Err(e.to_string()),
        },
        "graph",
    );
    let database = settings.database.redacted_url();
    line(
        match wbd_store::check(&settings.database.url).await {
            Ok(check) if check.unknown > 0 => Err(format!(
                "{database}: has {} migration(s) this build does not know (a newer version ran on it); this version would not start",
                check.unknown
            )),
            Ok(check) if check.missing_file => Ok(format!(
                "{database}: no file yet; it is created, with {} migrations, at the first start",
                check.pending
            )),
            Ok(check) => Ok(format!(
                "{database}: reachable; {} migration(s) applied, {} to apply at the next start (or `wbd-api migrate`)",
                check.applied, check.pending
            )),
            Err(e) => Err(format!("{database}: {}", error_chain(&e))),
        },
        "database",
    );
    let queue = &settings.queue.amqp_url;
    line(
        if queue.is_empty() {
            Ok("the local queue (the database's outbox); no broker".to_owned())
        } else {
            let shown = redact_url(queue);
            wbd_queue::check_broker(queue, &settings.queue.to_queue_settings())
                .await
                .map(|()| format!("{shown}: reachable"))
                .map_err(|e| format!("{shown}: {}", error_chain(&e)))
        },
        "queue",
    );
    let _ = writeln!(text, "{}", if ok { "configuration ok" } else { "configuration has problems (above)" });
    Report { text, ok }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}
