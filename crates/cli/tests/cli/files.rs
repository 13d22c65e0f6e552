//! `bulwark files ls|get`: files of a GPT disk with an ext4 partition, read from a snapshot
//! through the embedded cloud's EBS direct APIs, from a backup in the estate's repository, and
//! from a local repository, compared with the tree the disk was built from.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::support::*;

/// Mode, size and modification time the test gives its files, checked on the way back.
const BIG_MODE: u32 = 0o600;
const MTIME: i64 = 1_700_000_000;

/// Runs an image tool (from Debian's packages, which scripts/fs-tools installs).
fn tool(name: &str, args: &[&str]) {
    let path = format!("{}:/usr/sbin:/sbin", std::env::var("PATH").unwrap_or_default());
    let out = Command::new(name)
        .args(args)
        .env("PATH", path)
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e}; run scripts/fs-tools to install the image tools"));
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tree with a file of random bytes, a small file, a symbolic link and a directory of many
/// entries; and an 80 MiB GPT disk whose partition 1 is an ext4 filesystem made from it.
fn disk(dir: &Path) -> (PathBuf, PathBuf) {
    disk_with_hosts(dir, "127.0.0.1 localhost\n")
}

/// [`disk`] with `hosts` as /etc/hosts.
fn disk_with_hosts(dir: &Path, hosts: &str) -> (PathBuf, PathBuf) {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::create_dir_all(tree.join("home/u/many")).unwrap();
    std::fs::write(tree.join("etc/hosts"), hosts).unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(tree.join("home/u/big.bin"), &big).unwrap();
    std::fs::set_permissions(
        tree.join("home/u/big.bin"),
        std::fs::Permissions::from_mode(BIG_MODE),
    )
    .unwrap();
    std::os::unix::fs::symlink("../../etc/hosts", tree.join("home/u/hosts-link")).unwrap();
    for i in 0..300 {
        std::fs::write(tree.join(format!("home/u/many/f{i:03}")), format!("{i}\n")).unwrap();
    }
    let stamp = format!("@{MTIME}");
    tool(
        "touch",
        &["-h", "-d", &stamp, tree.join("home/u/big.bin").to_str().unwrap()],
    );
    tool(
        "touch",
        &[
            "-h",
            "-d",
            &stamp,
            tree.join("home/u/hosts-link").to_str().unwrap(),
        ],
    );

    let fs_image = dir.join("root.ext4");
    std::fs::File::create(&fs_image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    tool(
        "mke2fs",
        &[
            "-q",
            "-t",
            "ext4",
            "-L",
            "root",
            "-d",
            tree.to_str().unwrap(),
            fs_image.to_str().unwrap(),
        ],
    );
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk).unwrap().set_len(80 << 20).unwrap();
    tool(
        "sgdisk",
        &["-o", "-n", "1:2048:+64M", "-t", "1:8300", disk.to_str().unwrap()],
    );
    let mut bytes = std::fs::read(&disk).unwrap();
    let fs_bytes = std::fs::read(&fs_image).unwrap();
    bytes[1 << 20..(1 << 20) + fs_bytes.len()].copy_from_slice(&fs_bytes);
    std::fs::write(&disk, bytes).unwrap();
    (tree, disk)
}

/// The estate in a new embedded cloud in `data`.
fn init_embedded(data: &str) {
    let (code, _, stderr) = bulwark(&[
        "embedded",
        "init",
        "--estate",
        estate_path(),
        "--data-dir",
        data,
        "--data-mib",
        "1",
    ]);
    assert_eq!(code, EXIT_OK, "{stderr}");
}

/// `disk` written over the web instance's root volume, as a program on it would.
fn write_root(data: &str, disk: &Path) {
    let (code, _, stderr) = bulwark(&[
        "embedded",
        "write",
        "--data-dir",
        data,
        "--volume",
        "vol-0aaaaaaaaaaaaaaaa",
        "--file",
        disk.to_str().unwrap(),
    ]);
    assert_eq!(code, EXIT_OK, "{stderr}");
}

