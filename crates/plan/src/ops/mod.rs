//! One module per operation, each a short function over the [`Builder`](crate::build::Builder)
//! that says which role does what, in which order, citing the seed document it follows.

pub(crate) mod backup;
pub(crate) mod expire;
pub(crate) mod replicate;
pub(crate) mod restore;
pub(crate) mod snapshot;
