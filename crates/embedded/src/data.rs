//! Realistic volume contents, deterministic per volume: what a VM disk holds is a mix of
//! compressible text and binaries, incompressible media, repeated blocks and zeros, so
//! compression and deduplication are exercised as on a real disk.

use bulwark_model::{AccountId, Region, VolumeId};
use bulwark_sim::{Sim, SimError};

const BLOCK: usize = 512 * 1024;
/// Blocks written per call, so a few GiB never sit in memory at once.
const BATCH: usize = 64;

/// Writes `bytes` of generated data at the start of a volume.
pub fn fill(
    sim: &Sim,
    account: &AccountId,
    region: &Region,
    volume: &VolumeId,
    bytes: u64,
) -> Result<(), SimError> {
    let blocks = bytes.div_ceil(BLOCK as u64) as usize;
    let seed = blake3::hash(volume.as_str().as_bytes());
    let mut batch = Vec::with_capacity(BATCH * BLOCK);
    let mut start = 0usize;
    for index in 0..blocks {
        batch.extend_from_slice(&block(seed.as_bytes(), index));
        if batch.len() == BATCH * BLOCK || index + 1 == blocks {
            sim.write_volume(account, region, volume, (start * BLOCK) as u64, &batch)?;
            start = index + 1;
            batch.clear();
        }
    }
    Ok(())
}

/// Block `index` of a volume seeded with `seed`.
fn block(seed: &[u8; 32], index: usize) -> Vec<u8> {
    let mut out = vec![0u8; BLOCK];
    match index % 10 {
        // Text-like: words from a small vocabulary, compressible about 4:1.
        0..=3 => {
            const WORDS: &[&str] = &[
                "backup", "volume", "snapshot", "region", "account", "key", "restore", "worker", "\n", "data",
            ];
            let mut rng = blake3::Hasher::new_keyed(seed);
            rng.update(&index.to_le_bytes());
            // One random byte picks each word; a word averages 6 bytes with its space.
            let mut picks = vec![0u8; BLOCK / 4];
            rng.finalize_xof().fill(&mut picks);
            let mut at = 0;
            for pick in picks.iter().cycle() {
                if at >= BLOCK {
                    break;
                }
                let w = WORDS[*pick as usize % WORDS.len()].as_bytes();
                let n = w.len().min(BLOCK - at);
                out[at..at + n].copy_from_slice(&w[..n]);
                at += n;
                if at < BLOCK {
                    out[at] = b' ';
                    at += 1;
                }
            }
        }
        // Media and compressed files: random.
        4..=6 => {
            let mut rng = blake3::Hasher::new_keyed(seed);
            rng.update(&index.to_le_bytes());
            rng.finalize_xof().fill(&mut out);
        }
        // The same block in many places (a library copied twice, a filled pattern).
        7 => {
            let mut rng = blake3::Hasher::new_keyed(seed);
            rng.update(b"shared");
            rng.finalize_xof().fill(&mut out);
        }
        // Free space.
        _ => {}
    }
    out
}
