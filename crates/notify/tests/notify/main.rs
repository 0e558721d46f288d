//! Integration tests of wbd-notify against local receivers.
