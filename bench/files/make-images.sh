#!/usr/bin/env bash
# Makes the source tree and the two 16 GiB sparse GPT disk images (ext4, XFS) for the
# file-level recovery benchmark (crates/mover/examples/files-bench.rs).
#
#   bash bench/files/make-images.sh [WORK_DIR]     (default /tmp/bulwark-files-bench)
#
# The tree: 90 directories of 1,000 small files (0..16 KiB, deterministic content), one
# directory many/ of 10,000 files, and big.bin, 1 GiB of incompressible (AES-CTR) data.
# Both images: GPT, partition 1 from sector 2048 to the end, sparse.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

WORK=${1:-/tmp/bulwark-files-bench}
TREE="$WORK/tree"
DISK_SIZE=$((16 * 1024 * 1024 * 1024))

step_start=0
step() { step_start=$(date +%s%N); echo "== $*"; }
done_step() { echo "   took $(( ($(date +%s%N) - step_start) / 1000000 )) ms"; }

mkdir -p "$WORK"

step "source tree in $TREE"
rm -rf "$TREE"
mkdir -p "$TREE"
python3 - "$TREE" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(20261203)
def fill(d, n, max_size):
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        size = rng.randint(0, max_size)
        # Half-compressible content: random bytes, then a repeated text pattern.
        rnd = rng.randbytes(size // 2)
        txt = (b"bulwark file %06d " % i) * (size // 20 + 1)
        with open(os.path.join(d, "f%05d.dat" % i), "wb") as f:
            f.write((rnd + txt)[:size])
for d in range(90):
    fill(os.path.join(root, "d%03d" % d), 1000, 16 * 1024)
fill(os.path.join(root, "many"), 10000, 4 * 1024)
PY
openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv 00000000000000000000000000000000 \
    -in <(head -c $((1024 * 1024 * 1024)) /dev/zero) -out "$TREE/big.bin"
echo "   files: $(find "$TREE" -type f | wc -l), size: $(du -sh --apparent-size "$TREE" | cut -f1)"
done_step

# A 16 GiB sparse disk with a GPT and partition 1 from sector 2048 to the last usable sector;
# prints the partition's size in bytes.
make_disk() {
    local img=$1
    rm -f "$img"
    truncate -s "$DISK_SIZE" "$img"
    sgdisk -o -n 1:2048:0 -t 1:8300 "$img" >/dev/null 2>&1
    local first last
    first=$(sgdisk -i 1 "$img" | awk '/^First sector/ {print $3}')
    last=$(sgdisk -i 1 "$img" | awk '/^Last sector/ {print $3}')
    [ "$first" = 2048 ] || { echo "partition starts at $first" >&2; exit 1; }
    echo $(( (last - first + 1) * 512 ))
}

step "ext4.img (mke2fs -d, at offset 1 MiB)"
part=$(make_disk "$WORK/ext4.img")
mke2fs -q -F -t ext4 -L bench -d "$TREE" -E offset=1048576,nodiscard "$WORK/ext4.img" "$((part / 1024))k"
sgdisk -v "$WORK/ext4.img" | grep -o "No problems found" || echo "   sgdisk -v reported problems"
done_step

step "XFS protofile"
python3 - "$TREE" "$WORK/xfs.proto" <<'PY'
import os, sys
root, out = sys.argv[1], sys.argv[2]
lines = ["/dev/null", "0 0", "d--755 0 0"]
def walk(d, depth):
    for name in sorted(os.listdir(d)):
        p = os.path.join(d, name)
        ind = " " * depth
        if os.path.isdir(p):
            lines.append(f"{ind}{name} d--755 0 0")
            walk(p, depth + 1)
            lines.append(f"{ind}$")
        else:
            lines.append(f"{ind}{name} ---644 0 0 {p}")
walk(root, 1)
lines.append("$")
open(out, "w").write("\n".join(lines) + "\n")
PY
done_step

step "xfs.img (mkfs.xfs -p on a partition-sized file, copied in at sector 2048)"
part=$(make_disk "$WORK/xfs.img")
rm -f "$WORK/xfs.part"
truncate -s "$part" "$WORK/xfs.part"
mkfs.xfs -q -f -K -L bench -p "$WORK/xfs.proto" "$WORK/xfs.part"
dd if="$WORK/xfs.part" of="$WORK/xfs.img" bs=1M seek=1 conv=notrunc,sparse status=none
rm -f "$WORK/xfs.part" "$WORK/xfs.proto"
sgdisk -v "$WORK/xfs.img" | grep -o "No problems found" || echo "   sgdisk -v reported problems"
done_step

echo "== images"
ls -ls "$WORK"/*.img
du -h "$WORK"/*.img
