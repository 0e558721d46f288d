//! Integration tests of `wbd-queue`: one binary, run with `cargo test -p wbd-queue`.
//!
//! - `local`: embedded mode on a SQLite store (always runs).
//! - `amqp`: the relay and consumers against the real RabbitMQ named by `WBD_TEST_AMQP_URL`
//!   (e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`), on SQLite and on the PostgreSQL named by
//!   `WBD_TEST_DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
//! - `broker_loss`: connections cut (with `rabbitmqctl`) and the broker restarted
//!   (`WBD_TEST_RABBITMQ_RESTART=1`, stops the machine's broker for a few seconds).
//!
//! The `amqp` and `broker_loss` tests show as ignored unless the run asks for them
//! (`-- --include-ignored`); asked for, they fail when a service or variable is missing.

mod amqp;
mod broker_loss;
mod harness;
mod local;
