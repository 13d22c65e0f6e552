#!/usr/bin/env python3
"""Deterministic VM-like disk images for bench/compare.

    genimage.py image   --size BYTES --seed N OUT          the image
    genimage.py changed --size BYTES --seed N IN OUT LIST  a copy with 1% of its blocks changed,
                                                           and the changed block indexes
    genimage.py uniform --size BYTES --seed N KIND OUT     every block of one kind (zero, text,
                                                           random), for diagnostics

The image is a sequence of 512 KiB blocks laid out in runs, as files lie on a disk: about 35%
zero blocks (never written: holes of a sparse file), 35% compressible file-like data (log
lines, JSON and CSV records, binary database-like pages, drawn from pools of varied lines so
that zstd -1 compresses them about 2-4x, not 100x), 20% incompressible pseudo-random data and
10% copies of earlier non-zero blocks (runs of 1-8 blocks, like copied files).

Everything derives from the seed: the layout from Random(seed), and every block's bytes from
Random("seed/kind/index"), so the same arguments write the same bytes, on any machine, with any
number of worker processes. Blocks are generated on every core and written with pwrite.
"""

import argparse
import json
import os
import random
import struct
import sys
from multiprocessing import Pool

BS = 512 * 1024

# Target shares of the block kinds, and the longest run of each.
SHARES = {"zero": 0.35, "text": 0.35, "random": 0.20, "repeat": 0.10}
MAX_RUN = {"zero": 64, "text": 16, "random": 8, "repeat": 8}
CHANGED_SHARE = 0.01


def layout(nblocks, seed):
    """Each block's content: ("zero",), ("text", i), ("random", i); copies carry the
    content of their source. Returns (contents, kinds) where kinds[i] is what block i is
    counted as (a copy counts as "repeat")."""
    r = random.Random(seed)
    left = {k: round(v * nblocks) for k, v in SHARES.items()}
    left["zero"] += nblocks - sum(left.values())
    contents, kinds, nonzero = [], [], []
    while len(contents) < nblocks:
        choices = [k for k, n in left.items() if n > 0 and (k != "repeat" or nonzero)]
        if not choices:  # only copies left, and nothing to copy (a tiny image)
            left["zero"], left["repeat"], choices = left["repeat"], 0, ["zero"]
        kind = r.choices(choices, weights=[left[k] for k in choices])[0]
        run = min(left[kind], r.randint(1, MAX_RUN[kind]))
        if kind == "repeat":
            run = min(run, len(nonzero))
            src = r.randrange(0, len(nonzero) - run + 1)
            sources = [nonzero[src + k] for k in range(run)]
        for k in range(run):
            i = len(contents)
            if kind == "repeat":
                contents.append(contents[sources[k]])
            elif kind == "zero":
                contents.append(("zero",))
            else:
                contents.append((kind, i))
            if kind != "zero":
                nonzero.append(i)
            kinds.append(kind)
        left[kind] -= run
    return contents, kinds


# ---- compressible data ---------------------------------------------------------------------

POOLS = None
POOL_LINES = 20000


def word(r):
    return "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(2, 9)))


def make_pools(seed):
    """Pools of lines of four kinds of files, with varied fields so that blocks built from
    them compress like real files, not like a repeated string."""
    r = random.Random(f"{seed}/pools")
    vocab = [word(r) for _ in range(3000)]
    hosts = [f"ip-10-{r.randint(0, 255)}-{r.randint(0, 255)}-{r.randint(0, 255)}" for _ in range(40)]
    procs = ["sshd", "kernel", "systemd", "nginx", "postgres", "cron", "dockerd", "app", "kubelet"]
    levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
    logs, jsons, csvs, pages = [], [], [], []
    for n in range(POOL_LINES):
        t = 1700000000 + n * 7 + r.randint(0, 6)
        msg = " ".join(r.choice(vocab) for _ in range(r.randint(3, 14)))
        logs.append(
            f"2024-{1 + t % 12:02d}-{1 + t % 28:02d}T{t % 24:02d}:{t % 60:02d}:{(t // 7) % 60:02d}."
            f"{r.randint(0, 999999):06d}Z {r.choice(hosts)} {r.choice(procs)}[{r.randint(100, 65000)}]: "
            f"{r.choice(levels)} {msg} id={r.getrandbits(64):016x} took={r.randint(0, 5000)}ms\n".encode()
        )
        jsons.append(
            json.dumps(
                {
                    "id": r.randint(1, 10**9),
                    "user": r.choice(vocab) + str(r.randint(0, 999)),
                    "email": f"{r.choice(vocab)}.{r.choice(vocab)}@example.{r.choice(['com', 'org', 'net'])}",
                    "amount": round(r.uniform(0, 10000), 2),
                    "tags": [r.choice(vocab) for _ in range(r.randint(0, 4))],
                    "active": r.random() < 0.8,
                    "created": f"2023-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
                },
                separators=(",", ":"),
            ).encode()
            + b"\n"
        )
        csvs.append(
            f"{n},{r.choice(vocab)},{r.choice(vocab)} {r.choice(vocab)},{r.randint(0, 99999)},"
            f"{r.uniform(-180, 180):.6f},{r.uniform(-90, 90):.6f},{r.choice(['A', 'B', 'C', 'D'])},"
            f"{r.getrandbits(32):08x}\n".encode()
        )
        # A database-like binary record: small integers, a short string, padding.
        name = r.choice(vocab).encode()[:16]
        pages.append(
            struct.pack(
                "<IIHHq16sI12x",
                n,
                r.randint(0, 1 << 20),
                r.randint(0, 300),
                len(name),
                r.randint(-(10**12), 10**12),
                name,
                r.getrandbits(32),
            )
        )
    return [logs, jsons, csvs, pages]


