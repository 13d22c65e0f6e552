//! Files of restore points over HTTP, on SQLite and on PostgreSQL: an ext4 volume of the
//! embedded estate, snapshotted and backed up by a policy, listed and downloaded as tar
//! through the API, without restoring it; and the answers to what is not there or not allowed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::process::Command;

use bulwark_appliance::auth::Role;
use common::Harness;
use serde_json::json;

const WEB: &str = "i-0123456789abcdef0";
const ROOT: &str = "vol-0aaaaaaaaaaaaaaaa";
const HOSTS: &str = "127.0.0.1 localhost\n";

on_both!(files_of_snapshots_and_backups_are_listed_and_downloaded);

/// An ext4 filesystem on the whole of a 32 MiB disk, with /etc/hosts and 50 files in /data.
fn ext4() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::create_dir_all(tree.join("data")).unwrap();
    std::fs::write(tree.join("etc/hosts"), HOSTS).unwrap();
    for i in 0..50 {
        std::fs::write(
            tree.join(format!("data/{i:02}.txt")),
            vec![b'a' + (i % 26) as u8; 10_000 + i],
        )
        .unwrap();
    }
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image).unwrap().set_len(32 << 20).unwrap();
    let out = Command::new("mke2fs")
        .env(
            "PATH",
            format!("{}:/usr/sbin:/sbin", std::env::var("PATH").unwrap_or_default()),
        )
        .args(["-q", "-t", "ext4", "-L", "web-root", "-d"])
        .arg(&tree)
        .arg(&image)
        .output()
        .expect("mke2fs: run scripts/fs-tools to install the image tools");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(&image).unwrap()
}

fn files_of_snapshots_and_backups_are_listed_and_downloaded(h: &Harness) {
    let web = common::estate()
        .instances
        .into_iter()
        .find(|i| i.id.as_str() == WEB)
        .unwrap();
    h.world
        .sim
        .write_volume(&web.account, &web.region, &ROOT.parse().unwrap(), 0, &ext4())
        .unwrap();
    h.discover();
    let policy = json!({
        "name": "web", "selection": {"instances": [WEB]},
        "snapshots": {"keep": 2},
        "backups": {"workers": "none", "keep_last": 2, "file_index": true}
    });
    let created = h.admin("POST", "/api/v1/policies", Some(&policy.to_string()), 201);
    let run = h.admin(
        "POST",
        &format!("/api/v1/policies/{}/run", created["id"].as_str().unwrap()),
        None,
        202,
    );
    let session = h.wait(run["id"].as_str().unwrap());
    assert_eq!(session["status"], "succeeded", "{session}");
    let points = h.admin(
        "GET",
        &format!("/api/v1/restore-points?instance={WEB}"),
        None,
        200,
    );
    let points = points.as_array().unwrap();
    let kinds: Vec<&str> = points.iter().map(|p| p["kind"].as_str().unwrap()).collect();
    assert!(
        kinds.contains(&"snapshot") && kinds.contains(&"backup"),
        "{points:?}"
    );

    let viewer = h.token(Role::Viewer);
    let operator = h.token(Role::Operator);
    for point in points.iter().filter(|p| p["kind"] != "replica") {
        let id = point["id"].as_str().unwrap();
        let base = format!("/api/v1/restore-points/{id}/files");
        // Three volumes: which one must be said.
        let (status, body) = h.call("GET", &base, Some(&viewer), None);
        assert_eq!(status, 400, "{body}");
        assert!(body["error"]["remedy"].as_str().unwrap().contains(ROOT), "{body}");

        let (status, root) = h.call("GET", &format!("{base}?volume={ROOT}"), Some(&viewer), None);
        assert_eq!(status, 200, "{root}");
        let partition = &root["entries"][0]["partition"];
        assert_eq!(partition["number"], 0, "{root}");
        assert_eq!(partition["filesystem"], "ext4", "{root}");
        assert_eq!(partition["label"], "web-root", "{root}");
        // Only what the listing needs is read: a few MiB of an 8 GiB volume.
        assert!(root["bytes_read"].as_u64().unwrap() < 4 << 20, "{root}");

        let (status, data) = h.call(
            "GET",
            &format!("{base}?volume={ROOT}&path=/0/data"),
            Some(&viewer),
            None,
        );
        assert_eq!(status, 200, "{data}");
        let entries = data["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 50, "{data}");
        assert_eq!(entries[7]["name"], "07.txt");
        assert_eq!(entries[7]["size"], 10_007);
        assert_eq!(entries[7]["mode"], "0644");

        // Contents are a restore: operators only.
        let tar = format!("{base}/tar?volume={ROOT}&path=/0/etc");
        let (status, _, _) = h.get_bytes(&tar, &viewer);
        assert_eq!(status, 403);
        let (status, kind, bytes) = h.get_bytes(&tar, &operator);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(kind, "application/x-tar");
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut found = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            found.push((path, text));
        }
        assert!(
            found.contains(&("etc/hosts".to_owned(), HOSTS.to_owned())),
            "{found:?}"
        );

        // What is not there, and what is not a path.
        let (status, body) = h.call(
            "GET",
            &format!("{base}?volume={ROOT}&path=/0/nope"),
            Some(&viewer),
            None,
        );
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("not-found")),
            "{body}"
        );
        let (status, _, _) = h.get_bytes(&format!("{base}/tar?volume={ROOT}&path=/0/nope"), &operator);
        assert_eq!(status, 404);
        let (status, body) = h.call(
            "GET",
            &format!("{base}?volume={ROOT}&path=etc"),
            Some(&viewer),
            None,
        );
        assert_eq!(status, 400, "{body}");
        let (status, body) = h.call(
            "GET",
            &format!("{base}?volume=vol-0ffffffffffffffff"),
            Some(&viewer),
            None,
        );
        assert_eq!(status, 400, "{body}");
        let (status, body) = h.call(
            "GET",
            &format!("{base}?volume={ROOT}&color=red"),
            Some(&viewer),
            None,
        );
        assert_eq!(status, 400, "{body}");
    }
    find_files(h, points, &viewer);
    let (status, body) = h.call("GET", "/api/v1/restore-points/nope/files", Some(&viewer), None);
    assert_eq!(status, 404, "{body}");
    let (status, _) = h.call(
        "GET",
        &format!(
            "/api/v1/restore-points/{}/files",
            points[0]["id"].as_str().unwrap()
        ),
        None,
        None,
    );
    assert_eq!(status, 401);
}

