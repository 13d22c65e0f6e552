//! The incremental-forever benchmark of `docs/benchmarks.md`: one instance with one large
//! volume in the embedded cloud, backed up through a worker in the backup account (its snapshot
//! shared and re-created there), then 1% of the volume's blocks rewritten and backed up again.
//! Prints what each backup read and how long it took.
//!
//! `cargo run --release -p bulwark-embedded --example incremental-bench -- DIR [SIZE_GIB [DATA_GIB [CHANGED_PERCENT]]]`
//! (defaults 64, 32, 1). DIR must not exist; it holds the embedded cloud and the repository
//! (about 0.7 × DATA_GIB of blocks in the cloud, and as much again in the repository).
#![allow(clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::time::Instant;

use bulwark_embedded::{all_operations, plans, DataSize, Embedded, Grants};
use bulwark_engine::SessionReport;
use bulwark_model::Estate;
use bulwark_plan::{Operation, Placement};

const BLOCK: u64 = 512 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.first()
            .expect("usage: incremental-bench DIR [SIZE_GIB [DATA_GIB [CHANGED_PERCENT]]]"),
    );
    let number = |i: usize, default: u64| args.get(i).map_or(default, |a| a.parse().expect("a number"));
    let (size_gib, data_gib, percent) = (number(1, 64), number(2, 32), number(3, 1));

    // The example estate, its database instance given one volume of SIZE_GIB.
    let text = include_str!("../../../examples/estate.toml");
    let volumes = r#"  { id = "vol-0dddddddddddddddd", size_gib = 16, key = "arn:aws:kms:us-east-1:222222222222:key/22222222-aaaa-4bbb-8ccc-000000000001" },
  { id = "vol-0eeeeeeeeeeeeeeee", size_gib = 500, key = "arn:aws:kms:us-east-1:222222222222:key/22222222-aaaa-4bbb-8ccc-000000000001" },"#;
    assert!(text.contains(volumes), "the example estate's database volumes");
    let one = format!(
        r#"  {{ id = "vol-0dddddddddddddddd", size_gib = {size_gib}, key = "arn:aws:kms:us-east-1:222222222222:key/22222222-aaaa-4bbb-8ccc-000000000001" }},"#
    );
    let estate = Estate::parse("bench.toml", &text.replace(volumes, &one)).expect("the estate parses");
    let grants = Grants::from_plans(&estate, &plans(&estate, &all_operations(&estate)));

    let t = Instant::now();
    let world = Embedded::create(&dir, &estate, &grants, DataSize { bytes_per_volume: 0 })
        .expect("the embedded estate builds");
    let instance = estate
        .instances
        .iter()
        .find(|i| i.id.as_str() == "i-0fedcba9876543210")
        .expect("db");
    let volume = &instance.volumes[0].id;
    // The generator's mix: 40% text, 30% random, 10% one shared block, 20% zeros.
    bulwark_embedded::fill(
        &world.sim,
        &instance.account,
        &instance.region,
        volume,
        data_gib << 30,
    )
    .expect("the volume is filled");
    println!(
        "built: one {size_gib} GiB volume, {data_gib} GiB of data written, in {:.0} s",
        t.elapsed().as_secs_f64()
    );

    let op = Operation::Backup {
        instance: "i-0fedcba9876543210".parse().expect("id"),
        workers: Some(Placement::BackupAccount),
        file_index: false,
    };
    let engine = world.engine();
    let run = |what: &str| -> (SessionReport, f64) {
        let t = Instant::now();
        let report = engine.run_operation(&op).expect("the backup succeeds");
        let secs = t.elapsed().as_secs_f64();
        for b in &report.backups {
            println!(
                "{what}: {secs:.1} s; {} read, {} blocks read, {} changed, {} MiB stored",
                b.read,
                b.blocks_read,
                b.blocks_changed.map_or_else(|| "-".into(), |c| c.to_string()),
                b.bytes_stored >> 20
            );
        }
        (report, secs)
    };
    let (_, full) = run("first backup");

    // PERCENT of the volume's blocks rewritten with new bytes, spread evenly over it (written
    // and never-written parts alike), as a day of a database's writes might.
    let blocks = (size_gib << 30) / BLOCK;
    let changed = blocks * percent / 100;
    let step = blocks / changed.max(1);
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut data = vec![0u8; BLOCK as usize];
    for n in 0..changed {
        for b in data.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        world
            .sim
            .write_volume(
                &instance.account,
                &instance.region,
                volume,
                n * step * BLOCK,
                &data,
            )
            .expect("the volume is written");
    }
    println!("{changed} of {blocks} blocks rewritten ({percent}%)");
    let (_, incremental) = run("second backup");
    println!(
        "second backup's time: {:.2}% of the first's ({incremental:.1} s against {full:.1} s)",
        100.0 * incremental / full
    );
}
