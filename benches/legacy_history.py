#!/usr/bin/env python3
"""A legacy `dict_rate_limit_states` table as PostgreSQL's `COPY … TO … CSV HEADER` writes it.

The system dictmon replaces polled every 5 minutes and stored, per policy, the bucket and the
derived columns it computed its own way (storage-format.md §4.4): utilization
`numeric(7,2)`, the naive two-sample consumption rate per minute `numeric(14,2)`, the ETA to
full at the refill rate alone and the naive exhaustion projection `numeric(14,2)` — each
rounded to hundredths half away from zero, as `numeric` rounds, and written with both
decimals (`12.50`). Traffic: a diurnal curve with noise and bursts, refill steps; DICT's
response time has milliseconds, `created_at` (the legacy's insert time) microseconds, one per
batch.

    python3 benches/legacy_history.py --months 13 --out states.csv   # 30 policies, 5 min
"""

import argparse
import datetime as dt
import math
import random
import sys

NAMES = [
    "CIDS_ENTRIES_READ", "CIDS_EVENTS_LIST", "CIDS_FILES_READ", "CIDS_FILES_WRITE",
    "CLAIMS_LIST_WITHOUT_ROLE", "CLAIMS_LIST_WITH_ROLE", "CLAIMS_READ", "CLAIMS_WRITE",
    "ENTRIES_READ_PARTICIPANT_ANTISCAN", "ENTRIES_STATISTICS_READ", "ENTRIES_UPDATE",
    "ENTRIES_WRITE", "EVENT_LIST", "FRAUD_MARKERS_LIST", "FRAUD_MARKERS_READ",
    "FRAUD_MARKERS_WRITE", "INFRACTION_REPORTS_LIST_WITHOUT_ROLE",
    "INFRACTION_REPORTS_LIST_WITH_ROLE", "INFRACTION_REPORTS_READ", "INFRACTION_REPORTS_WRITE",
    "KEYS_CHECK", "PERSONS_STATISTICS_READ", "POLICIES_LIST", "POLICIES_READ", "REFUNDS_READ",
    "REFUNDS_WRITE", "REFUND_LIST_WITHOUT_ROLE", "REFUND_LIST_WITH_ROLE",
    "SYNC_VERIFICATIONS_WRITE",
]
HEADER = ("endpoint_id,available_tokens,capacity,refill_tokens,refill_period_sec,psp_category,"
          "utilization_percent,consumption_rate_per_minute,recovery_eta_seconds,"
          "exhaustion_projection_seconds,response_time,created_at")


def hundredths(num, den):
    """num/den rounded to hundredths half away from zero, as text with two decimals."""
    q = (2 * abs(num) + abs(den)) // (2 * abs(den))
    k = -q if (num < 0) != (den < 0) else q
    sign = "-" if k < 0 else ""
    return f"{sign}{abs(k) // 100}.{abs(k) % 100:02d}"


def timestamp(t, digits):
    """PostgreSQL's timestamptz text in UTC: fractional digits without trailing zeros."""
    text = t.strftime("%Y-%m-%d %H:%M:%S")
    frac = f"{t.microsecond:06d}"[:digits].rstrip("0")
    return f"{text}.{frac}+00" if frac else f"{text}+00"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--months", type=int, default=13)
    ap.add_argument("--policies", type=int, default=30)
    ap.add_argument("--interval", type=int, default=300, help="seconds between polls")
    ap.add_argument("--end", default="2026-12-01T00:00:00+00:00")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="-")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    end = dt.datetime.fromisoformat(args.end)
    start = end - dt.timedelta(days=round(args.months * 30.44))
    start = start.replace(second=0, microsecond=0, minute=start.minute - start.minute % 5)
    policies = []
    for i in range(args.policies):
        name = NAMES[i % len(NAMES)] + ("" if i < len(NAMES) else f"_{i // len(NAMES)}")
        capacity = rng.choice([20, 50, 100, 200, 1000, 2000, 5000, 18000, 36000])
        refill = max(1, capacity // rng.choice([10, 20, 60, 100]))
        period = rng.choice([1, 60])
        # Mean consumption per poll: 10–60 % of what refills in a poll.
        per_poll = refill * args.interval / period
        policies.append({
            "name": name, "capacity": capacity, "refill": refill, "period": period,
            "mean": per_poll * rng.uniform(0.1, 0.6), "level": capacity, "prev": None,
        })
    out = sys.stdout if args.out == "-" else open(args.out, "w", buffering=1 << 20)
    out.write(HEADER + "\n")
    category = "C"
    tick = start
    step = dt.timedelta(seconds=args.interval)
    rows = 0
    while tick < end:
        at = tick + dt.timedelta(milliseconds=rng.randint(20, 120))
        created = at + dt.timedelta(microseconds=rng.randint(1_000, 15_000))
        hour = tick.hour + tick.minute / 60
        diurnal = 0.25 + 0.75 * max(0.0, math.sin(math.pi * (hour - 6) / 16))
        at_ms = int(at.timestamp() * 1000 + 0.5)
        for p in policies:
            c, r, per = p["capacity"], p["refill"], p["period"]
            refilled = r * (args.interval // per)
            burst = rng.random() < 0.003
            used = p["mean"] * diurnal * rng.uniform(0.5, 1.5) * (8 if burst else 1)
            level = min(c, p["level"] + refilled) - int(used)
            a = max(0, min(c, level))
            p["level"] = a
            util = hundredths(10_000 * (c - a), c)
            eta = "0.00" if a >= c else hundredths((c - a) * per * 100, r)
            rate = projection = ""
            if p["prev"] is not None:
                prev_a, prev_ms = p["prev"]
                lost, elapsed = prev_a - a, at_ms - prev_ms
                if elapsed > 0:
                    rate = hundredths(lost * 6_000_000, elapsed) if lost > 0 else "0.00"
                    if a <= 0:
                        projection = "0.00"
                    elif lost > 0:
                        projection = hundredths(a * elapsed, 10 * lost)
            elif a <= 0:
                projection = "0.00"
            p["prev"] = (a, at_ms)
            out.write(f"{p['name']},{a},{c},{r},{per},{category},{util},{rate},{eta},{projection},"
                      f"{timestamp(at, 3)},{timestamp(created, 6)}\n")
            rows += 1
        tick += step
    if out is not sys.stdout:
        out.close()
    print(f"{rows} rows, {args.policies} policies every {args.interval} s, "
          f"{start:%Y-%m-%d} to {end:%Y-%m-%d}", file=sys.stderr)


if __name__ == "__main__":
    main()