/// The instance's file search: which of its restore points hold a file, in what version,
/// with the appliance's restore point of each; and what is not a search.
fn find_files(h: &Harness, points: &[serde_json::Value], viewer: &str) {
    let backup = points.iter().find(|p| p["kind"] == "backup").unwrap();
    let (status, body) = h.call(
        "GET",
        &format!("/api/v1/instances/{WEB}/files?pattern=hosts"),
        Some(viewer),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let found = body["report"]["found"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{body}");
    assert_eq!(found[0]["path"], "/0/etc/hosts");
    let version = &found[0]["versions"][0];
    assert_eq!(version["size"], HOSTS.len());
    let repo_point = version["points"][0]["id"].as_str().unwrap();
    assert_eq!(version["points"][0]["volume"], ROOT);
    assert_eq!(body["restore_points"][repo_point], backup["id"], "{body}");
    // The instance's three volumes were indexed; the two empty ones hold nothing.
    assert_eq!(body["report"]["searched"].as_array().unwrap().len(), 3, "{body}");
    assert!(
        body["report"]["unindexed"].as_array().unwrap().is_empty(),
        "{body}"
    );

    let (status, body) = h.call(
        "GET",
        &format!("/api/v1/instances/{WEB}/files?pattern=data/0*.txt&limit=3"),
        Some(viewer),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["report"]["found"].as_array().unwrap().len(), 3, "{body}");
    assert_eq!(body["report"]["truncated"], true);

    for (query, what) in [
        (
            format!("/api/v1/instances/{WEB}/files?pattern=%5Ba"),
            "query pattern",
        ),
        (format!("/api/v1/instances/{WEB}/files"), "pattern"),
        (
            format!("/api/v1/instances/{WEB}/files?pattern=x&color=red"),
            "color",
        ),
        ("/api/v1/instances/web/files?pattern=x".to_owned(), "instance"),
    ] {
        let (status, body) = h.call("GET", &query, Some(viewer), None);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(what),
            "{query}: {body}"
        );
    }
    let (status, _) = h.call(
        "GET",
        &format!("/api/v1/instances/{WEB}/files?pattern=x"),
        None,
        None,
    );
    assert_eq!(status, 401);
}
