//! Decoders of everything read from the store. The store is not trusted: whoever can write the
//! bucket can put any bytes there. So every decoder checks before it uses: lengths and offsets
//! with checked arithmetic, sizes within the format's limits before anything is allocated for
//! them, versions it knows, entries that do not overlap. None panics, whatever the input (the
//! fuzz targets in `fuzz/` run them on arbitrary bytes). Each answers why it refused, and the
//! caller adds which file.

use std::collections::HashSet;

use crate::crypto::{KeyFile, SEAL_OVERHEAD};
use crate::format::{BlockEntry, Config, IndexFile, Manifest, PackHeader, BLOCK_SIZE, MANIFEST_VERSION};
use crate::id::Id;

/// Largest volume a restore point may describe: 1 PiB, sixteen times EBS's largest volume, and
/// far below where block arithmetic could overflow.
pub const MAX_VOLUME_SIZE: u64 = 1 << 50;

/// Smallest and largest pack target size a config may ask for: each backup thread buffers a
/// whole pack, so a config cannot be allowed to ask for gigabytes.
pub const PACK_SIZE_RANGE: std::ops::RangeInclusive<u32> = (1 << 20)..=(128 << 20);

/// Bounds on the argon2id parameters of a key file: a key file is read before anything is
/// authenticated, so whoever can write `keys/` could otherwise make every client spend
/// terabytes of memory or hours of CPU. Bulwark writes 64 MiB, one pass, one lane.
pub const ARGON2_MAX_MEMORY_KIB: u32 = 1 << 20;
/// See [`ARGON2_MAX_MEMORY_KIB`].
pub const ARGON2_MAX_PASSES: u32 = 16;
/// See [`ARGON2_MAX_MEMORY_KIB`].
pub const ARGON2_MAX_LANES: u32 = 16;

/// Largest key file read: a key file is a few hundred bytes of JSON.
pub const MAX_KEY_FILE: usize = 64 * 1024;

/// The largest sealed length of a block of `block_size` bytes: zstd's bound for incompressible
/// data and the AEAD's nonce and tag.
pub fn max_sealed_len(block_size: u32) -> u64 {
    zstd::zstd_safe::compress_bound(block_size as usize) as u64 + SEAL_OVERHEAD as u64
}

/// Decodes `config` (its JSON, opened).
pub fn config(json: &[u8]) -> Result<Config, String> {
    let config: Config = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    check_config(&config)?;
    Ok(config)
}

/// Checks a config's parameters. The version is checked by the caller, which says which
/// versions this program reads.
pub fn check_config(config: &Config) -> Result<(), String> {
    if config.encryption != "aes-256-gcm" && config.encryption != "none" {
        return Err(format!(
            "encryption {:?} is unknown (aes-256-gcm or none)",
            config.encryption
        ));
    }
    if config.compression != "zstd" {
        return Err(format!("compression {:?} is unknown (zstd)", config.compression));
    }
    if config.block_size != BLOCK_SIZE {
        return Err(format!(
            "block size {} is not the format's {BLOCK_SIZE}",
            config.block_size
        ));
    }
    if !PACK_SIZE_RANGE.contains(&config.pack_size) {
        return Err(format!(
            "pack size {} is outside {}..={} bytes",
            config.pack_size,
            PACK_SIZE_RANGE.start(),
            PACK_SIZE_RANGE.end()
        ));
    }
    if let Some(lock) = &config.object_lock {
        lock.check()?;
    }
    Ok(())
}

/// Decodes a key file, refusing parameters outside the bounds rather than obeying them.
pub fn key_file(bytes: &[u8]) -> Result<KeyFile, String> {
    if bytes.len() > MAX_KEY_FILE {
        return Err(format!(
            "{} bytes, more than a key file's {MAX_KEY_FILE}",
            bytes.len()
        ));
    }
    let file: KeyFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    match (file.kind.as_str(), &file.kdf) {
        ("passphrase", Some(kdf)) => {
            if kdf.algorithm != "argon2id" {
                return Err(format!(
                    "key derivation {:?} is unknown (argon2id)",
                    kdf.algorithm
                ));
            }
            let bound = |what: &str, value: u32, max: u32, unit: &str| {
                if value > max {
                    Err(format!(
                        "argon2 {what} of {value}{unit} is above the bound of {max}{unit}: refused, not \
                         obeyed (bulwark writes far less; a key file asking for more was not written by it)"
                    ))
                } else {
                    Ok(())
                }
            };
            bound("memory", kdf.memory_kib, ARGON2_MAX_MEMORY_KIB, " KiB")?;
            bound("passes", kdf.passes, ARGON2_MAX_PASSES, "")?;
            bound("parallelism", kdf.lanes, ARGON2_MAX_LANES, "")?;
            if kdf.passes == 0 || kdf.lanes == 0 || kdf.memory_kib < 8 * kdf.lanes {
                return Err(format!(
                    "argon2 parameters {} KiB, {} passes, {} lanes are not valid",
                    kdf.memory_kib, kdf.passes, kdf.lanes
                ));
            }
            let salt = hex::decode(&kdf.salt).map_err(|_| "the salt is not hex".to_owned())?;
            if !(8..=64).contains(&salt.len()) {
                return Err(format!("a salt of {} bytes (8 to 64 expected)", salt.len()));
            }
        }
        ("passphrase", None) => return Err("a passphrase key without its kdf".into()),
        ("key-file", _) => {}
        (kind, _) => return Err(format!("key kind {kind:?} is unknown (passphrase or key-file)")),
    }
    // nonce, the 64-byte repository key, the tag.
    let wrapped_len = 2 * (12 + 64 + 16);
    if file.wrapped.len() != wrapped_len || hex::decode(&file.wrapped).is_err() {
        return Err(format!(
            "the wrapped key is not {wrapped_len} hex digits (a 64-byte key, sealed)"
        ));
    }
    Ok(file)
}

