//! Distributed mode against the real RabbitMQ (`WBD_TEST_AMQP_URL`), PostgreSQL when configured.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lapin::types::AMQPValue;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wbd_queue::{Queue, QueueError, QueueKind, QueueSettings};
use wbd_store::OutboxMessage;

use crate::harness::{
    BROKER_LOCK, PATIENCE, Site, TestBroker, all_stores, amqp_url, batch_id, eventually, postgres_store,
    receive, sqlite_store,
};

async fn open(broker: &TestBroker, settings: QueueSettings, store: &Arc<dyn wbd_store::Store>) -> Queue {
    Queue::open(QueueKind::Amqp { url: broker.url.clone() }, settings, Arc::clone(store))
        .await
        .unwrap_or_else(|e| panic!("open the AMQP queue: {e:?}"))
}

fn header<'a>(properties: &'a lapin::BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    properties.headers().as_ref().and_then(|headers| headers.inner().get(name))
}

fn header_text(properties: &lapin::BasicProperties, name: &str) -> Option<String> {
    match header(properties, name)? {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        _ => None,
    }
}

/// The `reason` of the first `x-death` entry RabbitMQ put on a dead-lettered message.
fn death_reason(properties: &lapin::BasicProperties) -> Option<String> {
    let AMQPValue::FieldArray(deaths) = header(properties, "x-death")? else { return None };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else { return None };
    match first.inner().get("reason")? {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and PostgreSQL: set WBD_TEST_AMQP_URL and WBD_TEST_DATABASE_URL, run with -- --include-ignored"]
async fn relay_publishes_every_outbox_row_then_deletes_it() -> anyhow::Result<()> {
    let url = amqp_url();
    let _shared = BROKER_LOCK.read().await;
    for store in all_stores().await {
        let broker = TestBroker::new(&url).await;
        let site = Site::enroll(store.store.as_ref()).await?;
        let mut pushed = Vec::new();
        for i in 0..6 {
            // Every other batch without trace context: the header must then be absent.
            let trace = (i % 2 == 0).then(crate::harness::traceparent);
            let batch = site.push(store.store.as_ref(), trace.as_deref()).await?;
            pushed.push((batch, trace));
        }

        let queue = open(&broker, broker.settings(), &store.store).await;
        assert!(queue.ready().await);
        let relay = queue.spawn_relay(broker.cancel.clone()).expect("a relay in AMQP mode");
        queue.notify();
        eventually("the outbox is empty", || async { Ok(store.store.count_outbox().await? == 0) }).await?;
        broker.wait_count(&broker.work_queue(), 6).await?;

        let on_queue = broker.drain(&broker.work_queue()).await?;
        assert_eq!(on_queue.len(), 6, "on {}", store.label);
        for (peeked, (batch, trace)) in on_queue.iter().zip(&pushed) {
            let message: OutboxMessage = serde_json::from_slice(&peeked.data)?;
            assert_eq!(batch_id(&message), *batch, "in outbox order on {}", store.label);
            assert_eq!(message.traceparent, *trace);
            let properties = &peeked.properties;
            assert_eq!(*properties.delivery_mode(), Some(2), "persistent");
            assert_eq!(
                properties.message_id().as_ref().map(|id| id.as_str().to_owned()),
                Some(message.id.to_string())
            );
            assert_eq!(properties.content_type().as_ref().map(|t| t.as_str()), Some("application/json"));
            assert_eq!(header_text(properties, "traceparent"), *trace);
        }
        broker.cancel.cancel();
        tokio::time::timeout(PATIENCE, relay).await??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and PostgreSQL: set WBD_TEST_AMQP_URL and WBD_TEST_DATABASE_URL, run with -- --include-ignored"]
async fn consumer_gets_each_message_with_its_traceparent_and_ack_removes_it() -> anyhow::Result<()> {
    let url = amqp_url();
    let _shared = BROKER_LOCK.read().await;
    let broker = TestBroker::new(&url).await;
    let store = sqlite_store().await;
    let site = Site::enroll(store.store.as_ref()).await?;
    let queue = open(&broker, broker.settings(), &store.store).await;
    let _relay = queue.spawn_relay(broker.cancel.clone());
    let consumer_cancel = CancellationToken::new();
    let mut consumer = queue.consumer(consumer_cancel.clone()).await?;

    let mut expected = std::collections::HashMap::new();
    for _ in 0..5 {
        let trace = crate::harness::traceparent();
        let batch = site.push(store.store.as_ref(), Some(&trace)).await?;
        queue.notify();
        expected.insert(batch, trace);
    }
    for _ in 0..5 {
        let delivery = receive(&mut consumer, PATIENCE).await.expect("a delivery");
        let trace = expected.remove(&batch_id(&delivery.message)).expect("a message we pushed, once");
        assert_eq!(delivery.traceparent(), Some(trace.as_str()));
        assert_eq!(delivery.message.scope(), site.scope);
        assert!(!delivery.redelivered);
        assert_eq!(delivery.delivery_count, 1);
        delivery.ack().await?;
    }
    assert!(expected.is_empty());
    assert!(receive(&mut consumer, Duration::from_secs(1)).await.is_none(), "acked messages do not return");
    broker.wait_count(&broker.work_queue(), 0).await?;
    assert_eq!(store.store.count_outbox().await?, 0);

    consumer_cancel.cancel();
    assert!(tokio::time::timeout(PATIENCE, consumer.next()).await?.is_none(), "None once cancelled");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and PostgreSQL: set WBD_TEST_AMQP_URL and WBD_TEST_DATABASE_URL, run with -- --include-ignored"]
async fn consumers_share_the_work() -> anyhow::Result<()> {
    let url = amqp_url();
    let _shared = BROKER_LOCK.read().await;
    const CONSUMERS: usize = 3;
    let broker = TestBroker::new(&url).await;
    let store = sqlite_store().await;
    let site = Site::enroll(store.store.as_ref()).await?;
    // One unacknowledged message per consumer at a time: while a consumer holds its first, the
    // broker must hand the next messages to the others.
    let queue = open(&broker, QueueSettings { prefetch: 1, ..broker.settings() }, &store.store).await;
    let cancel = CancellationToken::new();
    let everyone_has_one = Arc::new(tokio::sync::Barrier::new(CONSUMERS));
    let mut workers = Vec::new();
    for _ in 0..CONSUMERS {
        let mut consumer = queue.consumer(cancel.clone()).await?;
        let barrier = everyone_has_one.clone();
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            // Patient for the first message (the relay starts after the consumers), then done
            // once the queue stays empty.
            let mut within = PATIENCE;
            while let Some(delivery) = receive(&mut consumer, within).await {
                within = Duration::from_secs(3);
                if seen.is_empty() {
                    tokio::time::timeout(PATIENCE, barrier.wait()).await?;
                }
                seen.push(batch_id(&delivery.message));
                delivery.ack().await?;
            }
            anyhow::Ok(seen)
        }));
    }
    let pushed = site.push_many(store.store.as_ref(), 30).await?;
    let _relay = queue.spawn_relay(broker.cancel.clone());
    queue.notify();

    let mut seen = Vec::new();
    for worker in workers {
        let got = worker.await??;
        assert!(!got.is_empty(), "every consumer got some of the work");
        seen.extend(got);
    }
    seen.sort();
    let mut expected = pushed;
    expected.sort();
    assert_eq!(seen, expected, "every message exactly once");
    broker.wait_count(&broker.work_queue(), 0).await?;
    cancel.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and PostgreSQL: set WBD_TEST_AMQP_URL and WBD_TEST_DATABASE_URL, run with -- --include-ignored"]
async fn unacked_message_is_redelivered_after_its_consumer_is_dropped() -> anyhow::Result<()> {
    let url = amqp_url();
    let _shared = BROKER_LOCK.read().await;
    let broker = TestBroker::new(&url).await;
    let store = sqlite_store().await;
    let site = Site::enroll(store.store.as_ref()).await?;
    let queue = open(&broker, broker.settings(), &store.store).await;
    let _relay = queue.spawn_relay(broker.cancel.clone());
    let batch = site.push(store.store.as_ref(), Some(&crate::harness::traceparent())).await?;
    queue.notify();

    let mut first = queue.consumer(CancellationToken::new()).await?;
    let delivery = receive(&mut first, PATIENCE).await.expect("first delivery");
    assert_eq!(batch_id(&delivery.message), batch);
    assert!(!delivery.redelivered);
    // The worker dies mid-work: its channel closes and the broker requeues the message.
    drop(delivery);
    drop(first);

    let mut second = queue.consumer(CancellationToken::new()).await?;
    let again = receive(&mut second, PATIENCE).await.expect("redelivery");
    assert_eq!(batch_id(&again.message), batch);
    assert!(again.redelivered);
    assert_eq!(again.delivery_count, 2);
    assert!(again.traceparent().is_some(), "the trace context survives redelivery");

    // retry_later requeues at once and counts too.
    again.retry_later().await?;
    let third = receive(&mut second, PATIENCE).await.expect("redelivery after retry_later");
    assert_eq!(batch_id(&third.message), batch);
    assert_eq!(third.delivery_count, 3);
    third.ack().await?;
    broker.wait_count(&broker.work_queue(), 0).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and PostgreSQL: set WBD_TEST_AMQP_URL and WBD_TEST_DATABASE_URL, run with -- --include-ignored"]
async fn unparseable_body_is_dead_lettered() -> anyhow::Result<()> {
    let url = amqp_url();
    let _shared = BROKER_LOCK.read().await;
    let broker = TestBroker::new(&url).await;
    let store = sqlite_store().await;
    let site = Site::enroll(store.store.as_ref()).await?;
    let queue = open(&broker, broker.settings(), &store.store).await;
    let _relay = queue.spawn_relay(broker.cancel.clone());

    broker.publish_raw(b"{ this is not an outbox message").await?;
    let healthy = site.push(store.store.as_ref(), None).await?;
    queue.notify();

    let mut consumer = queue.consumer(CancellationToken::new()).await?;
    // The poison message never reaches the worker; the one behind it does.
    let delivery = receive(&mut consumer, PATIENCE).await.expect("the healthy delivery");
    assert_eq!(batch_id(&delivery.message), healthy);
    delivery.ack().await?;

    broker.wait_count(&broker.dead_queue(), 1).await?;
    let dead = broker.drain(&broker.dead_queue()).await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].data, b"{ this is not an outbox message");
    assert_eq!(death_reason(&dead[0].properties).as_deref(), Some("rejected"));
    broker.wait_count(&broker.work_queue(), 0).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and PostgreSQL: set WBD_TEST_AMQP_URL and WBD_TEST_DATABASE_URL, run with -- --include-ignored"]
async fn message_past_the_delivery_limit_is_dead_lettered() -> anyhow::Result<()> {
    let url = amqp_url();
    let _shared = BROKER_LOCK.read().await;
    let broker = TestBroker::new(&url).await;
    let store = sqlite_store().await;
    let site = Site::enroll(store.store.as_ref()).await?;
    let settings = QueueSettings { delivery_limit: 2, ..broker.settings() };
    let queue = open(&broker, settings, &store.store).await;
    let _relay = queue.spawn_relay(broker.cancel.clone());
    let batch = site.push(store.store.as_ref(), None).await?;
    queue.notify();

    let mut consumer = queue.consumer(CancellationToken::new()).await?;
    let mut counts = Vec::new();
    while let Some(delivery) = receive(&mut consumer, Duration::from_secs(3)).await {
        assert_eq!(batch_id(&delivery.message), batch);
        counts.push(delivery.delivery_count);
        anyhow::ensure!(counts.len() <= 10, "the message keeps coming back: {counts:?}");
        delivery.retry_later().await?;
    }
    assert_eq!(counts, vec![1, 2, 3], "delivered delivery_limit + 1 times");
    broker.wait_count(&broker.dead_queue(), 1).await?;
    let dead = broker.drain(&broker.dead_queue()).await?;
    let message: OutboxMessage = serde_json::from_slice(&dead[0].data)?;
    assert_eq!(batch_id(&message), batch);
    assert_eq!(death_reason(&dead[0].properties).as_deref(), Some("delivery_limit"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and PostgreSQL: set WBD_TEST_AMQP_URL and WBD_TEST_DATABASE_URL, run with -- --include-ignored"]
async fn dead_letter_rejects_into_the_dead_queue() -> anyhow::Result<()> {
    let url = amqp_url();
    let _shared = BROKER_LOCK.read().await;
    let broker = TestBroker::new(&url).await;
    let store = sqlite_store().await;
    let site = Site::enroll(store.store.as_ref()).await?;
    let queue = open(&broker, broker.settings(), &store.store).await;
    let _relay = queue.spawn_relay(broker.cancel.clone());
    let batch = site.push(store.store.as_ref(), None).await?;
    queue.notify();

    let mut consumer = queue.consumer(CancellationToken::new()).await?;
    let delivery = receive(&mut consumer, PATIENCE).await.expect("a delivery");
    delivery.dead_letter("tenant was deleted").await?;
    broker.wait_count(&broker.dead_queue(), 1).await?;
    let dead = broker.drain(&broker.dead_queue()).await?;
    let message: OutboxMessage = serde_json::from_slice(&dead[0].data)?;
    assert_eq!(batch_id(&message), batch);
    assert!(receive(&mut consumer, Duration::from_secs(1)).await.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and PostgreSQL: set WBD_TEST_AMQP_URL and WBD_TEST_DATABASE_URL, run with -- --include-ignored"]
async fn concurrent_relays_publish_each_row_once() -> anyhow::Result<()> {
    let url = amqp_url();
    let _shared = BROKER_LOCK.read().await;
    // The case that matters is PostgreSQL (SKIP LOCKED across API processes); SQLite is
    // checked too since it costs little.
    let mut stores = vec![sqlite_store().await];
    stores.push(postgres_store().await);
    for store in stores {
        let broker = TestBroker::new(&url).await;
        let site = Site::enroll(store.store.as_ref()).await?;
        let pushed = site.push_many(store.store.as_ref(), 300).await?;

        // Two "API processes", each with its own queue handle and two relays; small batches so
        // that they really take turns on the outbox.
        let settings = QueueSettings { relay_batch: 16, ..broker.settings() };
        let mut relays = Vec::new();
        let mut queues = Vec::new();
        for _ in 0..2 {
            let queue = open(&broker, settings.clone(), &store.store).await;
            for _ in 0..2 {
                relays.extend(queue.spawn_relay(broker.cancel.clone()));
            }
            queue.notify();
            queues.push(queue);
        }
        eventually("the outbox is empty", || async { Ok(store.store.count_outbox().await? == 0) }).await?;
        broker.cancel.cancel();
        for relay in relays {
            tokio::time::timeout(PATIENCE, relay).await??;
        }

        let on_queue = broker.drain(&broker.work_queue()).await?;
        let ids: Vec<Uuid> = on_queue
            .iter()
            .map(|peeked| serde_json::from_slice::<OutboxMessage>(&peeked.data).map(|m| batch_id(&m)))
            .collect::<Result<_, _>>()?;
        let unique: HashSet<Uuid> = ids.iter().copied().collect();
        assert_eq!(unique, pushed.iter().copied().collect::<HashSet<_>>(), "every row on {}", store.label);
        assert_eq!(ids.len(), pushed.len(), "no row published twice on {}", store.label);
    }
    Ok(())
}

#[tokio::test]
async fn open_fails_clearly_when_the_broker_is_unreachable() -> anyhow::Result<()> {
    let store = sqlite_store().await;
    // Port 1: nothing listens there, the connection is refused at once.
    let kind = QueueKind::Amqp { url: "amqp://guest:s3cret@127.0.0.1:1/%2f".into() };
    let settings = QueueSettings { connect_timeout: Duration::from_secs(5), ..QueueSettings::default() };
    let error = match Queue::open(kind, settings, Arc::clone(&store.store)).await {
        Err(error) => error,
        Ok(_) => panic!("opened a queue on a closed port"),
    };
    assert!(matches!(error, QueueError::Connect { .. } | QueueError::ConnectTimeout { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("127.0.0.1:1"), "names the broker: {text}");
    assert!(!text.contains("s3cret"), "never shows the password: {text}");

    let bad = QueueKind::Amqp { url: "http://not-amqp".into() };
    assert!(matches!(
        Queue::open(bad, QueueSettings::default(), Arc::clone(&store.store)).await,
        Err(QueueError::InvalidUrl { .. })
    ));
    Ok(())
}
