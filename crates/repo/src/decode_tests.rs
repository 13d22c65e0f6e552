use super::*;
use crate::format::{Run, VERSION};

fn entry(n: u8, offset: u32, length: u32) -> BlockEntry {
    BlockEntry {
        id: Id([n; 32]),
        offset,
        length,
        raw_length: BLOCK_SIZE,
    }
}

fn config() -> Config {
    Config {
        version: VERSION,
        id: "00".repeat(16),
        encryption: "aes-256-gcm".into(),
        compression: "zstd".into(),
        block_size: BLOCK_SIZE,
        pack_size: crate::format::PACK_SIZE,
        object_lock: None,
    }
}

fn manifest(size: u64, runs: Vec<Run>) -> Manifest {
    Manifest::for_test(VERSION, size, runs, Vec::new())
}

fn run(start: u64, n: usize) -> Run {
    Run {
        start,
        ids: vec![Id([1; 32]); n],
    }
}

#[test]
fn pack_entries_must_be_inside_the_pack_and_apart() {
    assert!(check_entries(&[entry(1, 0, 100), entry(2, 100, 50)], BLOCK_SIZE, Some(150)).is_ok());
    let err = check_entries(&[entry(1, 0, 100), entry(2, 99, 50)], BLOCK_SIZE, None).unwrap_err();
    assert!(err.contains("overlap"), "{err}");
    let err = check_entries(&[entry(1, 0, 100)], BLOCK_SIZE, Some(99)).unwrap_err();
    assert!(err.contains("past the pack's data"), "{err}");
    // An offset and a length whose sum does not fit in 32 bits.
    let err = check_entries(&[entry(1, u32::MAX, 100)], BLOCK_SIZE, Some(u64::from(u32::MAX))).unwrap_err();
    assert!(err.contains("past"), "{err}");
    let err = check_entries(&[entry(1, 0, u32::MAX)], BLOCK_SIZE, None).unwrap_err();
    assert!(err.contains("sealed length"), "{err}");
    let big = BlockEntry {
        raw_length: BLOCK_SIZE + 1,
        ..entry(1, 0, 10)
    };
    let err = check_entries(&[big], BLOCK_SIZE, None).unwrap_err();
    assert!(err.contains("claims 524289 bytes"), "{err}");
    let empty = BlockEntry {
        raw_length: 0,
        ..entry(1, 0, 10)
    };
    assert!(check_entries(&[empty], BLOCK_SIZE, None).is_err());
}

#[test]
fn an_index_lists_each_pack_once() {
    let id = "ab".repeat(32);
    let json = format!(r#"{{"packs":[{{"id":"{id}","blocks":[]}},{{"id":"{id}","blocks":[]}}]}}"#);
    let err = index(json.as_bytes(), BLOCK_SIZE).unwrap_err();
    assert!(err.contains("listed twice"), "{err}");
    let bad_id = r#"{"packs":[{"id":"zz","blocks":[]}]}"#;
    assert!(index(bad_id.as_bytes(), BLOCK_SIZE).is_err());
}

#[test]
fn manifests_stay_inside_their_volume() {
    let c = config();
    let bs = u64::from(BLOCK_SIZE);
    assert!(check_manifest(&manifest(4 * bs, vec![run(0, 2), run(3, 1)]), &c).is_ok());
    for (what, m, says) in [
        (
            "past the end",
            manifest(4 * bs, vec![run(3, 2)]),
            "past the volume's end",
        ),
        (
            "overlapping",
            manifest(4 * bs, vec![run(0, 2), run(1, 1)]),
            "overlaps",
        ),
        (
            "out of order",
            manifest(4 * bs, vec![run(2, 1), run(0, 1)]),
            "overlaps or precedes",
        ),
        ("empty run", manifest(4 * bs, vec![run(1, 0)]), "empty run"),
        (
            "start overflows",
            manifest(4 * bs, vec![run(u64::MAX, 2)]),
            "past the volume's end",
        ),
        (
            "huge volume",
            manifest(u64::MAX, vec![]),
            "more than the format's",
        ),
    ] {
        let err = check_manifest(&m, &c).unwrap_err();
        assert!(err.contains(says), "{what}: {err}");
    }
    let m = Manifest {
        version: 99,
        ..manifest(bs, vec![])
    };
    assert!(check_manifest(&m, &c)
        .unwrap_err()
        .contains("version 99 is unknown"));
    let m = Manifest {
        block_size: 4096,
        ..manifest(bs, vec![])
    };
    assert!(check_manifest(&m, &c).unwrap_err().contains("block size 4096"));
    // An instance record within the format's limit is kept; a larger one is refused.
    let m = Manifest {
        instance: Some("{}".repeat(crate::format::MAX_INSTANCE_RECORD / 2)),
        ..manifest(bs, vec![])
    };
    assert!(check_manifest(&m, &c).is_ok());
    let m = Manifest {
        instance: Some("x".repeat(crate::format::MAX_INSTANCE_RECORD + 1)),
        ..manifest(bs, vec![])
    };
    assert!(check_manifest(&m, &c).unwrap_err().contains("instance record"));
}

#[test]
fn a_config_cannot_ask_for_huge_buffers() {
    let mut c = config();
    assert!(check_config(&c).is_ok());
    c.block_size = u32::MAX;
    assert!(check_config(&c).unwrap_err().contains("block size"));
    c = config();
    c.pack_size = u32::MAX;
    assert!(check_config(&c).unwrap_err().contains("pack size"));
    c = config();
    c.encryption = "rot13".into();
    assert!(check_config(&c).is_err());
    c = config();
    c.object_lock = Some(crate::format::ObjectLock {
        mode: "forever".into(),
        days: 30,
    });
    assert!(check_config(&c).is_err());
}

fn key_json(memory_kib: u32, passes: u32, lanes: u32) -> String {
    format!(
        r#"{{"kind":"passphrase","kdf":{{"algorithm":"argon2id","memory_kib":{memory_kib},"passes":{passes},"lanes":{lanes},"salt":"{}"}},"wrapped":"{}"}}"#,
        "00".repeat(16),
        "00".repeat(92)
    )
}

#[test]
fn argon2_parameters_are_bounded_and_the_error_names_the_parameter() {
    assert!(key_file(key_json(65536, 1, 1).as_bytes()).is_ok());
    for (json, says) in [
        (
            key_json(4 << 20, 1, 1),
            "memory of 4194304 KiB is above the bound of 1048576 KiB",
        ),
        (key_json(65536, 17, 1), "passes of 17 is above the bound of 16"),
        (
            key_json(65536, 1, 64),
            "parallelism of 64 is above the bound of 16",
        ),
        (key_json(65536, 0, 1), "not valid"),
    ] {
        let err = key_file(json.as_bytes()).unwrap_err();
        assert!(err.contains(says), "{err}");
    }
    let short_wrap = key_json(65536, 1, 1).replace(&"00".repeat(92), "00");
    assert!(key_file(short_wrap.as_bytes())
        .unwrap_err()
        .contains("wrapped key"));
    assert!(key_file(&vec![b' '; MAX_KEY_FILE + 1]).is_err());
    assert!(key_file(br#"{"kind":"kms","wrapped":""}"#).is_err());
}
