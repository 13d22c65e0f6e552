//! Bulwark's backup repository. (Being built: see docs/repository-format.md.)
#![deny(missing_docs)]

mod backend;

pub use backend::{conformance, Backend, BackendError, FileKind, LocalBackend, MemoryBackend};
