#!/usr/bin/env python3
"""Fault injection at random: damage, kills, copies of a live data directory.

  benches/faults.py [MUTATIONS=240] [KILLS=120] [SEED=1]

1. Damage (storage-format.md §7, §8, §10): MUTATIONS copies of a data directory (two months of
   29 policies at 5 min, the newest with live blocks written by `serve`, alerts in the
   catalog), each damaged once at random — a byte flipped, a range zeroed, a segment truncated
   (inside a block or exactly at a block boundary), a segment deleted, bytes of one block
   copied over another, the catalog flipped, zeroed, truncated, deleted, replaced by another
   directory's, or an alert rewritten from CRITICAL to WARNING in its bytes. Then `verify`,
   the readers (`status`, `query alerts`, `query states`, `export`), a writer (`retention`,
   which opens the store and runs recovery) and `verify` again. Damage must be reported by
   `verify` (exit 1) before and after the writer. A catalog mutation `verify` finds nothing
   in and that leaves the exported alerts and policies as they were (a byte of one of redb's
   free pages, or of its older commit slot) is counted as harmless, not as detected.
2. Kills: `serve --interval 1s` is started KILLS times on one data directory and SIGKILLed
   after a random 0.3-2.5 s (every fourth time, `cp -a` copies the directory while it runs).
   After each kill, and on each copy, the readers and `verify` must succeed, and no row stored
   before the kill may be missing.

Prints tried / detected / harmless / missed / panics / hangs / rows lost for each part, and
exits 1 if a target is missed: every damage detected, no panic, no hang, no row lost, readers
succeed after every kill.
"""

import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "dictmon"
TIMEOUT = 60
PANIC = 101


def run(*args, timeout=TIMEOUT):
    """(exit status or 'hang', stdout, stderr) of `dictmon ARGS`."""
    try:
        p = subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return "hang", "", ""


def blocks(seg: Path):
    """Offsets of the blocks of a segment (storage-format.md §3: 40-byte headers, magic DMBK)."""
    b = seg.read_bytes()
    pos, out = 32, []
    while pos + 40 <= len(b) and b[pos:pos + 4] == b"DMBK":
        body = struct.unpack_from("<I", b, pos + 4)[0]
        out.append((pos, 40 + body))
        pos += 40 + body
    return out, len(b)


def readers(data: Path, work: Path):
    """Exit statuses of the read-only commands."""
    out = {}
    out["status"] = run("status", "--data-dir", data)[0]
    out["alerts"] = run("query", "alerts", "--format", "csv", "--data-dir", data)[0]
    out["states"] = run("query", "states", "--format", "csv", "--data-dir", data)[0]
    shutil.rmtree(work / "export", ignore_errors=True)
    out["export"] = run("export", "--data-dir", data, "--out", work / "export")[0]
    return out


def catalog_view(data: Path, work: Path):
    """What the readers see of the catalog (to tell a harmless flip from a missed one): the
    exported alerts and policies."""
    out = work / "view"
    shutil.rmtree(out, ignore_errors=True)
    run("export", "--data-dir", data, "--out", out)
    return tuple((out / f).read_bytes() if (out / f).exists() else None
                 for f in ("alerts.csv", "policies.csv"))


def flip(rng: random.Random, b: bytearray):
    i = rng.randrange(len(b))
    b[i] ^= 1 << rng.randrange(8)


def zero(rng: random.Random, b: bytearray):
    """Zeroes up to 4 KiB somewhere that is not zero already (else nothing would change)."""
    i, n = rng.randrange(len(b)), rng.randrange(1, 4096)
    while not any(b[i:i + n]):
        i = rng.randrange(len(b))
    b[i:i + n] = bytes(len(b[i:i + n]))


