//! Broker loss: relay and consumers reconnect by themselves, and nothing accepted is lost.
//!
//! Both tests act on the machine's RabbitMQ through `rabbitmqctl`, so they are ignored unless
//! asked for (`-- --include-ignored`): the first closes only this test's own connections; the
//! second also needs `WBD_TEST_RABBITMQ_RESTART=1`, since it stops and starts the whole broker
//! (holding every other broker test of this binary off). Asked for, they fail, never skip.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wbd_queue::{Consumer, Queue, QueueError, QueueKind};

use crate::harness::{
    BROKER_LOCK, PATIENCE, RESTART_ENV, Site, TestBroker, amqp_url, batch_id, close_connections, eventually,
    foreign_connections, rabbitmqctl, receive, require_opt_in, sqlite_store,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ on this machine (it closes its own connections with rabbitmqctl): set WBD_TEST_AMQP_URL, run with -- --include-ignored"]
async fn relay_and_consumer_reconnect_after_their_connections_are_closed() -> anyhow::Result<()> {
    let url = amqp_url();
    let _shared = BROKER_LOCK.read().await;
    let broker = TestBroker::new(&url).await;
    let store = sqlite_store().await;
    let site = Site::enroll(store.store.as_ref()).await?;
    let queue =
        Queue::open(QueueKind::Amqp { url: url.clone() }, broker.settings(), Arc::clone(&store.store))
            .await?;
    let _relay = queue.spawn_relay(broker.cancel.clone());
    let mut consumer = queue.consumer(CancellationToken::new()).await?;

    let first = site.push(store.store.as_ref(), None).await?;
    queue.notify();
    let delivery = receive(&mut consumer, PATIENCE).await.expect("first delivery");
    assert_eq!(batch_id(&delivery.message), first);
    delivery.ack().await?;

    let held = site.push(store.store.as_ref(), None).await?;
    queue.notify();
    let in_flight = receive(&mut consumer, PATIENCE).await.expect("delivery in flight");
    assert_eq!(batch_id(&in_flight.message), held);

    // Give lapin's handshake time to register every connection with the broker, then cut them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let closed = close_connections(&broker.prefix)?;
    assert!(closed >= 3, "control, relay and consumer connections were closed, got {closed}");

    // The delivery's channel is gone: its ack cannot count, and the broker redelivers it.
    let lost = tokio::time::timeout(PATIENCE, async {
        // lapin notices the close asynchronously; the ack fails once it has.
        tokio::time::sleep(Duration::from_millis(300)).await;
        in_flight.ack().await
    })
    .await?;
    assert!(matches!(lost, Err(QueueError::DeliveryLost { .. })), "{lost:?}");

    let after = site.push(store.store.as_ref(), None).await?;
    queue.notify();
    let mut seen = HashSet::new();
    while seen.len() < 2 {
        let delivery = receive(&mut consumer, PATIENCE).await.expect("deliveries after reconnecting");
        let batch = batch_id(&delivery.message);
        if batch == held {
            assert!(delivery.redelivered, "the held message comes back marked redelivered");
        }
        seen.insert(batch);
        delivery.ack().await?;
    }
    assert_eq!(seen, HashSet::from([held, after]));
    assert!(queue.ready().await, "ready reconnects the control connection");
    broker.wait_count(&broker.work_queue(), 0).await?;
    eventually("the outbox is empty", || async { Ok(store.store.count_outbox().await? == 0) }).await?;
    Ok(())
}

/// Starts the broker again even if the test fails half-way: it is the machine's only broker.
struct StartAppOnDrop;

impl Drop for StartAppOnDrop {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["-q", "start_app"]);
        let _ = rabbitmqctl(&["-q", "await_startup"]);
    }
}

/// Receives and acks until every batch in `expected` was acked once; duplicates are allowed
/// (at-least-once) and counted.
async fn ack_all(
    consumer: &mut Consumer,
    expected: &HashSet<Uuid>,
    acked: &mut HashSet<Uuid>,
) -> anyhow::Result<usize> {
    let mut duplicates = 0;
    while !expected.is_subset(acked) {
        let Some(delivery) = receive(consumer, Duration::from_secs(60)).await else {
            let missing: Vec<_> = expected.difference(acked).collect();
            anyhow::bail!("no delivery within 60 s; never acked: {missing:?}");
        };
        let batch = batch_id(&delivery.message);
        match delivery.ack().await {
            Ok(()) => {
                if !acked.insert(batch) {
                    duplicates += 1;
                }
            }
            // Received just before the connection dropped: it will come again.
            Err(QueueError::DeliveryLost { .. }) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(duplicates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stops this machine's RabbitMQ: needs WBD_TEST_RABBITMQ_RESTART=1, run with -- --include-ignored"]
async fn nothing_is_lost_across_a_broker_restart() -> anyhow::Result<()> {
    let url = amqp_url();
    require_opt_in(RESTART_ENV);
    let _exclusive = BROKER_LOCK.write().await;
    let broker = TestBroker::new(&url).await;
    let store = sqlite_store().await;
    let site = Site::enroll(store.store.as_ref()).await?;
    let queue =
        Queue::open(QueueKind::Amqp { url: url.clone() }, broker.settings(), Arc::clone(&store.store))
            .await?;
    let _relay = queue.spawn_relay(broker.cancel.clone());
    let mut consumer = queue.consumer(CancellationToken::new()).await?;

    // Before: some messages consumed, some published but waiting on the queue.
    let before: HashSet<Uuid> = site.push_many(store.store.as_ref(), 20).await?.into_iter().collect();
    queue.notify();
    let mut acked = HashSet::new();
    for _ in 0..5 {
        let delivery = receive(&mut consumer, PATIENCE).await.expect("a delivery before the restart");
        acked.insert(batch_id(&delivery.message));
        delivery.ack().await?;
    }
    eventually("the outbox is drained to the broker", || async {
        Ok(store.store.count_outbox().await? == 0)
    })
    .await?;

    // Someone else's processes on this broker would see it vanish: refuse rather than disturb.
    let others = foreign_connections(&broker.prefix)?;
    anyhow::ensure!(others.is_empty(), "refusing to restart a broker other clients use: {others:?}");
    let restart = StartAppOnDrop;
    rabbitmqctl(&["-q", "stop_app"])?;
    eventually("readiness reports the broker down", || async { Ok(!queue.ready().await) }).await?;

    // During: accepted while the broker is away, so they wait in the outbox.
    let during: HashSet<Uuid> = site.push_many(store.store.as_ref(), 10).await?.into_iter().collect();
    queue.notify();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(store.store.count_outbox().await?, 10, "nothing leaves the outbox without a confirm");

    drop(restart);
    eventually("readiness reports the broker back", || async { Ok(queue.ready().await) }).await?;

    // After: everything accepted reaches the worker; the relay republishes once leases allow.
    let expected: HashSet<Uuid> = before.union(&during).copied().collect();
    let duplicates = ack_all(&mut consumer, &expected, &mut acked).await?;
    assert_eq!(acked, expected);
    eventually("the outbox is empty", || async { Ok(store.store.count_outbox().await? == 0) }).await?;
    broker.wait_count(&broker.work_queue(), 0).await?;
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("broker restart: {} messages, {duplicates} duplicates\n", expected.len()).as_bytes(),
    );
    Ok(())
}
