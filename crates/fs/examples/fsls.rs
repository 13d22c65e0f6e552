//! Lists a path of a disk image: `cargo run -p bulwark-fs --example fsls -- IMAGE [PATH]`
//! (PATH defaults to `/`, the partitions); `--walk` reads everything and prints a summary,
//! `--cat PATH` writes a file to standard output.

use std::io::Write;

use bulwark_fs::{walk_volume, Cached, FileDevice, FileKind, Volume};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(image) = args.first() else {
        eprintln!("usage: fsls IMAGE [PATH | --walk | --cat PATH]");
        std::process::exit(2);
    };
    let dev = std::sync::Arc::new(Cached::new(FileDevice::open(image.as_ref())?));
    let volume = Volume::open(dev.clone())?;
    for w in &volume.table().warnings {
        eprintln!("warning: {w}");
    }
    match args.get(1).map(String::as_str) {
        Some("--walk") => {
            let s = walk_volume(&volume);
            println!("{s:#?}");
        }
        Some("--cat") => {
            let mut f = volume.open_file(args.get(2).map_or("/", String::as_str))?;
            std::io::copy(&mut f, &mut std::io::stdout().lock())?;
        }
        path => {
            let path = path.unwrap_or("/");
            for e in volume.ls(path)? {
                if let Some(p) = &e.partition {
                    println!(
                        "{:>3} {:<40} {:<12} {:>14} bytes at {:>12} {} {}",
                        p.number,
                        p.content,
                        p.label.clone().unwrap_or_default(),
                        p.size,
                        p.start,
                        p.part_type,
                        p.error.clone().unwrap_or_default()
                    );
                    for w in &p.warnings {
                        println!("    warning: {w}");
                    }
                    continue;
                }
                let m = match &e.metadata {
                    Ok(m) => m,
                    Err(err) => {
                        println!("? {}: {err}", e.name);
                        continue;
                    }
                };
                let link = if m.kind == FileKind::Symlink {
                    let full = format!("{}/{}", path.trim_end_matches('/'), e.name);
                    format!(" -> {}", String::from_utf8_lossy(&volume.read_link(full)?))
                } else {
                    String::new()
                };
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "{:?} {:04o} {:>5} {:>5} {:>10} {:>12}.{:09} {}{}",
                    m.kind, m.mode, m.uid, m.gid, m.size, m.mtime.secs, m.mtime.nanos, e.name, link
                )?;
            }
        }
    }
    eprintln!(
        "read {:.1} MiB from the image in {} reads",
        dev.bytes_read() as f64 / 1048576.0,
        dev.reads()
    );
    Ok(())
}