/// Checks the block entries of one pack: each within a block's limits, inside `end` (the start
/// of the pack's header, when known) and none overlapping another.
pub fn check_entries(entries: &[BlockEntry], block_size: u32, end: Option<u64>) -> Result<(), String> {
    let max_sealed = max_sealed_len(block_size);
    let mut spans: Vec<(u64, u64)> = Vec::with_capacity(entries.len());
    for e in entries {
        if e.raw_length == 0 || e.raw_length > block_size {
            return Err(format!(
                "block {} claims {} bytes (1 to {block_size} expected)",
                e.id.short(),
                e.raw_length
            ));
        }
        if e.length == 0 || u64::from(e.length) > max_sealed {
            return Err(format!(
                "block {} claims a sealed length of {} (at most {max_sealed})",
                e.id.short(),
                e.length
            ));
        }
        let stop = u64::from(e.offset) + u64::from(e.length);
        if stop > u64::from(u32::MAX) {
            return Err(format!(
                "block {} at {}..{stop} is past the largest pack offset",
                e.id.short(),
                e.offset
            ));
        }
        if let Some(end) = end.filter(|end| stop > *end) {
            return Err(format!(
                "block {} at {}..{stop} is past the pack's data, which ends at {end}",
                e.id.short(),
                e.offset
            ));
        }
        spans.push((u64::from(e.offset), stop));
    }
    spans.sort_unstable();
    if let Some(w) = spans.windows(2).find(|w| w[1].0 < w[0].1) {
        return Err(format!(
            "blocks at {}..{} and {}..{} overlap",
            w[0].0, w[0].1, w[1].0, w[1].1
        ));
    }
    Ok(())
}

/// Decodes a pack header (its JSON, opened); `data_len` is where the header begins.
pub fn pack_header(json: &[u8], block_size: u32, data_len: u64) -> Result<Vec<BlockEntry>, String> {
    let header: PackHeader = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    check_entries(&header.blocks, block_size, Some(data_len))?;
    Ok(header.blocks)
}

/// Decodes an index file (its JSON, opened).
pub fn index(json: &[u8], block_size: u32) -> Result<IndexFile, String> {
    let file: IndexFile = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let mut seen: HashSet<Id> = HashSet::with_capacity(file.packs.len());
    for pack in &file.packs {
        if !seen.insert(pack.id) {
            return Err(format!("pack {} is listed twice", pack.id));
        }
        check_entries(&pack.blocks, block_size, None).map_err(|e| format!("pack {}: {e}", pack.id))?;
    }
    Ok(file)
}

/// Decodes a restore point manifest (its JSON, opened) of a repository with `config`.
pub fn manifest(json: &[u8], config: &Config) -> Result<Manifest, String> {
    let manifest: Manifest = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    check_manifest(&manifest, config)?;
    Ok(manifest)
}

/// Checks a manifest against the format's limits and its repository.
pub fn check_manifest(m: &Manifest, config: &Config) -> Result<(), String> {
    match m.version {
        1 if m.map.is_empty() => {}
        2 if m.blocks.is_empty() => {}
        1 | 2 => {
            return Err(format!(
                "a version {} manifest with both inline runs and map chunks",
                m.version
            ))
        }
        v => {
            return Err(format!(
                "manifest version {v} is unknown: this bulwark reads versions 1 to {MANIFEST_VERSION}"
            ))
        }
    }
    if m.block_size != config.block_size {
        return Err(format!(
            "block size {} is not the repository's {}",
            m.block_size, config.block_size
        ));
    }
    if m.size > MAX_VOLUME_SIZE {
        return Err(format!(
            "a volume of {} bytes, more than the format's {MAX_VOLUME_SIZE}",
            m.size
        ));
    }
    if m.instance
        .as_ref()
        .is_some_and(|r| r.len() > crate::format::MAX_INSTANCE_RECORD)
    {
        return Err(format!(
            "an instance record of more than the format's {} bytes",
            crate::format::MAX_INSTANCE_RECORD
        ));
    }
    if let Some(files) = &m.files {
        crate::file_index::check(files)?;
    }
    check_runs(&m.blocks, m.block_count())?;
    crate::map::check_chunks(&m.map, m.block_count())
}

/// Decodes a chunk of a restore point's file index.
pub fn file_index_chunk(bytes: &[u8]) -> Result<Vec<crate::file_index::FileEntry>, String> {
    crate::file_index::decode_chunk(bytes)
}

/// Decodes a block map chunk listed as `start..end`.
pub fn map_chunk(bytes: &[u8], start: u64, end: u64) -> Result<Vec<crate::format::Run>, String> {
    crate::map::decode_chunk(bytes, start, end)
}

/// Checks runs of blocks: not empty, in increasing order, not overlapping, inside `blocks`.
pub fn check_runs(runs: &[crate::format::Run], blocks: u64) -> Result<(), String> {
    let mut next = 0u64;
    for run in runs {
        let len = run.ids.len() as u64;
        let end = run.start.checked_add(len).filter(|end| *end <= blocks);
        match end {
            _ if len == 0 => return Err(format!("an empty run at block {}", run.start)),
            _ if run.start < next => {
                return Err(format!(
                    "the run at block {} overlaps or precedes the one ending at {next}",
                    run.start
                ))
            }
            None => {
                return Err(format!(
                    "the run of {len} blocks at block {} is past the volume's end ({blocks} blocks)",
                    run.start
                ))
            }
            Some(end) => next = end,
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