def mutate(rng: random.Random, data: Path, other_catalog: Path):
    segs = sorted((data / "segments").glob("*.seg"))
    cat = data / "catalog.redb"
    kind = rng.choice(["seg-flip", "seg-flip", "seg-zero", "seg-truncate", "seg-truncate-boundary",
                       "seg-zero-last-block", "seg-delete", "seg-overwrite-block", "cat-flip", "cat-zero",
                       "cat-truncate", "cat-delete", "cat-replace", "cat-edit-alert"])
    if kind.startswith("seg"):
        seg = rng.choice(segs)
        b = bytearray(seg.read_bytes())
        offsets, length = blocks(seg)
        if kind == "seg-flip":
            flip(rng, b)
        elif kind == "seg-zero":
            zero(rng, b)
        elif kind == "seg-truncate":
            b = b[:rng.randrange(32, len(b))]
        elif kind == "seg-truncate-boundary":
            b = b[:rng.choice(offsets)[0]]
        elif kind == "seg-zero-last-block":
            at, n = offsets[-1]
            b[at:at + n] = bytes(n)
        elif kind == "seg-overwrite-block":
            if len(offsets) < 2:
                return mutate(rng, data, other_catalog)
            (a, na), (c, nc) = rng.sample(offsets, 2)
            n = min(na, nc)
            if b[a:a + n] == b[c:c + n]:
                return mutate(rng, data, other_catalog)
            b[c:c + n] = b[a:a + n]
        if kind == "seg-delete":
            seg.unlink()
        else:
            seg.write_bytes(bytes(b))
        return kind, seg.name
    b = bytearray(cat.read_bytes())
    if kind == "cat-flip":
        flip(rng, b)
    elif kind == "cat-zero":
        zero(rng, b)
    elif kind == "cat-truncate":
        b = b[:rng.randrange(len(b))]
    elif kind == "cat-edit-alert":
        hits = [i for i in range(len(b)) if b.startswith(b'"CRITICAL"', i)]
        if not hits:
            return mutate(rng, data, other_catalog)
        i = rng.choice(hits)
        b[i:i + 10] = b'"WARNING" '
    if kind == "cat-delete":
        cat.unlink()
    elif kind == "cat-replace":
        shutil.copy(other_catalog, cat)
    else:
        cat.write_bytes(bytes(b))
    return kind, cat.name