/// Runs `bulwark files ARGS --json` and parses the listing.
fn ls(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["files", "ls", "--json"];
    all.extend(args);
    let v = bulwark_json(&all, EXIT_OK);
    v.as_array().cloned().unwrap_or_else(|| panic!("not a list: {v}"))
}

fn names(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

/// What a source gives back is what the tree holds: partitions, listings, metadata, bytes.
fn check_source(source: &[&str], tree: &Path, out: &Path) {
    let root = ls(source);
    assert_eq!(root.len(), 1, "one partition: {root:?}");
    let p = &root[0]["partition"];
    assert_eq!(p["number"], 1);
    assert_eq!(p["filesystem"], "ext4");
    assert_eq!(p["label"], "root");
    assert_eq!(p["start"], 1 << 20);

    let home = ls(&[source, &["/1/home/u"]].concat());
    assert_eq!(names(&home), ["big.bin", "hosts-link", "many"]);
    let big = &home[0];
    assert_eq!(big["kind"], "file");
    assert_eq!(big["size"], 3_000_000);
    assert_eq!(big["mode"], "0600");
    assert_eq!(
        big["mtime"].as_str().unwrap(),
        chrono::DateTime::from_timestamp(MTIME, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );
    assert_eq!(home[1]["kind"], "symlink");
    assert_eq!(home[1]["target"], "../../etc/hosts");
    assert_eq!(ls(&[source, &["/1/home/u/many"]].concat()).len(), 300);

    let _ = std::fs::remove_dir_all(out);
    let mut get = vec!["files", "get"];
    get.extend(source);
    get.extend(["/1/home", "/1/etc/hosts", "--to", out.to_str().unwrap()]);
    let (code, _, stderr) = bulwark(&get);
    assert_eq!(code, EXIT_OK, "{stderr}");
    let got = std::fs::read(out.join("home/u/big.bin")).unwrap();
    assert!(
        got == std::fs::read(tree.join("home/u/big.bin")).unwrap(),
        "big.bin differs"
    );
    let meta = std::fs::metadata(out.join("home/u/big.bin")).unwrap();
    assert_eq!(meta.mode() & 0o7777, BIG_MODE);
    assert_eq!(meta.mtime(), MTIME);
    assert_eq!(
        std::fs::read_link(out.join("home/u/hosts-link")).unwrap(),
        PathBuf::from("../../etc/hosts")
    );
    assert_eq!(
        std::fs::read_to_string(out.join("hosts")).unwrap(),
        "127.0.0.1 localhost\n"
    );
    assert_eq!(std::fs::read_dir(out.join("home/u/many")).unwrap().count(), 300);

    // What is not there says so, and exits 1.
    let mut missing = vec!["files", "ls"];
    missing.extend(source);
    missing.push("/1/home/nobody");
    let (code, _, stderr) = bulwark(&missing);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("no such file or directory: /1/home/nobody"),
        "{stderr}"
    );
    missing.pop();
    missing.push("/2/etc");
    let (code, _, stderr) = bulwark(&missing);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no partition 2"), "{stderr}");
}

#[test]
fn files_come_back_from_a_snapshot_a_backup_and_a_local_repository() {
    let dir = DataDir::new("files");
    std::fs::create_dir_all(&dir.0).unwrap();
    let (tree, disk) = disk(&dir.0);
    let data = dir.0.join("cloud");
    let data = data.to_str().unwrap();
    init_embedded(data);
    write_root(data, &disk);

    // A snapshot, read through the EBS direct APIs (its volume is under a customer key).
    let report = bulwark_json(
        &with_estate(
            &["run", "snapshot"],
            &["--data-dir", data, "--instance", WEB, "--json"],
        ),
        EXIT_OK,
    );
    let kept = array(&report, "kept", "snapshot report");
    let snapshot = kept
        .iter()
        .find(|k| k["what"].as_str().unwrap_or("").contains("vol-0aaaaaaaaaaaaaaaa"))
        .and_then(|k| k["id"].as_str())
        .unwrap_or_else(|| panic!("no snapshot of vol-0aaaaaaaaaaaaaaaa in {report}"))
        .to_owned();
    assert!(snapshot.starts_with("snap-"), "{report}");
    let estate = estate_path();
    check_source(
        &["--estate", estate, "--data-dir", data, "--snapshot", &snapshot],
        &tree,
        &dir.0.join("from-snapshot"),
    );
    let (code, _, stderr) = bulwark(&[
        "files",
        "ls",
        "--estate",
        estate,
        "--data-dir",
        data,
        "--snapshot",
        "snap-0123456789abcdef0",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is not a restore point Bulwark made"), "{stderr}");

    // A backup without workers, read from the estate's repository as the repository role.
    let point = backup_root(data, &["--workers", "none"]);
    check_source(
        &["--estate", estate, "--data-dir", data, "--point", &point[..12]],
        &tree,
        &dir.0.join("from-backup"),
    );

    // A local repository, and a tar stream of one file.
    let repo = dir.0.join("repo");
    let repo = repo.to_str().unwrap();
    let (code, _, stderr) = bulwark(&["repo", "init", "--repo", repo, "--no-encryption"]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    let backup = bulwark_json(
        &[
            "image",
            "backup",
            "--repo",
            repo,
            "--source",
            disk.to_str().unwrap(),
            "--volume-id",
            "disk",
            "--json",
        ],
        EXIT_OK,
    );
    let id = backup["manifest"]["id"].as_str().unwrap().to_owned();
    check_source(&["--repo", repo, "--point", &id], &tree, &dir.0.join("from-repo"));
    let tar = dir.0.join("hosts.tar");
    let (code, _, stderr) = bulwark(&[
        "files",
        "get",
        "--repo",
        repo,
        "--point",
        &id,
        "/1/etc/hosts",
        "--tar",
        tar.to_str().unwrap(),
    ]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    let unpacked = dir.0.join("untar");
    std::fs::create_dir_all(&unpacked).unwrap();
    tool(
        "tar",
        &["-xf", tar.to_str().unwrap(), "-C", unpacked.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read_to_string(unpacked.join("hosts")).unwrap(),
        "127.0.0.1 localhost\n"
    );
}

/// The restore point of the web root volume that `bulwark run backup ARGS --json` reports.
fn backup_root(data: &str, args: &[&str]) -> String {
    let mut rest = vec!["--data-dir", data, "--instance", WEB, "--json"];
    rest.extend(args);
    let report = bulwark_json(&with_estate(&["run", "backup"], &rest), EXIT_OK);
    array(&report, "restore_points", "backup report")
        .iter()
        .find(|p| p["volume"] == "vol-0aaaaaaaaaaaaaaaa")
        .and_then(|p| p["point"].as_str())
        .unwrap_or_else(|| panic!("no restore point of vol-0aaaaaaaaaaaaaaaa in {report}"))
        .to_owned()
}

/// Ids of the restore points a version of a found path is in.
fn points_of(version: &Value) -> Vec<String> {
    array(version, "points", "version")
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn files_find_says_which_restore_points_hold_a_file_and_in_what_version() {
    let dir = DataDir::new("files-find");
    std::fs::create_dir_all(&dir.0).unwrap();
    let (_, disk) = disk(&dir.0);
    let data = dir.0.join("cloud");
    let data = data.to_str().unwrap();
    init_embedded(data);
    write_root(data, &disk);

    // Indexed by the appliance (EBS direct) and by a worker, then /etc/hosts changes and an
    // incremental backup indexes the new version; a last backup has no index.
    let first = backup_root(data, &["--workers", "none", "--file-index"]);
    let by_worker = backup_root(data, &["--workers", "production-account", "--file-index"]);
    let (_, changed) = disk_with_hosts(&dir.0.join("v2"), "127.0.0.1 localhost\n10.0.0.1 db\n");
    write_root(data, &changed);
    let second = backup_root(data, &["--workers", "none", "--file-index"]);
    let unindexed = backup_root(data, &["--workers", "none"]);

    let estate = estate_path();
    let find = |args: &[&str], code: i32| {
        let mut all = vec!["files", "find", "--estate", estate, "--data-dir", data, "--json"];
        all.extend(args);
        bulwark_json(&all, code)
    };
    let report = find(&["--instance", WEB, "hosts"], EXIT_OK);
    let found = array(&report, "found", "find report");
    assert_eq!(found.len(), 1, "{report}");
    assert_eq!(found[0]["path"], "/1/etc/hosts");
    let versions = array(&found[0], "versions", "found");
    assert_eq!(versions.len(), 2, "{report}");
    assert_eq!(versions[0]["kind"], "file");
    assert_eq!(versions[0]["size"], 20);
    assert_eq!(points_of(&versions[0]), [first.clone(), by_worker]);
    assert_eq!(versions[1]["size"], 32);
    assert_eq!(points_of(&versions[1]), [second]);
    let unsearched: Vec<&str> = array(&report, "unindexed", "find report")
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(unsearched.contains(&unindexed.as_str()), "{report}");
    // The volumes without a filesystem say so; the root volume has no problem.
    let problems = array(&report, "problems", "find report");
    assert!(
        !problems.iter().any(|p| p.as_str().unwrap().contains(&first[..8])),
        "{report}"
    );

    // Paths anywhere, globs and the limit; the same without an instance filter.
    let report = find(&["--instance", WEB, "many/f1*"], EXIT_OK);
    assert_eq!(array(&report, "found", "find report").len(), 100, "{report}");
    assert_eq!(report["truncated"], false);
    let report = find(&["**/many/*", "--limit", "10"], EXIT_OK);
    assert_eq!(array(&report, "found", "find report").len(), 10);
    assert_eq!(report["truncated"], true);
    let report = find(&["--instance", WEB, "/1/home/u/big.bin"], EXIT_OK);
    let big = &array(&report, "found", "find report")[0]["versions"][0];
    assert_eq!(big["size"], 3_000_000);
    assert_eq!(big["mode"], "0600");
    assert_eq!(
        big["mtime"].as_str().unwrap(),
        chrono::DateTime::from_timestamp(MTIME, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );
    let report = find(&["--instance", DB, "hosts"], EXIT_OK);
    assert!(array(&report, "found", "find report").is_empty(), "{report}");

    // Bad input says what is wrong.
    let (code, _, stderr) = bulwark(&["files", "find", "--estate", estate, "--data-dir", data, "[a"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("unclosed character class"), "{stderr}");
    let (code, _, stderr) = bulwark(&[
        "files",
        "find",
        "--estate",
        estate,
        "--data-dir",
        data,
        "--instance",
        "web",
        "hosts",
    ]);
    assert_ne!(code, EXIT_OK, "{stderr}");
    assert!(stderr.contains("--instance web"), "{stderr}");

    // A local repository, in words.
    let repo = dir.0.join("repo");
    let repo = repo.to_str().unwrap();
    let (code, _, stderr) = bulwark(&["repo", "init", "--repo", repo, "--no-encryption"]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    let (code, stdout, stderr) = bulwark(&[
        "image",
        "backup",
        "--repo",
        repo,
        "--source",
        disk.to_str().unwrap(),
        "--volume-id",
        "disk",
        "--file-index",
    ]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    assert!(stdout.contains("file index: 308 entries"), "{stdout}");
    let (code, stdout, stderr) = bulwark(&["files", "find", "--repo", repo, "hosts"]);
    assert_eq!(code, EXIT_OK, "{stderr}");
    assert!(
        stdout.starts_with("/1/etc/hosts\n  version 1: file 0644"),
        "{stdout}"
    );
    assert!(stderr.contains("searched 1 restore point"), "{stderr}");
}