def text_block(seed, i):
    r = random.Random(f"{seed}/text/{i}")
    pool = POOLS[r.randrange(len(POOLS))]
    # Lines are about 50-200 bytes: draw enough to fill the block, then cut it to size.
    avg = sum(len(x) for x in pool[:200]) / 200
    out = b"".join(r.choices(pool, k=int(BS / avg * 1.15) + 16))
    while len(out) < BS:
        out += b"".join(r.choices(pool, k=256))
    return out[:BS]


def random_block(seed, i):
    return random.Random(f"{seed}/random/{i}").randbytes(BS)


def block_bytes(seed, content):
    if content[0] == "text":
        return text_block(seed, content[1])
    if content[0] == "random":
        return random_block(seed, content[1])
    return None


# ---- workers -------------------------------------------------------------------------------

STATE = {}


def init_worker(seed, path):
    global POOLS
    POOLS = make_pools(seed)
    STATE["seed"] = seed
    STATE["fd"] = os.open(path, os.O_WRONLY)


def write_blocks(tasks):
    """tasks: [(position, content)]; writes each block at its position."""
    for pos, content in tasks:
        if content[0] == "patch":
            _, i, off, length = content
            data = random.Random(f"{STATE['seed']}/patch/{i}").randbytes(length)
            os.pwrite(STATE["fd"], data, pos * BS + off)
            continue
        data = block_bytes(STATE["seed"], content)
        if data is not None:
            os.pwrite(STATE["fd"], data, pos * BS)
    return len(tasks)


def run(path, seed, tasks):
    """Runs (position, content) tasks on every core, in batches."""
    batches = [tasks[k : k + 32] for k in range(0, len(tasks), 32)]
    with Pool(os.cpu_count() or 1, initializer=init_worker, initargs=(seed, path)) as pool:
        for _ in pool.imap_unordered(write_blocks, batches):
            pass
    fd = os.open(path, os.O_WRONLY)
    os.fsync(fd)
    os.close(fd)


def create_sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def nblocks_of(size):
    if size <= 0 or size % BS:
        sys.exit(f"genimage: the size ({size}) must be a positive multiple of {BS}")
    return size // BS


def cmd_image(a):
    n = nblocks_of(a.size)
    contents, kinds = layout(n, a.seed)
    tmp = a.out + ".tmp"
    create_sparse(tmp, a.size)
    run(tmp, a.seed, [(i, c) for i, c in enumerate(contents) if c[0] != "zero"])
    os.replace(tmp, a.out)
    counts = {k: kinds.count(k) for k in SHARES}
    print(
        f"{a.out}: {n} blocks of 512 KiB: "
        + ", ".join(f"{counts[k]} {k} ({100 * counts[k] / n:.1f}%)" for k in SHARES)
    )


def cmd_changed(a):
    """Changes 1% of the blocks: one block picked at random in each of n/100 equal strides of
    the volume (so changes are spread over it, and about a third hit zero blocks). A zero block
    gets new file data; a data block gets, alternately, a new whole block (a rewritten file)
    or a 4-64 KiB patch at a 4 KiB boundary (a database page update)."""
    n = nblocks_of(a.size)
    contents, _ = layout(n, a.seed)
    r = random.Random(f"{a.seed}/changed")
    count = max(1, round(n * CHANGED_SHARE))
    changed = sorted({min(n - 1, (k * n) // count + r.randrange(max(1, n // count))) for k in range(count)})
    tasks, zero_hits = [], 0
    for j, i in enumerate(changed):
        if contents[i][0] == "zero":
            zero_hits += 1
            tasks.append((i, ("text", n + i)))
        elif j % 2 == 0:
            tasks.append((i, (r.choice(["text", "random"]), n + i)))
        else:
            length = 4096 * r.randint(1, 16)
            off = 4096 * r.randrange(0, (BS - length) // 4096 + 1)
            tasks.append((i, ("patch", i, off, length)))
    tmp = a.out + ".tmp"
    if os.system(f"cp --sparse=always -- '{a.input}' '{tmp}'") != 0:
        sys.exit("genimage: cp failed")
    run(tmp, a.seed, tasks)
    with open(a.list + ".tmp", "w") as f:
        f.write("".join(f"{i}\n" for i in changed))
    os.replace(a.list + ".tmp", a.list)
    os.replace(tmp, a.out)
    print(f"{a.out}: {len(changed)} blocks changed ({zero_hits} of them were zero); list in {a.list}")


def cmd_uniform(a):
    n = nblocks_of(a.size)
    tmp = a.out + ".tmp"
    create_sparse(tmp, a.size)
    if a.kind != "zero":
        run(tmp, a.seed, [(i, (a.kind, i)) for i in range(n)])
    os.replace(tmp, a.out)
    print(f"{a.out}: {n} {a.kind} blocks")


def cmd_stats(a):
    n = nblocks_of(a.size)
    _, kinds = layout(n, a.seed)
    counts = {k: kinds.count(k) for k in SHARES}
    print(", ".join(f"{100 * counts[k] / n:.1f}% {k}" for k in SHARES) + f" ({n} blocks)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("image", "changed", "uniform", "stats"):
        s = sub.add_parser(name)
        s.add_argument("--size", type=int, required=True)
        s.add_argument("--seed", type=int, required=True)
        if name == "changed":
            s.add_argument("input")
        if name == "uniform":
            s.add_argument("kind", choices=["zero", "text", "random"])
        if name != "stats":
            s.add_argument("out")
        if name == "changed":
            s.add_argument("list")
    a = p.parse_args()
    {"image": cmd_image, "changed": cmd_changed, "uniform": cmd_uniform, "stats": cmd_stats}[a.cmd](a)


if __name__ == "__main__":
    main()
