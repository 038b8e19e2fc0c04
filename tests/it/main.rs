//! Integration tests of the `earmark` binary, on generated audio.

// A failed expectation in a test helper is a failed test, not a crash.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod cli;
mod cluster;
mod coverage;
mod crash;
mod monitor;
mod scan;
mod serve;
mod util;
