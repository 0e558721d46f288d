//! Embedded mode: the SQLite outbox is the queue.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wbd_queue::{Queue, QueueKind, QueueSettings};

use crate::harness::{PATIENCE, Site, TestStore, batch_id, receive, sqlite_store, traceparent};

/// Fast leases and polls, so that expiry-driven behaviour shows within a test.
fn local_settings() -> QueueSettings {
    QueueSettings {
        lease: Duration::from_millis(600),
        poll_interval: Duration::from_millis(100),
        ..QueueSettings::default()
    }
}

async fn local_queue(settings: QueueSettings) -> anyhow::Result<(TestStore, Queue, Site)> {
    let store = sqlite_store().await;
    let site = Site::enroll(store.store.as_ref()).await?;
    let queue = Queue::open(QueueKind::Local, settings, Arc::clone(&store.store)).await?;
    Ok((store, queue, site))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_carry_the_message_and_ack_removes_it() -> anyhow::Result<()> {
    let (store, queue, site) = local_queue(local_settings()).await?;
    let traces: Vec<String> = (0..3).map(|_| traceparent()).collect();
    let mut batches = Vec::new();
    for trace in &traces {
        batches.push(site.push(store.store.as_ref(), Some(trace)).await?);
    }
    let untraced = site.push(store.store.as_ref(), None).await?;
    assert!(queue.ready().await);
    assert!(queue.spawn_relay(CancellationToken::new()).is_none(), "local mode has no relay");

    let cancel = CancellationToken::new();
    let mut consumer = queue.consumer(cancel.clone()).await?;
    for (batch, trace) in batches.iter().zip(&traces) {
        let delivery = receive(&mut consumer, PATIENCE).await.expect("a delivery");
        // Oldest first, each with the trace context of its ingest.
        assert_eq!(batch_id(&delivery.message), *batch);
        assert_eq!(delivery.traceparent(), Some(trace.as_str()));
        assert_eq!(delivery.message.scope(), site.scope);
        assert!(!delivery.redelivered);
        assert_eq!(delivery.delivery_count, 1);
        delivery.ack().await?;
    }
    let delivery = receive(&mut consumer, PATIENCE).await.expect("the untraced delivery");
    assert_eq!(batch_id(&delivery.message), untraced);
    assert_eq!(delivery.traceparent(), None);
    delivery.ack().await?;

    assert_eq!(store.store.count_outbox().await?, 0, "acked messages leave the outbox");
    // Nothing comes back once acked, not even after the lease.
    assert!(receive(&mut consumer, Duration::from_millis(1500)).await.is_none());
    cancel.cancel();
    assert!(consumer.next().await.is_none(), "a cancelled consumer answers None");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_delivery_comes_back_when_its_lease_runs_out() -> anyhow::Result<()> {
    let (store, queue, site) = local_queue(local_settings()).await?;
    let batch = site.push(store.store.as_ref(), Some(&traceparent())).await?;

    let mut first = queue.consumer(CancellationToken::new()).await?;
    let delivery = receive(&mut first, PATIENCE).await.expect("first delivery");
    assert_eq!(batch_id(&delivery.message), batch);
    // The worker dies: neither the delivery nor its consumer settles anything.
    drop(delivery);
    drop(first);

    let mut second = queue.consumer(CancellationToken::new()).await?;
    let again = receive(&mut second, PATIENCE).await.expect("redelivery after the lease");
    assert_eq!(batch_id(&again.message), batch);
    assert!(again.redelivered);
    assert_eq!(again.delivery_count, 2);

    // retry_later behaves the same way: back after the lease, counted.
    again.retry_later().await?;
    let third = receive(&mut second, PATIENCE).await.expect("redelivery after retry_later");
    assert_eq!(batch_id(&third.message), batch);
    assert_eq!(third.delivery_count, 3);
    third.ack().await?;
    assert_eq!(store.store.count_outbox().await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_past_the_delivery_limit_is_dead_lettered() -> anyhow::Result<()> {
    let settings = QueueSettings { delivery_limit: 2, ..local_settings() };
    let (store, queue, site) = local_queue(settings).await?;
    let batch = site.push(store.store.as_ref(), None).await?;

    let mut consumer = queue.consumer(CancellationToken::new()).await?;
    let mut counts = Vec::new();
    // Each delivery fails; once it failed `delivery_limit` + 1 times it must stop coming.
    while let Some(delivery) = receive(&mut consumer, Duration::from_secs(3)).await {
        assert_eq!(batch_id(&delivery.message), batch);
        counts.push(delivery.delivery_count);
        anyhow::ensure!(counts.len() <= 10, "the message keeps coming back: {counts:?}");
        delivery.retry_later().await?;
    }
    assert_eq!(counts, vec![1, 2, 3], "delivered limit + 1 times, like RabbitMQ's x-delivery-limit");
    assert_eq!(store.store.count_outbox().await?, 0);
    assert_eq!(store.store.count_dead_letters().await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_parks_the_message() -> anyhow::Result<()> {
    let (store, queue, site) = local_queue(local_settings()).await?;
    let poison = site.push(store.store.as_ref(), None).await?;
    let healthy = site.push(store.store.as_ref(), None).await?;

    let mut consumer = queue.consumer(CancellationToken::new()).await?;
    let delivery = receive(&mut consumer, PATIENCE).await.expect("a delivery");
    assert_eq!(batch_id(&delivery.message), poison);
    delivery.dead_letter("rule pack cannot evaluate this tenant").await?;
    let delivery = receive(&mut consumer, PATIENCE).await.expect("the next delivery");
    assert_eq!(batch_id(&delivery.message), healthy);
    delivery.ack().await?;

    assert_eq!(store.store.count_dead_letters().await?, 1);
    assert_eq!(store.store.count_outbox().await?, 0);
    assert!(
        receive(&mut consumer, Duration::from_millis(1500)).await.is_none(),
        "a dead letter never returns"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_wakes_an_idle_consumer() -> anyhow::Result<()> {
    // A poll interval far beyond the test: only the notification can wake the consumer.
    let settings = QueueSettings { poll_interval: Duration::from_secs(3600), ..local_settings() };
    let (store, queue, site) = local_queue(settings).await?;
    let cancel = CancellationToken::new();
    let mut consumer = queue.consumer(cancel.clone()).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while let Some(delivery) = consumer.next().await {
            let _ = tx.send(batch_id(&delivery.message)).await;
            let _ = delivery.ack().await;
        }
    });
    // Let it find the queue empty and go to sleep.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Pushed without a notification: a sleeping consumer does not see it. (Had the consumer not
    // slept yet, it would pick the batch up here and the test would fail, never pass by luck.)
    let batch = site.push(store.store.as_ref(), None).await?;
    let early = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
    assert!(early.is_err(), "the consumer was asleep and did not poll: {early:?}");

    queue.notify();
    let woken = tokio::time::timeout(PATIENCE, rx.recv()).await?;
    assert_eq!(woken, Some(batch), "woken by the notification, an hour before its next poll");
    cancel.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_a_waiting_consumer() -> anyhow::Result<()> {
    let settings = QueueSettings { poll_interval: Duration::from_secs(3600), ..local_settings() };
    let (_store, queue, _site) = local_queue(settings).await?;
    let cancel = CancellationToken::new();
    let mut consumer = queue.consumer(cancel.clone()).await?;
    let waiting = tokio::spawn(async move { consumer.next().await.is_none() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    cancel.cancel();
    assert!(tokio::time::timeout(PATIENCE, waiting).await??, "next answers None once cancelled");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_share_the_work_without_overlap() -> anyhow::Result<()> {
    // Long lease: in normal operation no message may reach two consumers. Each consumer holds
    // its first message until every consumer has one: if one of them took all the work, the
    // others would never get theirs and the barrier would not open.
    const CONSUMERS: usize = 3;
    let settings = QueueSettings { lease: Duration::from_secs(60), prefetch: 1, ..local_settings() };
    let (store, queue, site) = local_queue(settings).await?;
    let pushed = site.push_many(store.store.as_ref(), 40).await?;

    let cancel = CancellationToken::new();
    let everyone_has_one = Arc::new(tokio::sync::Barrier::new(CONSUMERS));
    let mut workers = Vec::new();
    for _ in 0..CONSUMERS {
        let mut consumer = queue.consumer(cancel.clone()).await?;
        let barrier = everyone_has_one.clone();
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(delivery) = receive(&mut consumer, Duration::from_secs(2)).await {
                if seen.is_empty() {
                    tokio::time::timeout(PATIENCE, barrier.wait()).await?;
                }
                seen.push(batch_id(&delivery.message));
                delivery.ack().await?;
            }
            anyhow::Ok(seen)
        }));
    }
    let mut seen = Vec::new();
    for worker in workers {
        let got = worker.await??;
        assert!(!got.is_empty(), "every consumer got some of the work");
        seen.extend(got);
    }
    seen.sort();
    let mut expected = pushed.clone();
    expected.sort();
    assert_eq!(seen, expected, "every message exactly once");
    assert_eq!(store.store.count_outbox().await?, 0);
    Ok(())
}

#[tokio::test]
async fn invalid_settings_are_refused_by_name() -> anyhow::Result<()> {
    let store = sqlite_store().await;
    for (settings, name) in [
        (QueueSettings { prefix: String::new(), ..QueueSettings::default() }, "prefix"),
        (QueueSettings { prefix: "x".repeat(250), ..QueueSettings::default() }, "prefix"),
        (QueueSettings { prefetch: 0, ..QueueSettings::default() }, "prefetch"),
        (QueueSettings { delivery_limit: 0, ..QueueSettings::default() }, "delivery_limit"),
        (QueueSettings { lease: Duration::ZERO, ..QueueSettings::default() }, "lease"),
        (QueueSettings { poll_interval: Duration::ZERO, ..QueueSettings::default() }, "poll_interval"),
    ] {
        match Queue::open(QueueKind::Local, settings, Arc::clone(&store.store)).await {
            Err(wbd_queue::QueueError::InvalidSettings { setting, .. }) => assert_eq!(setting, name),
            Err(other) => panic!("expected InvalidSettings({name}), got {other}"),
            Ok(_) => panic!("expected InvalidSettings({name}), got a queue"),
        }
    }
    Ok(())
}
