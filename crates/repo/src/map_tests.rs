use std::sync::Arc;

use super::*;
use crate::crypto::Secret;
use crate::format::MANIFEST_VERSION;
use crate::writer::Writer;
use bulwark_storage::MemoryBackend;

fn id(n: u64) -> Id {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&n.to_le_bytes());
    b[31] = 1;
    Id(b)
}

fn repo() -> Repository {
    Repository::init(Arc::new(MemoryBackend::default()), &Secret::KeyFile([5; 32])).unwrap()
}

fn manifest(blocks: u64, map: Vec<MapChunk>) -> Manifest {
    Manifest::for_test(MANIFEST_VERSION, blocks * u64::from(BLOCK_SIZE), Vec::new(), map)
}

/// Builds a map of `changes` on `parent`, stores its chunks, and answers it with the index.
fn build(
    repo: &Repository,
    parent: Option<&Manifest>,
    blocks: u64,
    changes: &[(u64, Option<Id>)],
) -> (Manifest, Index) {
    let index = repo.load_index().unwrap();
    let writer = Writer::new(repo, &index);
    let mut packer = writer.packer().unwrap();
    let mut builder = MapBuilder::new(repo, &index, parent, false);
    for &(i, change) in changes {
        builder.push(i, change).unwrap();
        for (cid, bytes) in builder.take_ready() {
            writer.store_blob(&mut packer, cid, &bytes).unwrap();
        }
    }
    let finished = builder.finish().unwrap();
    let map = finished.chunks;
    for (cid, bytes) in finished.ready {
        writer.store_blob(&mut packer, cid, &bytes).unwrap();
    }
    writer.flush(&mut packer).unwrap();
    writer.finish().unwrap();
    (manifest(blocks, map), repo.load_index().unwrap())
}

fn blocks_of(repo: &Repository, m: &Manifest, index: &Index) -> Vec<(u64, Id)> {
    let mut out = Vec::new();
    repo.for_each_block(m, index, usize::MAX, |w| {
        out.extend_from_slice(w);
        Ok::<(), RepoError>(())
    })
    .unwrap();
    out
}

#[test]
fn chunks_round_trip_and_decoding_checks_before_it_allocates() {
    let runs = vec![
        Run {
            start: 3,
            ids: vec![id(1), id(2)],
        },
        Run {
            start: 9,
            ids: vec![id(3)],
        },
    ];
    let bytes = encode_chunk(&runs);
    assert_eq!(decode_chunk(&bytes, 3, 10).unwrap(), runs);
    assert!(decode_chunk(&bytes, 4, 10)
        .unwrap_err()
        .contains("overlaps or precedes"));
    assert!(decode_chunk(&bytes, 3, 9)
        .unwrap_err()
        .contains("past the chunk's end"));
    assert!(decode_chunk(&bytes[4..], 3, 10).unwrap_err().contains("magic"));
    assert!(decode_chunk(&bytes[..bytes.len() - 1], 3, 10).is_err());
    // A run claiming four billion ids in a chunk of a few bytes: refused before any allocation.
    let mut huge = MAP_MAGIC.to_vec();
    huge.extend_from_slice(&0u64.to_le_bytes());
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(decode_chunk(&huge, 0, u64::MAX)
        .unwrap_err()
        .contains("longer than the chunk"));
    let mut empty = MAP_MAGIC.to_vec();
    empty.extend_from_slice(&5u64.to_le_bytes());
    empty.extend_from_slice(&0u32.to_le_bytes());
    assert!(decode_chunk(&empty, 0, 10).unwrap_err().contains("empty run"));
    assert!(check_chunks(
        &[MapChunk {
            start: 5,
            end: 5,
            id: id(0)
        }],
        10
    )
    .is_err());
}

#[test]
fn a_map_is_built_in_chunks_and_read_back_in_order() {
    let repo = repo();
    // 40,000 blocks in runs of 7 with gaps: several chunks.
    let changes: Vec<(u64, Option<Id>)> = (0..46_000u64).map(|i| (i, (i % 8 != 7).then(|| id(i)))).collect();
    let (m, index) = build(&repo, None, 46_000, &changes);
    assert!(m.map.len() >= 3, "{} chunks", m.map.len());
    let want: Vec<(u64, Id)> = changes.iter().filter_map(|(i, c)| c.map(|c| (*i, c))).collect();
    assert_eq!(blocks_of(&repo, &m, &index), want);
    let c = repo.config().clone();
    crate::decode::check_manifest(&m, &c).unwrap();
    let mut out_of_order = MapBuilder::new(&repo, &index, None, false);
    out_of_order.push(5, Some(id(5))).unwrap();
    assert!(out_of_order.push(5, Some(id(6))).is_err());
}

#[test]
fn an_incremental_map_reuses_the_chunks_no_change_touches() {
    let repo = repo();
    let full: Vec<(u64, Option<Id>)> = (0..50_000u64).map(|i| (i, Some(id(i)))).collect();
    let (parent, _) = build(&repo, None, 60_000, &full);
    assert!(parent.map.len() >= 4);
    let middle = parent.map[1];
    let k = middle.start + 10;
    // Changed: a block of the second chunk, one zeroed in it, one past every chunk.
    let changes = [(k, Some(id(1_000_000))), (k + 1, None), (55_000, Some(id(7)))];
    let (child, index) = build(&repo, Some(&parent), 60_000, &changes);
    assert_eq!(child.map[0], parent.map[0], "untouched: reused as it is");
    assert_ne!(child.map[1].id, middle.id, "touched: rewritten");
    for c in &parent.map[2..] {
        assert!(child.map.contains(c), "{c:?} reused");
    }
    let mut want: Vec<(u64, Id)> = (0..50_000u64)
        .filter(|i| *i != k + 1)
        .map(|i| (i, if i == k { id(1_000_000) } else { id(i) }))
        .collect();
    want.push((55_000, id(7)));
    assert_eq!(blocks_of(&repo, &child, &index), want);
    // Packs are tracked when asked (Object Lock extends them).
    let mut tracked = MapBuilder::new(&repo, &index, Some(&child), true);
    tracked.push(3, Some(id(3))).unwrap();
    assert!(!tracked.finish().unwrap().used_packs.unwrap().is_empty());
}
