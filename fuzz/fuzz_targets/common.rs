//! What several targets share (a module of each, not a target: Cargo.toml lists the targets).

use std::sync::{Arc, OnceLock};

use bulwark_repo::{Repository, Secret};
use bulwark_storage::MemoryBackend;

/// An unencrypted repository in memory, made once: its keys open what the target decodes.
pub fn repo() -> &'static Repository {
    static REPO: OnceLock<Repository> = OnceLock::new();
    REPO.get_or_init(|| {
        Repository::init(Arc::new(MemoryBackend::default()), &Secret::None).expect("a repository in memory")
    })
}
