//! The JSON examples of docs/repository-format.md are test vectors: each must parse into the
//! type it documents, so the document cannot drift from the code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bulwark_repo::{
    Config, IndexFile, KeyFile, LockFile, Manifest, PackHeader, BLOCK_SIZE, PACK_SIZE, VERSION,
};

const DOC: &str = include_str!("../../../docs/repository-format.md");

fn json_blocks() -> Vec<String> {
    DOC.split("```json\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_owned())
        .collect()
}

#[test]
fn every_json_example_parses_into_its_type() {
    let blocks = json_blocks();
    assert_eq!(
        blocks.len(),
        7,
        "config, two key files, pack header, index, manifest, lock"
    );
    let config: Config = serde_json::from_str(&blocks[0]).unwrap();
    assert_eq!(
        (config.version, config.block_size, config.pack_size),
        (VERSION, BLOCK_SIZE, PACK_SIZE)
    );
    let passphrase: KeyFile = serde_json::from_str(&blocks[1]).unwrap();
    assert_eq!(passphrase.kdf.unwrap().algorithm, "argon2id");
    let key_file: KeyFile = serde_json::from_str(&blocks[2]).unwrap();
    assert!(key_file.kdf.is_none());
    let header: PackHeader = serde_json::from_str(&blocks[3]).unwrap();
    assert_eq!(
        header.blocks[1].offset,
        header.blocks[0].offset + header.blocks[0].length,
        "blocks are contiguous"
    );
    let index: IndexFile = serde_json::from_str(&blocks[4]).unwrap();
    assert_eq!(index.packs[0].blocks[0], header.blocks[0]);
    let point: Manifest = serde_json::from_str(&blocks[5]).unwrap();
    assert_eq!(point.block_count(), 4);
    assert_eq!(
        point.block_ids().map(|(i, _)| i).collect::<Vec<_>>(),
        vec![0, 2, 3],
        "block 1 is zeros"
    );
    let lock: LockFile = serde_json::from_str(&blocks[6]).unwrap();
    assert_eq!(lock.kind, "shared");
}

#[test]
fn the_documented_constants_are_the_codes() {
    assert!(DOC.contains(&format!("\"block_size\": {BLOCK_SIZE}")));
    assert!(DOC.contains(&format!("\"pack_size\": {PACK_SIZE}")));
    assert!(DOC.contains(&format!("version {VERSION}")));
}
