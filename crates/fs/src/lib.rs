//! Read-only partition tables and filesystems, for file-level recovery (docs below).
#![deny(missing_docs)]
#![allow(dead_code, unused_imports)]

mod bytes;
mod cache;
mod crc;
mod device;
mod error;
mod model;
mod fat;
mod part;
mod detect;
mod xfs;
mod ext4;
mod ntfs;
