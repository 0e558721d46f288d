//! The floor: what PostgreSQL and RabbitMQ on this machine do with no product in the way.
//!
//! - PostgreSQL: rows of the shape the product keeps for each probe result (`fact_history`:
//!   ids, probe, subject, digest, the JSON payload the API stores, times, count) written with
//!   `COPY … FROM STDIN` in text format, one COPY of `rows_per_copy` rows per transaction (each
//!   commit waits for its WAL flush, as the product's do), from `connections` connections.
//! - RabbitMQ: persistent messages the size of an outbox message, published to a durable quorum
//!   queue on a confirm-mode channel, with up to `window` confirms outstanding (pipelined, as the
//!   outbox relay does); and, for reference, one publish at a time waiting for each confirm.

use std::collections::VecDeque;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Confirmation};
use sqlx::Connection as _;
use sqlx::postgres::PgConnectOptions;
use uuid::Uuid;

use crate::stats::per_second;
use crate::workload::Site;

/// PostgreSQL COPY floor.
#[derive(Debug, Clone, Copy)]
pub struct PgFloor {
    pub rows: u64,
    pub elapsed: Duration,
    pub rows_per_s: f64,
    pub bytes_per_row: f64,
}

/// `COPY` into a fresh table in `db_url` for `duration`.
pub async fn postgres_copy(
    db_url: &str,
    duration: Duration,
    rows_per_copy: usize,
    connections: usize,
) -> anyhow::Result<PgFloor> {
    let options = PgConnectOptions::from_str(db_url)?.application_name("wbd-bench floor");
    let mut setup = sqlx::PgConnection::connect_with(&options).await.context("connecting for the floor")?;
    sqlx::query(
        "CREATE TABLE probe_results (
             id            UUID PRIMARY KEY,
             org_id        UUID NOT NULL,
             tenant_id     UUID NOT NULL,
             collector_id  UUID NOT NULL,
             probe         TEXT NOT NULL,
             subject       TEXT NOT NULL,
             digest        TEXT NOT NULL,
             payload       JSONB NOT NULL,
             first_seen_at TIMESTAMPTZ NOT NULL,
             last_seen_at  TIMESTAMPTZ NOT NULL,
             count         BIGINT NOT NULL
         )",
    )
    .execute(&mut setup)
    .await?;
    setup.close().await?;

    // Every row's columns but the id, encoded once: the load generator should cost as little
    // CPU as possible, since it shares the machine with PostgreSQL.
    let suffixes = row_suffixes(2_000)?;
    let bytes_per_row = suffixes.iter().map(|s| s.len() + 37).sum::<usize>() as f64 / suffixes.len() as f64;
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections.max(1) {
        let options = options.clone();
        let suffixes = suffixes.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = sqlx::PgConnection::connect_with(&options).await?;
            let mut rows = 0u64;
            let mut buf = Vec::with_capacity(rows_per_copy * 800);
            let mut next = c * 997;
            // Bounded in time and in count (no more than 100 million rows per connection).
            while Instant::now() < deadline && rows < 100_000_000 {
                buf.clear();
                for _ in 0..rows_per_copy {
                    let id = Uuid::now_v7();
                    buf.extend_from_slice(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).as_bytes());
                    buf.push(b'\t');
                    buf.extend_from_slice(&suffixes[next % suffixes.len()]);
                    next += 1;
                }
                let mut copy = conn
                    .copy_in_raw(
                        "COPY probe_results (id, org_id, tenant_id, collector_id, probe, subject, digest, payload,
                                             first_seen_at, last_seen_at, count) FROM STDIN",
                    )
                    .await?;
                copy.send(buf.as_slice()).await?;
                rows += copy.finish().await?;
            }
            conn.close().await?;
            anyhow::Ok(rows)
        }));
    }
    let mut rows = 0;
    for task in tasks {
        rows += task.await.context("COPY task panicked")??;
    }
    let elapsed = started.elapsed();
    Ok(PgFloor { rows, elapsed, rows_per_s: per_second(rows as f64, elapsed), bytes_per_row })
}

/// COPY text-format lines (without the leading id) for probe results of simulated sites.
fn row_suffixes(count: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let org = Uuid::now_v7();
    let mut lines = Vec::with_capacity(count);
    let mut site_number = 0;
    while lines.len() < count {
        let tenant = Uuid::now_v7();
        let collector = Uuid::now_v7();
        let mut site = Site::new(site_number, 50, 0.02);
        site_number += 1;
        let now = Utc::now();
        for result in site.cycle(now) {
            let payload = serde_json::to_string(&result.output)?;
            let digest = format!("{:064x}", u128::from(site_number) * 0x9e37_79b9_7f4a_7c15);
            let at = now.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
            let line = format!(
                "{org}\t{tenant}\t{collector}\t{}\t{}\t{digest}\t{}\t{at}\t{at}\t1\n",
                copy_escape(result.output.kind().as_str()),
                copy_escape(&result.subject),
                copy_escape(&payload),
            );
            lines.push(line.into_bytes());
        }
    }
    lines.truncate(count);
    Ok(lines)
}

