//! End-to-end sessions on the embedded cloud: every scenario of the seed documents, run by the
//! engine with real workers and real bytes, checked byte for byte, with nothing left behind.

mod common;
mod faults;
mod incremental;
mod instances;
mod lost;
mod scenarios;
mod volumes;
