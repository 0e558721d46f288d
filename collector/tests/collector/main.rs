//! Integration tests of wbd-collector against real peers on loopback.
