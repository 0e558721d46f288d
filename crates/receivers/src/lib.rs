//! Local stand-ins for the APIs Writeback Doctor delivers to, for tests.
//!
//! Each receiver is a real HTTP server on 127.0.0.1 that answers as the real API does (ids,
//! error shapes, 429 with `Retry-After`), keeps what it was sent (tickets, notes, statuses,
//! raw requests) and can be told to misbehave ([`Faults`]): refuse, answer slowly, fail the
//! next N requests, rate-limit.