def base_directory(work: Path) -> Path:
    """Two months of history (the newest month's end written by `serve`, as live blocks)."""
    data = work / "base"
    subprocess.run([str(BIN), "simulate", "--backfill", "40d", "--data-dir", str(data)], check=True,
                   capture_output=True)
    serve = subprocess.Popen([str(BIN), "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0",
                              "--grpc-listen", "off", "--interval", "1s", "--scenario", "flapping"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(6)
    serve.send_signal(signal.SIGTERM)
    serve.wait(timeout=30)
    return data


def part_damage(rng, work: Path, base: Path, mutations: int):
    other = work / "other"
    subprocess.run([str(BIN), "simulate", "--backfill", "3d", "--data-dir", str(other)], check=True,
                   capture_output=True)
    clean = run("verify", "--data-dir", base)
    assert clean[0] == 0, f"the base directory must verify clean: {clean}"
    view = catalog_view(base, work)
    counts = {"tried": 0, "detected": 0, "harmless": 0, "missed": 0, "panics": 0, "hangs": 0,
              "cut by the writer": 0}
    missed = []
    by_kind = {}
    for i in range(mutations):
        data = work / f"m{i}"
        shutil.copytree(base, data)
        kind, what = mutate(rng, data, other / "catalog.redb")
        counts["tried"] += 1
        k = by_kind.setdefault(kind, [0, 0, 0])
        k[0] += 1
        first = run("verify", "--data-dir", data)
        statuses = {"verify": first[0], **readers(data, work)}
        writer = run("retention", "--data-dir", data)
        second = run("verify", "--data-dir", data)
        statuses.update({"retention": writer[0], "verify again": second[0]})
        counts["panics"] += sum(s == PANIC for s in statuses.values())
        counts["hangs"] += sum(s == "hang" for s in statuses.values())
        for command, s in statuses.items():
            if s in (PANIC, "hang"):
                missed.append((kind, what, f"{command}: {s}"))
                if os.environ.get("FAULTS_KEEP"):
                    shutil.copytree(data, Path(os.environ["FAULTS_KEEP"]) / f"m{i}-{command}")
        if first[0] in (1, 2) and second[0] in (1, 2):
            counts["detected"] += 1
            k[1] += 1
        elif first[0] in (1, 2):
            counts["cut by the writer"] += 1
            missed.append((kind, what, "detected, then gone after the writer opened it"))
        elif kind.startswith("cat") and catalog_view(data, work) == view:
            counts["harmless"] += 1
            k[2] += 1
        else:
            counts["missed"] += 1
            missed.append((kind, what, first[1][-300:]))
        shutil.rmtree(data)
    return counts, missed, by_kind


def stored_rows(data: Path):
    code, out, err = run("query", "states", "--format", "csv", "--data-dir", data)
    if code != 0:
        return None
    return set(line.split(",")[0] + "," + line.split(",")[-2] for line in out.splitlines()[1:] if line)


def part_kills(rng, work: Path, kills: int):
    data = work / "killed"
    counts = {"kills": 0, "copies": 0, "reader runs": 0, "reader failures": 0, "verify not clean": 0,
              "panics": 0, "hangs": 0, "rows lost": 0}
    before = set()
    failures = []
    for i in range(kills):
        serve = subprocess.Popen([str(BIN), "serve", "--data-dir", str(data), "--listen", "127.0.0.1:0",
                                  "--grpc-listen", "off", "--interval", "1s", "--scenario", "flapping"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 2.5))
        targets = [data]
        if i % 4 == 3:
            copy = work / "copy"
            shutil.rmtree(copy, ignore_errors=True)
            subprocess.run(["cp", "-a", str(data), str(copy)], check=False)
            targets.append(copy)
            counts["copies"] += 1
        serve.send_signal(signal.SIGKILL)
        serve.wait()
        counts["kills"] += 1
        for target in targets:
            statuses = readers(target, work)
            v = run("verify", "--data-dir", target)
            statuses["verify"] = v[0]
            counts["reader runs"] += len(statuses)
            counts["panics"] += sum(s == PANIC for s in statuses.values())
            counts["hangs"] += sum(s == "hang" for s in statuses.values())
            bad = {k: s for k, s in statuses.items() if s != 0 and k != "verify"}
            if bad:
                counts["reader failures"] += len(bad)
                failures.append((i, str(target), bad))
            if v[0] != 0:
                counts["verify not clean"] += 1
                failures.append((i, str(target), v[1][-400:]))
        rows = stored_rows(data)
        if rows is None:
            counts["reader failures"] += 1
            continue
        lost = before - rows
        counts["rows lost"] += len(lost)
        before = rows
    return counts, failures


def main():
    mutations = int(sys.argv[1]) if len(sys.argv) > 1 else 240
    kills = int(sys.argv[2]) if len(sys.argv) > 2 else 120
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    rng = random.Random(seed)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = base_directory(work)
        started = time.monotonic()
        counts, missed, by_kind = part_damage(rng, work, base, mutations)
        print(f"== 1. damage ({time.monotonic() - started:.0f} s): "
              + ", ".join(f"{k} {v}" for k, v in counts.items()))
        print("   by kind (tried/detected/harmless): "
              + ", ".join(f"{k} {v[0]}/{v[1]}/{v[2]}" for k, v in sorted(by_kind.items())))
        for m in missed:
            print("   MISSED:", m)
        ok &= counts["missed"] == 0 and counts["cut by the writer"] == 0 and counts["panics"] == 0 \
            and counts["hangs"] == 0
        started = time.monotonic()
        counts, failures = part_kills(rng, work, kills)
        print(f"== 2. kills ({time.monotonic() - started:.0f} s): "
              + ", ".join(f"{k} {v}" for k, v in counts.items()))
        for f in failures:
            print("   FAILED:", f)
        ok &= counts["reader failures"] == 0 and counts["verify not clean"] == 0 and counts["panics"] == 0 \
            and counts["hangs"] == 0 and counts["rows lost"] == 0
    print("targets met" if ok else "TARGETS MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
