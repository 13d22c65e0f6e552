//! Writes the seed inputs of the fuzz targets (fuzz/seeds/TARGET/): valid files of each kind,
//! so that the fuzzer starts from inputs that reach deep into each decoder. Run by hand when
//! a format changes: `BULWARK_WRITE_SEEDS=1 cargo test -p bulwark-repo --test fuzz_seeds --
//! --ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use bulwark_repo::map::encode_chunk;
use bulwark_repo::{Id, Repository, Run, Secret, Writer};
use bulwark_storage::{Backend, FileKind, MemoryBackend};

mod doc;
use doc::json_blocks;

fn seeds() -> PathBuf {
    // At run time: a test binary another clone built into a shared cache keeps its env!.
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../../fuzz/seeds")
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = seeds().join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
#[ignore = "writes the fuzz seeds; run by hand when a format changes"]
fn write_fuzz_seeds() {
    if std::env::var_os("BULWARK_WRITE_SEEDS").is_none() {
        return;
    }
    let docs = json_blocks();
    for (k, json) in docs.iter().enumerate() {
        let j = json.trim();
        let target = if j.contains("\"packs\"") {
            "index"
        } else if j.contains("\"volume_id\"") {
            "manifest"
        } else if j.contains("\"wrapped\"") {
            "key_file"
        } else if j.contains("\"pack_size\"") {
            "config"
        } else if j.contains("\"pid\"") {
            "lock"
        } else if j.contains("\"blocks\"") {
            "pack_header"
        } else {
            continue;
        };
        write(target, &format!("doc-{k}"), j.as_bytes());
    }

    // A real unencrypted repository: a pack of two blocks and a map chunk, its index, and the
    // sealed (compressed) form for the `sealed` target.
    let backend = Arc::new(MemoryBackend::default());
    let repo = Repository::init(backend.clone(), &Secret::None).unwrap();
    let index = repo.load_index().unwrap();
    let writer = Writer::new(&repo, &index);
    let mut packer = writer.packer().unwrap();
    let a: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let b = b"a short last block".to_vec();
    let ia = writer.store(&mut packer, &a).unwrap().unwrap();
    let ib = writer.store(&mut packer, &b).unwrap().unwrap();
    let chunk = encode_chunk(&[
        Run {
            start: 0,
            ids: vec![ia],
        },
        Run {
            start: 2,
            ids: vec![ib, ia],
        },
    ]);
    let chunk_id = repo.keys().block_id(&chunk);
    writer.store_blob(&mut packer, chunk_id, &chunk).unwrap();
    writer.flush(&mut packer).unwrap();
    writer.finish().unwrap();
    let (pack, _) = backend.list(FileKind::Pack).unwrap().remove(0);
    write(
        "pack",
        "two-blocks-and-a-map",
        &backend.get(FileKind::Pack, &pack).unwrap(),
    );
    let mut ranged = 0u64.to_le_bytes().to_vec();
    ranged.extend_from_slice(&4u64.to_le_bytes());
    ranged.extend_from_slice(&chunk);
    write("map_chunk", "three-blocks", &ranged);
    let (index_name, _) = backend.list(FileKind::Index).unwrap().remove(0);
    let sealed_index = backend.get(FileKind::Index, &index_name).unwrap();
    write("sealed", "index", &sealed_index);
    let index_id: Id = index_name.parse().unwrap();
    let index_file = repo.read_index_file(&index_id).unwrap();
    write("index", "real", &serde_json::to_vec(&index_file).unwrap());
    write(
        "pack_header",
        "real",
        &serde_json::to_vec(&bulwark_repo::PackHeader {
            blocks: index_file.packs[0].blocks.clone(),
        })
        .unwrap(),
    );
    let v2 = format!(
        r#"{{"version":2,"volume_id":"vol-1","size":2097152,"block_size":524288,"time":"2026-11-21T23:56:27Z","source":{{"kind":"file","name":"f"}},"map":[{{"start":0,"end":4,"id":"{chunk_id}"}}],"stats":{{"blocks_read":4,"blocks_zero":1,"blocks_new":2,"bytes_stored":100}}}}"#
    );
    write("manifest", "v2", v2.as_bytes());
    write(
        "lock",
        "with-liveness",
        br#"{"kind":"exclusive","host":"w","pid":7,"time":"2026-11-21T23:56:27Z","boot_id":"e104b2b1-701c-44e4-a79c-b333b5e3f7d9","pid_namespace":"pid:[4026531836]","start_time":12345}"#,
    );
}
