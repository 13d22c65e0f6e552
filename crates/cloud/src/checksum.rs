//! The checksums of the EBS direct APIs, computed in one place for both sides of the API (the
//! embedded cloud checks them, the data path sends and verifies them): SHA-256 in base64 per
//! block, and CompleteSnapshot's linear checksum, SHA-256 over the raw block checksums in
//! block-index order.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

/// The raw SHA-256 of a block.
pub fn block_digest(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

/// A block's checksum as the EBS direct APIs write it: base64 of its SHA-256.
pub fn block_checksum(data: &[u8]) -> String {
    BASE64.encode(block_digest(data))
}

/// CompleteSnapshot's linear checksum of raw block digests given in block-index order.
pub fn linear_checksum<'a>(digests: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for d in digests {
        context.update(d);
    }
    BASE64.encode(context.finish())
}

/// The raw digest a base64 checksum stands for, if it is valid base64.
pub fn decode(checksum: &str) -> Option<Vec<u8>> {
    BASE64.decode(checksum).ok()
}
