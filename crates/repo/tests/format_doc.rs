//! The JSON examples of docs/repository-format.md are test vectors: each must parse into the
//! type it documents, so the document cannot drift from the code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bulwark_repo::{
    decode, Config, IndexFile, KeyFile, LockFile, Manifest, PackHeader, BLOCK_SIZE, MANIFEST_VERSION,
    PACK_SIZE, VERSION,
};

mod doc;
use doc::{json_blocks, DOC};

#[test]
fn every_json_example_parses_into_its_type() {
    let blocks = json_blocks();
    assert_eq!(
        blocks.len(),
        9,
        "two configs, two key files, pack header, index, two manifests, lock"
    );
    let config: Config = serde_json::from_str(&blocks[0]).unwrap();
    assert_eq!(
        (config.version, config.block_size, config.pack_size),
        (VERSION, BLOCK_SIZE, PACK_SIZE)
    );
    decode::config(blocks[0].as_bytes()).unwrap();
    let locked = decode::config(blocks[1].as_bytes()).unwrap();
    assert_eq!(locked.object_lock.unwrap().days, 30);
    let passphrase = decode::key_file(blocks[2].as_bytes()).unwrap_err();
    assert!(
        passphrase.contains("wrapped key"),
        "the examples shorten `wrapped`: {passphrase}"
    );
    let passphrase: KeyFile = serde_json::from_str(&blocks[2]).unwrap();
    assert_eq!(passphrase.kdf.unwrap().algorithm, "argon2id");
    let key_file: KeyFile = serde_json::from_str(&blocks[3]).unwrap();
    assert!(key_file.kdf.is_none());
    let header: PackHeader = serde_json::from_str(&blocks[4]).unwrap();
    assert_eq!(
        header.blocks[1].offset,
        header.blocks[0].offset + header.blocks[0].length,
        "blocks are contiguous"
    );
    decode::pack_header(blocks[4].as_bytes(), BLOCK_SIZE, 1 << 20).unwrap();
    let index: IndexFile = decode::index(blocks[5].as_bytes(), BLOCK_SIZE).unwrap();
    assert_eq!(index.packs[0].blocks[0], header.blocks[0]);
    let point: Manifest = decode::manifest(blocks[6].as_bytes(), &config).unwrap();
    assert_eq!(point.block_count(), 4);
    assert_eq!(
        point.block_ids().map(|(i, _)| i).collect::<Vec<_>>(),
        vec![0, 2, 3],
        "block 1 is zeros"
    );
    let v2: Manifest = decode::manifest(blocks[7].as_bytes(), &config).unwrap();
    assert_eq!(v2.version, MANIFEST_VERSION);
    assert_eq!((v2.map[0].start, v2.map[0].end), (0, 4));
    let lock: LockFile = serde_json::from_slice(blocks[8].as_bytes()).unwrap();
    assert_eq!(lock.kind, "shared");
    assert!(lock.boot_id.is_some() && lock.pid_namespace.is_some() && lock.start_time.is_some());
    bulwark_repo::decode_lock(blocks[8].as_bytes()).unwrap();

    // The hex example is the map chunk of the version 1 example's blocks.
    let hex_text: String = DOC
        .split("```hex\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let chunk = hex::decode(hex_text).unwrap();
    let runs = decode::map_chunk(&chunk, 0, 4).unwrap();
    assert_eq!(runs, point.blocks, "the same runs as the version 1 example");
    assert_eq!(bulwark_repo::map::encode_chunk(&runs), chunk);
}

#[test]
fn the_documented_constants_are_the_codes() {
    assert!(DOC.contains(&format!("\"block_size\": {BLOCK_SIZE}")));
    assert!(DOC.contains(&format!("\"pack_size\": {PACK_SIZE}")));
    assert!(DOC.contains(&format!("version {VERSION}")));
}
