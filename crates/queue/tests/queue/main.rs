//! Integration tests of `wbd-queue`: one binary, run with `cargo test -p wbd-queue`.
//!
//! - `local`: embedded mode on a SQLite store (always runs).
//! - `amqp`: the relay and consumers against the real RabbitMQ named by `WBD_TEST_AMQP_URL`
//!   (e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`), with PostgreSQL too when
//!   `WBD_TEST_DATABASE_URL` is set (e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
//! - `broker_loss`: connections cut (`WBD_TEST_RABBITMQCTL=1`) and the broker restarted
//!   (`WBD_TEST_RABBITMQ_RESTART=1`, stops the machine's broker for a few seconds).

mod amqp;
mod broker_loss;
mod harness;
mod local;
