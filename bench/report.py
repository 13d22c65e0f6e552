#!/usr/bin/env python3
"""bench/compare's report: reads the measurements (results.tsv: name, seconds or bytes, peak
RSS in KiB) and the facts about the run (meta.tsv: key, value), prints the tables, and with
--docs replaces the section "Image backups: Bulwark, restic and borg side by side" of that
Markdown file (creating it if needed), keeping everything else in it."""

import argparse
import json
import os
import re

TITLE = "Image backups: Bulwark, restic and borg side by side"
INTRO = "Measured figures; each section says how to reproduce them."

MIB = 1024 * 1024
GROWTH_LIMIT = 1.10  # "does not grow": the 64 GiB sparse volume may cost at most 10% more


def load(path):
    """name -> list of rows (one per run), each a list of fields."""
    rows = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2 and parts[0]:
                rows.setdefault(parts[0], []).append(parts[1:])
    return rows


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--meta", required=True)
    p.add_argument("--docs")
    a = p.parse_args()
    res = load(a.results)
    meta = {k: v[-1][0] for k, v in load(a.meta).items()}
    runs = int(meta.get("runs", "1"))

    def secs(name):
        """The median time of the runs."""
        return median([float(r[0]) for r in res[name]]) if name in res else None

    def rss(name):
        """The largest peak RSS of the runs, in MiB."""
        return max(int(r[1]) for r in res[name]) / 1024 if name in res else None

    def taken(r):
        """Cores taken from a run: by the rest of the machine, and stolen by the hypervisor."""
        return float(r[2]) + (float(r[3]) if len(r) > 3 else 0.0)

    def other(name):
        """Cores taken from the tool during its runs (median)."""
        return median([taken(r) for r in res[name]]) if name in res and len(res[name][0]) > 2 else None

    def size(name):
        return int(res[name][-1][0]) if name in res else None

    def bulwark_json(name):
        try:
            with open(os.path.join(a.work, "logs", name + ".out")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    vol = int(meta["size"])
    big = int(meta.get("big-size", "0"))
    gib = lambda n: f"{n / 1024**3:g} GiB"
    f1 = lambda x: "—" if x is None else f"{x:.1f}"
    f2 = lambda x: "—" if x is None else f"{x:.2f}"
    mib = lambda n: "—" if n is None else f"{n / MIB:,.0f}"

    def speed(name, nbytes=vol):
        t = secs(name)
        return "—" if not t else f"{nbytes / MIB / t:,.0f}"

    rows = []

    def row(op, tool, name, repo=None, nbytes=vol):
        rows.append(
            f"| {op} | {tool} | {f2(secs(name))} | {speed(name, nbytes)} | {f1(rss(name))} | {repo or '—'} "
            f"| {f2(other(name))} |"
        )

    zb = size("zstd-bytes")
    row("compress only (the floor)", "`zstd -1 -T2`", "zstd", f"({mib(zb)} of output)" if zb else None)
    for tool, key in (("Bulwark", "bulwark"), ("restic", "restic"), ("borg", "borg")):
        row("full backup", tool, f"{key}-full", mib(size(f"{key}-repo-full")))
    if secs("bulwark-key-full") is not None:
        row("full backup", "Bulwark, key file (KMS stand-in)", "bulwark-key-full")
    row("incremental, 1% changed", "Bulwark `--changed-blocks`", "bulwark-incr", mib(size("bulwark-repo-incr")))
    if secs("bulwark-key-incr") is not None:
        row("incremental, 1% changed", "Bulwark, key file, `--changed-blocks`", "bulwark-key-incr")
    for tool, key in (("restic", "restic"), ("borg", "borg")):
        row("incremental, 1% changed", f"{tool} (rereads all)", f"{key}-incr", mib(size(f"{key}-repo-incr")))
    for tool, key in (("Bulwark", "bulwark"), ("restic", "restic"), ("borg", "borg")):
        row("restore the incremental", tool, f"{key}-restore")
    if big:
        row(f"full backup, {gib(big)} sparse", "Bulwark", "bulwark-big-full", mib(size("bulwark-big-repo")), big)
        row(f"restore, {gib(big)} sparse", "Bulwark", "bulwark-big-restore", None, big)
    table = [
        "| operation | tool | time (s) | MiB/s | peak RSS (MiB) | repository after (MiB) | CPU taken by others (cores) |",
        "|---|---|--:|--:|--:|--:|--:|",
    ] + rows

    # The targets.
    targets = []

    def target(what, ok, measured):
        if ok is None:
            targets.append((what, "not measured", "—"))
        else:
            targets.append((what, measured, "PASS" if ok else "FAIL"))

    bf, rf, gf, zf = secs("bulwark-full"), secs("restic-full"), secs("borg-full"), secs("zstd")
    if bf and rf:
        target("full backup at least 3× faster than restic", rf / bf >= 3,
               f"{rf / bf:.2f}× ({rf:.1f} s vs {bf:.1f} s)")
    if bf and gf:
        target("full backup at least 3× faster than borg", gf / bf >= 3,
               f"{gf / bf:.2f}× ({gf:.1f} s vs {bf:.1f} s)")
    if bf and zf:
        target("full backup within 1.5× of `zstd -1 -T2`", bf / zf <= 1.5,
               f"{bf / zf:.2f}× ({bf:.1f} s vs {zf:.1f} s)")
    bi = secs("bulwark-incr")
    if bf and bi is not None:
        target("incremental (1% changed) at most 5% of the full backup's time", bi / bf <= 0.05,
               f"{100 * bi / bf:.1f}% ({bi:.2f} s vs {bf:.1f} s)")
    kf, ki = secs("bulwark-key-full"), secs("bulwark-key-incr")
    if kf and ki is not None:
        target("the same, with a key file (the KMS stand-in workers use)", ki / kf <= 0.05,
               f"{100 * ki / kf:.1f}% ({ki:.2f} s vs {kf:.1f} s)")
    br, rr = secs("bulwark-restore"), secs("restic-restore")
    if br and rr:
        target("restore at least 2× faster than restic's", rr / br >= 2,
               f"{rr / br:.2f}× ({rr:.1f} s vs {br:.1f} s)")
    sb, sr = size("bulwark-repo-incr"), size("restic-repo-incr")
    if sb and sr:
        target("repository (after both backups) no larger than restic's", sb <= sr,
               f"{sb / sr:.3f}× ({sb / MIB:,.0f} MiB vs {sr / MIB:,.0f} MiB)")
    peaks = {n: rss(n) for n in ("bulwark-full", "bulwark-incr", "bulwark-restore",
                                 "bulwark-big-full", "bulwark-big-restore") if rss(n) is not None}
    if peaks:
        worst = max(peaks, key=peaks.get)
        target("peak memory under 256 MiB (every Bulwark backup and restore)", peaks[worst] < 256,
               f"{peaks[worst]:.1f} MiB at most ({worst})")
    def growth_note():
        """What the backup's growth per block would come to on a 16 TiB volume."""
        extra = (rss("bulwark-big-full") - rss("bulwark-full")) * MIB
        per_block = extra / ((big - vol) / (512 * 1024))
        if per_block <= 0:
            return ""
        at_16t = per_block * (16 * 1024**4 / (512 * 1024)) / MIB
        return (f"; the backup's growth is {per_block:.0f} bytes per 512 KiB block, "
                f"about {at_16t:,.0f} MiB more on a 16 TiB volume")

    if big and rss("bulwark-big-full") and rss("bulwark-full"):
        g1 = rss("bulwark-big-full") / rss("bulwark-full")
        g2 = (rss("bulwark-big-restore") / rss("bulwark-restore")
              if rss("bulwark-big-restore") and rss("bulwark-restore") else g1)
        target(f"peak memory does not grow with volume size ({gib(vol)} vs {gib(big)} sparse; "
               f"at most {GROWTH_LIMIT:.2f}×)", max(g1, g2) <= GROWTH_LIMIT,
               f"backup {g1:.2f}× ({rss('bulwark-full'):.1f} → {rss('bulwark-big-full'):.1f} MiB), "
               f"restore {g2:.2f}×" + growth_note())
    ratios = ["| target | measured | result |", "|---|---|---|"] + [
        f"| {w} | {m} | **{r}** |" for w, m, r in targets
    ]

    full = bulwark_json("bulwark-full").get("manifest", {}).get("stats", {})
    incr = bulwark_json("bulwark-incr").get("manifest", {}).get("stats", {})
    cache = (
        "dropped before every measured command (`sync; echo 3 > /proc/sys/vm/drop_caches`): every tool "
        "reads the image from disk"
        if meta.get("can-drop-caches") == "1"
        else "could not be dropped (`/proc/sys/vm/drop_caches` is not writable here): all runs read the "
        "image from the page cache, which is the same for every tool"
    )
    timed = [n for n in res if len(res[n][0]) > 2]
    runs_all = [(n, r) for n in timed for r in res[n]]
    busiest, peak_other = max(((n, taken(r)) for n, r in runs_all), key=lambda x: x[1], default=(None, 0.0))
    contention = (
        "The last column is the CPU taken from the tool while it ran (median over the runs): used by the "
        "rest of the machine (other processes, kernel threads such as writeback) or stolen by the "
        f"hypervisor. Over all measurements: {median([taken(r) for _, r in runs_all]):.2f} cores "
        f"(median), at most {peak_other:.2f} (during {busiest}); of it stolen: "
        f"{median([float(r[3]) for _, r in runs_all]):.2f} (median)."
        if runs_all else ""
    )
    if peak_other >= 0.25:
        contention += (
            " **Other work shared the CPU during some measurements**: their times are higher than on an "
            "idle machine; `--wait-idle 120` waits longer for a quiet moment before each"
            + (", and medians of several runs (`--runs`) absorb the rest." if runs > 1 else
               ", `--runs 3` takes medians.")
        )
    cmd = "bench/compare" + (f" {meta['args']}" if meta.get("args") else "")
    lines = [
        f"## {TITLE}",
        "",
        f"Measured {meta['date']} with `{cmd}` (it installs restic, borgbackup, zstd and GNU time if "
        "missing, builds Bulwark with `cargo build --release -p bulwark-cli`, generates the images "
        "once, runs every tool on its own fresh repository on local disk and rewrites this section; "
        "`bench/compare --help` lists its options).",
        "",
        f"- **Machine**: {meta['nproc']} cores ({meta['cpu']}), {meta['ram']} of RAM, {meta['kernel']}, "
        f"{meta['os']}; repositories and images on {meta['filesystem']}.",
        f"- **Versions**: {meta['bulwark-version']} (commit {meta['bulwark-commit']}); "
        f"{meta['restic-version']}; {meta['borg-version']}; {meta['zstd-version'].strip('* ')}.",
        f"- **Data**: a {gib(vol)} VM-like disk image from `bench/genimage.py` (seed {meta['seed']}; the same "
        f"bytes on every run), in 512 KiB blocks: {meta['image-layout']}. \"text\" is file-like data "
        "(log lines, JSON and CSV records, binary records) that zstd -1 compresses about 2×; \"random\" "
        "is incompressible; \"repeat\" are copies of earlier blocks. "
        + (f"`zstd -1` turns it into {zb / MIB:,.0f} MiB. " if zb else "")
        + f"The incremental backups read a copy with {meta['changed-blocks']} blocks (1%) changed, spread "
        "over the image, some of them zero blocks before; half the changed data blocks are rewritten "
        "whole, half get a 4-64 KiB patch.",
        f"- **Page cache**: {cache}. Each time includes a final `sync`, so whatever a tool wrote is on disk.",
        "- **Peak RSS** is GNU time's `%M` (maximum resident set size); MiB/s is the volume's size over "
        "the time, also for the incremental backups (Bulwark reads only the listed blocks, restic and "
        "borg reread the whole image). "
        + (f"Each measurement ran {runs} times, interleaved: times are medians, peak RSS the largest. "
           if runs > 1 else "Each measurement ran once. ")
        + contention,
        "",
        "Settings:",
        "",
        "- Bulwark: `bulwark repo init --repo R --password-file F`, then `bulwark image backup --repo R "
        "--password-file F --source IMG --volume-id vol-1` (the incremental adds `--changed-blocks LIST`, "
        "as EBS ChangedBlocks would give), `bulwark image restore --point ID --target OUT` (a sparse "
        "file). 512 KiB blocks, zero blocks skipped, keyed-BLAKE3 deduplication, zstd level 1, "
        "AES-256-GCM, 16 MiB packs, default threads (cores + 2).",
        f"- restic: `restic init` (repository format version {meta.get('restic-repo-version', '?')}), "
        "`restic backup IMG` twice, `restic restore latest --target DIR`; default compression mode "
        "`auto` (zstd, fastest level), content-defined chunks of 0.5-8 MiB (1 MiB on average), "
        "AES-256-CTR with Poly1305-AES; its cache in the work directory. restic 0.14 has no "
        "`restore --sparse`: it writes every byte.",
        "- borg: `borg init --encryption=repokey-blake2` (AES-256-CTR, BLAKE2b MAC), `borg create "
        "--compression zstd,1 R::full IMG`, then `R::incr`, `borg extract --sparse R::incr`; default "
        "chunker (buzhash, 0.5-8 MiB, 2 MiB on average); borg 1.2 runs on one thread.",
        "",
        f"On the {gib(vol)} image:" if not big else
        f"On the {gib(vol)} image, and for Bulwark on a {gib(big)} sparse image holding the same "
        f"{gib(vol)} of data in 16 pieces spread over it:",
        "",
        *table,
        "",
    ]
    if full:
        lines += [
            f"Bulwark's full backup read {full.get('blocks_read')} blocks ({full.get('blocks_zero')} zero) and "
            f"stored {full.get('blocks_new')} ({full.get('bytes_stored', 0) / MIB:,.0f} MiB); the incremental "
            f"read {incr.get('blocks_read')} blocks and stored {incr.get('blocks_new')} "
            f"({incr.get('bytes_stored', 0) / MIB:,.1f} MiB).",
            "",
        ]
    lines += ["The project's targets:", "", *ratios, "",
              "`bench/diagnose` (after `bench/compare`) breaks Bulwark's backup time down: by thread count, "
              "by kind of data (all zero, all text, all random) next to zstd, and its fixed costs.", ""]
    section = "\n".join(lines)

    print()
    print("\n".join(table))
    print()
    print("\n".join(ratios))
    print()
    if contention:
        print(contention.replace("**", ""))
    if meta.get("can-drop-caches") != "1":
        print("Note: the page cache could not be dropped; all runs read from the page cache, "
              "the same for every tool.")

    if a.docs:
        try:
            with open(a.docs) as f:
                text = f.read()
        except FileNotFoundError:
            text = f"# Benchmarks\n\n{INTRO}\n"
        heading = re.compile(rf"^## {re.escape(TITLE)}[ \t]*$", re.M)
        m = heading.search(text)
        if m:
            nxt = re.compile(r"^## ", re.M).search(text, m.end())
            end = nxt.start() if nxt else len(text)
            text = text[: m.start()] + section + ("\n" if nxt else "") + text[end:]
        else:
            text = text.rstrip("\n") + "\n\n" + section
        text = text.rstrip("\n") + "\n"
        tmp = a.docs + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, a.docs)
        print(f"wrote the section \"{TITLE}\" of {a.docs}")


if __name__ == "__main__":
    main()