/// Escapes a value for COPY's text format.
pub fn copy_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// RabbitMQ publisher-confirm floor.
#[derive(Debug, Clone, Copy)]
pub struct RabbitFloor {
    pub pipelined_msgs_per_s: f64,
    pub pipelined_messages: u64,
    pub one_at_a_time_msgs_per_s: f64,
    pub message_bytes: usize,
    pub nacked: u64,
}

/// Publishes to `{prefix}.floor` (declared here as the product declares its queue, deleted by
/// the caller) for `duration` pipelined, then `serial_duration` one at a time.
pub async fn rabbitmq_confirms(
    amqp_url: &str,
    prefix: &str,
    duration: Duration,
    serial_duration: Duration,
    window: usize,
) -> anyhow::Result<RabbitFloor> {
    let connection = lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default())
        .await
        .with_context(|| format!("connecting to RabbitMQ at {amqp_url}"))?;
    let channel = connection.create_channel().await?;
    let queue = format!("{prefix}.floor");
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    arguments.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() },
            arguments,
        )
        .await
        .context("declaring the floor queue")?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;

    // An outbox message as the relay publishes it: JSON body, persistent, id, traceparent.
    let body = serde_json::to_vec(&serde_json::json!({
        "id": Uuid::now_v7(),
        "org_id": Uuid::now_v7(),
        "tenant_id": Uuid::now_v7(),
        "kind": { "type": "batch_ingested", "collector_id": Uuid::now_v7(), "batch_id": Uuid::now_v7() },
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "created_at": Utc::now(),
        "attempts": 1,
    }))?;
    let properties = || {
        let mut headers = FieldTable::default();
        headers.insert(
            "traceparent".into(),
            AMQPValue::LongString("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        );
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(ShortString::from(Uuid::now_v7().to_string()))
            .with_headers(headers)
    };
    let options = BasicPublishOptions { mandatory: true, immediate: false };
    let routing_key: ShortString = queue.as_str().into();

    let mut nacked = 0u64;
    let mut confirmed = 0u64;
    let mut pending = VecDeque::with_capacity(window);
    let started = Instant::now();
    let deadline = started + duration;
    // Bounded in time and in count.
    while Instant::now() < deadline && confirmed < 50_000_000 {
        while pending.len() < window.max(1) {
            let confirm =
                channel.basic_publish("".into(), routing_key.clone(), options, &body, properties()).await?;
            pending.push_back(confirm);
        }
        if let Some(confirm) = pending.pop_front() {
            match confirm.await? {
                Confirmation::Ack(_) => confirmed += 1,
                _ => nacked += 1,
            }
        }
    }
    while let Some(confirm) = pending.pop_front() {
        match confirm.await? {
            Confirmation::Ack(_) => confirmed += 1,
            _ => nacked += 1,
        }
    }
    let pipelined_elapsed = started.elapsed();

    let serial_started = Instant::now();
    let mut serial = 0u64;
    while serial_started.elapsed() < serial_duration && serial < 10_000_000 {
        let confirm =
            channel.basic_publish("".into(), routing_key.clone(), options, &body, properties()).await?;
        match confirm.await? {
            Confirmation::Ack(_) => serial += 1,
            _ => nacked += 1,
        }
    }
    let serial_elapsed = serial_started.elapsed();
    let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(RabbitFloor {
        pipelined_msgs_per_s: per_second(confirmed as f64, pipelined_elapsed),
        pipelined_messages: confirmed,
        one_at_a_time_msgs_per_s: per_second(serial as f64, serial_elapsed),
        message_bytes: body.len(),
        nacked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_what_copy_reads_specially() {
        assert_eq!(copy_escape(r#"{"a":"b\"c"}"#), r#"{"a":"b\\"c"}"#);
        assert_eq!(copy_escape("a\tb\nc\rd"), "a\\tb\\nc\\rd");
        assert_eq!(copy_escape("plain"), "plain");
    }

    #[test]
    fn floor_rows_have_eleven_columns() {
        for line in row_suffixes(60).unwrap() {
            let text = String::from_utf8(line).unwrap();
            assert!(text.ends_with('\n'));
            // The id is prepended at send time: ten columns here.
            assert_eq!(text.trim_end().split('\t').count(), 10, "{text}");
        }
    }
}
