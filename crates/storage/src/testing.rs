//! A backend for tests that records every operation and fails or hides the ones a test picks,
//! so that the repository's handling of a misbehaving store can be tested.

use std::sync::{Arc, Mutex};

use crate::{Backend, BackendError, Capabilities, FileKind, Retention};

/// An operation on a backend, as [`Faulty`] records and filters it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `put` or `put_retained`.
    Put(FileKind, String),
    /// `get` or `get_range`.
    Get(FileKind, String),
    /// `list`.
    List(FileKind),
    /// `delete`.
    Delete(FileKind, String),
    /// `set_retention`.
    SetRetention(FileKind, String),
    /// `retention`.
    Retention(FileKind, String),
}

/// Decides the fate of an operation: `Some(error)` fails it.
type Rule = Box<dyn Fn(&Op) -> Option<BackendError> + Send + Sync>;
/// Rewrites the result of a `list`.
type ListFilter = Box<dyn Fn(FileKind, Vec<(String, u64)>) -> Vec<(String, u64)> + Send + Sync>;

/// Wraps a backend; records operations; fails those its rule picks; rewrites listings.
pub struct Faulty {
    inner: Arc<dyn Backend>,
    log: Mutex<Vec<Op>>,
    rule: Mutex<Option<Rule>>,
    list_filter: Mutex<Option<ListFilter>>,
}

impl std::fmt::Debug for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faulty")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Faulty {
    /// A faultless wrapper of `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self {
            inner,
            log: Mutex::new(Vec::new()),
            rule: Mutex::new(None),
            list_filter: Mutex::new(None),
        }
    }

    /// Fails every operation for which `rule` answers an error (replacing an earlier rule).
    pub fn fail_when(&self, rule: impl Fn(&Op) -> Option<BackendError> + Send + Sync + 'static) {
        *lock(&self.rule) = Some(Box::new(rule));
    }

    /// Rewrites the listings (replacing an earlier filter).
    pub fn filter_lists(
        &self,
        filter: impl Fn(FileKind, Vec<(String, u64)>) -> Vec<(String, u64)> + Send + Sync + 'static,
    ) {
        *lock(&self.list_filter) = Some(Box::new(filter));
    }

    /// Every operation so far, in order.
    pub fn log(&self) -> Vec<Op> {
        lock(&self.log).clone()
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    fn check(&self, op: Op) -> Result<(), BackendError> {
        let failure = lock(&self.rule).as_ref().and_then(|rule| rule(&op));
        lock(&self.log).push(op);
        failure.map_or(Ok(()), Err)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Backend for Faulty {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn put(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        self.check(Op::Put(kind, name.to_owned()))?;
        self.inner.put(kind, name, data)
    }

    fn get(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.check(Op::Get(kind, name.to_owned()))?;
        self.inner.get(kind, name)
    }

    fn get_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, BackendError> {
        self.check(Op::Get(kind, name.to_owned()))?;
        self.inner.get_range(kind, name, offset, length)
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(String, u64)>, BackendError> {
        self.check(Op::List(kind))?;
        let listed = self.inner.list(kind)?;
        Ok(match lock(&self.list_filter).as_ref() {
            Some(filter) => filter(kind, listed),
            None => listed,
        })
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        self.check(Op::Delete(kind, name.to_owned()))?;
        self.inner.delete(kind, name)
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn put_retained(
        &self,
        kind: FileKind,
        name: &str,
        data: &[u8],
        retention: Retention,
    ) -> Result<(), BackendError> {
        self.check(Op::Put(kind, name.to_owned()))?;
        self.inner.put_retained(kind, name, data, retention)
    }

    fn set_retention(&self, kind: FileKind, name: &str, retention: Retention) -> Result<(), BackendError> {
        self.check(Op::SetRetention(kind, name.to_owned()))?;
        self.inner.set_retention(kind, name, retention)
    }

    fn retention(&self, kind: FileKind, name: &str) -> Result<Option<Retention>, BackendError> {
        self.check(Op::Retention(kind, name.to_owned()))?;
        self.inner.retention(kind, name)
    }
}
