//! Integration tests of the `bulwark` binary: exit codes, JSON shapes, error messages, the
//! IAM and KMS policy documents it prints, and the demo. Every test runs the real binary.
//! One test binary with a module per concern, so the suite links once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod arguments;
mod demo;
mod estate_errors;
mod files;
mod image;
mod plans;
mod policies;
mod refusals;
mod serve;
mod sessions;
mod support;
mod worker;
