//! Fault tests (next).
