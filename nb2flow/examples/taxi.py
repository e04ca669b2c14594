"""Synthetic NYC green-taxi trip data with the public TLC schema, for offline examples.

The files are named and typed like the public ones (``green_tripdata_2021-01.parquet``), so
a notebook written against the real data set runs unchanged on them::

    python -m nb2flow.examples.taxi --out data --months 2021-01 2021-02 --rows 70000 --seed 1

What is realistic about them, and why: trip durations grow with distance and are slower in
busy zones and at rush hour, so the duration model has something to learn from the zone
pair (``PU_DO``) and the distance; about 3% of trips are outliers that the usual cleaning
step (keep 1 to 60 minutes) removes; a few percent of rows have the nulls the real files
have (street-hail rows missing RatecodeID, passenger_count, payment_type ...).

Everything is vectorised numpy, so 70,000 rows take a fraction of a second, and the output
is a pure function of ``(month, rows, seed)``.
"""

from __future__ import annotations

import argparse
import calendar
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

N_ZONES = 265  # TLC taxi zones are numbered 1..265 (264/265 are "unknown")
DEFAULT_ROWS = 70_000
#: fraction of trips under a minute (meter started and stopped) and over an hour
SHORT_OUTLIERS = 0.02
LONG_OUTLIERS = 0.012

#: column -> pyarrow type name, in the order of the public files
SCHEMA: dict[str, str] = {
    "VendorID": "int64",
    "lpep_pickup_datetime": "timestamp[us]",
    "lpep_dropoff_datetime": "timestamp[us]",
    "store_and_fwd_flag": "string",
    "RatecodeID": "double",
    "PULocationID": "int64",
    "DOLocationID": "int64",
    "passenger_count": "double",
    "trip_distance": "double",
    "fare_amount": "double",
    "extra": "double",
    "mta_tax": "double",
    "tip_amount": "double",
    "tolls_amount": "double",
    "ehail_fee": "double",
    "improvement_surcharge": "double",
    "total_amount": "double",
    "payment_type": "double",
    "trip_type": "double",
    "congestion_surcharge": "double",
}


def file_name(month: str) -> str:
    """The public file name for a month such as ``2021-01``."""
    return f"green_tripdata_{month}.parquet"


def _parse_month(month: str) -> tuple[int, int]:
    try:
        year_s, mon_s = month.split("-")
        year, mon = int(year_s), int(mon_s)
        if not (1 <= mon <= 12 and 2000 <= year <= 2100) or len(mon_s) != 2:
            raise ValueError
    except ValueError:
        from nb2flow.errors import Nb2flowError

        raise Nb2flowError(f"bad month {month!r}: expected YYYY-MM, e.g. 2021-01") from None
    return year, mon


def _zones() -> dict[str, np.ndarray]:
    """The fixed city: zone positions, popularity and congestion (the same for every month)."""
    import numpy as np

    rng = np.random.default_rng(2021)
    ids = np.arange(1, N_ZONES + 1)
    # positions in miles; green taxis serve the outer boroughs, mostly short local trips
    xy = rng.uniform([0, 0], [8, 10], size=(N_ZONES, 2))
    # Zipf-like popularity over a random order of zones: a few hubs, a long tail
    rank = rng.permutation(N_ZONES) + 1
    popularity = 1.0 / (rank + 3.0) ** 1.1
    popularity[-2:] *= 0.05  # 264/265 "unknown"
    popularity /= popularity.sum()
    # typical speed through a zone, mph: busy zones slow, outer zones fast
    speed = rng.uniform(10.0, 24.0, size=N_ZONES)
    # zones "in Manhattan below 96th street" pay the congestion surcharge
    manhattan = rng.random(N_ZONES) < 0.25
    return {
        "ids": ids,
        "xy": xy,
        "popularity": popularity,
        "speed": speed,
        "manhattan": manhattan,
    }


def generate_month(month: str, rows: int = DEFAULT_ROWS, seed: int = 0) -> pd.DataFrame:
    """One month of trips as a DataFrame with the public schema's dtypes."""
    import numpy as np
    import pandas as pd

    year, mon = _parse_month(month)
    if rows < 0:
        raise ValueError("rows must be >= 0")
    # one stream per (seed, month), so months differ and each is reproducible on its own
    rng = np.random.default_rng([seed, year, mon])
    z = _zones()
    n = rows

    # --- where: pickup by popularity; dropoff mostly near the pickup -----------------------
    pu_idx = rng.choice(N_ZONES, size=n, p=z["popularity"])
    near = rng.random(n) < 0.7
    do_idx = np.where(
        near,
        _nearby_zone(rng, z["xy"], pu_idx),
        rng.choice(N_ZONES, size=n, p=z["popularity"]),
    )
    gap = np.linalg.norm(z["xy"][pu_idx] - z["xy"][do_idx], axis=1)
    detour = rng.uniform(1.15, 1.5, size=n)
    same = pu_idx == do_idx
    distance = np.where(same, rng.lognormal(0.0, 0.6, size=n), gap * detour)
    distance = np.round(np.clip(distance, 0.01, 60.0), 2)
    distance[rng.random(n) < 0.01] = 0.0  # the real files have zero-distance trips

    # --- when: days uniform, hours with a day-time profile ---------------------------------
    days = calendar.monthrange(year, mon)[1]
    hour_weights = np.array(
        [2, 1.5, 1, 0.8, 0.8, 1.2, 2.5, 4, 5, 4.5, 4, 4, 4.2, 4.3, 4.6, 5, 5.3, 5.5, 5, 4.2, 3.5,
         3, 2.7, 2.3]
    )  # fmt: skip
    hour = rng.choice(24, size=n, p=hour_weights / hour_weights.sum())
    start = np.datetime64(f"{year:04d}-{mon:02d}-01T00:00:00", "s")
    offset_s = rng.integers(0, days, size=n) * 86400 + hour * 3600 + rng.integers(0, 3600, size=n)
    pickup = start + offset_s.astype("timedelta64[s]")

    # --- how long: distance / speed, slower in busy zones and at rush hour ------------------
    speed = (z["speed"][pu_idx] + z["speed"][do_idx]) / 2
    rush = np.isin(hour, [7, 8, 9, 16, 17, 18, 19])
    speed = speed * np.where(rush, 0.8, 1.0) * rng.lognormal(0.0, 0.15, size=n)
    minutes = distance / speed * 60 + rng.gamma(2.0, 1.2, size=n)  # + waiting at lights
    # outliers the usual cleaning removes: meter flicks (< 1 min) and forgotten meters (> 1 h)
    u = rng.random(n)
    short = u < SHORT_OUTLIERS
    long = (u >= SHORT_OUTLIERS) & (u < SHORT_OUTLIERS + LONG_OUTLIERS)
    minutes = np.where(short, rng.uniform(0.0, 0.95, size=n), minutes)
    minutes = np.where(long, rng.uniform(61.0, 24 * 60.0, size=n), minutes)
    minutes = np.clip(minutes, 0.0, None)
    dropoff = pickup + np.round(minutes * 60).astype("timedelta64[s]")

    # --- money -----------------------------------------------------------------------------
    ratecode = rng.choice([1.0, 2.0, 3.0, 4.0, 5.0], size=n, p=[0.94, 0.01, 0.005, 0.005, 0.04])
    fare = 2.5 + 2.5 * distance + 0.35 * np.minimum(minutes, 120)
    fare = np.where(ratecode == 2.0, 52.0, fare)
    fare = np.where(ratecode == 5.0, np.round(rng.uniform(5, 60, size=n)), fare)
    fare = np.round(fare * 2) / 2
    night = (hour >= 20) | (hour < 6)
    extra = np.where(night, 0.5, 0.0) + np.where(rush & ~night, 1.0, 0.0)
    mta_tax = np.where(ratecode == 5.0, 0.0, 0.5)
    payment = rng.choice([1.0, 2.0, 3.0, 4.0], size=n, p=[0.52, 0.45, 0.02, 0.01])
    tip = np.where(payment == 1.0, np.round(fare * rng.uniform(0.0, 0.25, size=n), 2), 0.0)
    tolls = np.where(rng.random(n) < 0.02, 6.12, 0.0)
    improvement = np.full(n, 0.3)
    congestion = np.where(z["manhattan"][do_idx] & (rng.random(n) < 0.9), 2.75, 0.0)

    vendor = rng.choice([1, 2], size=n, p=[0.2, 0.8]).astype("int64")
    passengers = rng.choice([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], size=n,
                            p=[0.02, 0.83, 0.08, 0.02, 0.01, 0.03, 0.01])  # fmt: skip
    flag = np.where(rng.random(n) < 0.003, "Y", "N").astype(object)
    trip_type = np.where(ratecode == 5.0, 2.0, 1.0)

    # --- the nulls of the real files: ~6% of rows come from devices that send only the basics
    bare = rng.random(n) < 0.06
    congestion = np.where(bare, np.nan, congestion)  # unknown, and not charged
    charged = np.nan_to_num(congestion)
    total = np.round(fare + extra + mta_tax + tip + tolls + improvement + charged, 2)
    nan = np.nan
    df = pd.DataFrame(
        {
            "VendorID": vendor,
            "lpep_pickup_datetime": pickup.astype("datetime64[us]"),
            "lpep_dropoff_datetime": dropoff.astype("datetime64[us]"),
            "store_and_fwd_flag": np.where(bare, np.array(None, dtype=object), flag),
            "RatecodeID": np.where(bare, nan, ratecode),
            "PULocationID": z["ids"][pu_idx].astype("int64"),
            "DOLocationID": z["ids"][do_idx].astype("int64"),
            "passenger_count": np.where(bare, nan, passengers),
            "trip_distance": distance,
            "fare_amount": fare,
            "extra": extra,
            "mta_tax": mta_tax,
            "tip_amount": tip,
            "tolls_amount": tolls,
            "ehail_fee": np.full(n, nan),
            "improvement_surcharge": improvement,
            "total_amount": total,
            "payment_type": np.where(bare, nan, payment),
            "trip_type": np.where(bare, nan, trip_type),
            "congestion_surcharge": congestion,
        }
    )
    # the public files are in pickup order within a vendor's upload; sorting by pickup is close
    df = df.sort_values("lpep_pickup_datetime", kind="stable", ignore_index=True)
    return df


def _nearby_zone(rng: np.random.Generator, xy: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """For each pickup zone, one of its 20 nearest zones (itself included)."""
    import numpy as np

    d = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=2)
    nearest = np.argsort(d, axis=1)[:, :20]
    return nearest[idx, rng.integers(0, 20, size=len(idx))]


def to_arrow(df: pd.DataFrame):
    """The frame as a pyarrow Table with exactly the public files' schema."""
    import pyarrow as pa

    def arrow_type(name: str) -> pa.DataType:
        if name.startswith("timestamp"):
            return pa.timestamp("us")
        return {"int64": pa.int64(), "double": pa.float64(), "string": pa.string()}[name]

    schema = pa.schema([(col, arrow_type(t)) for col, t in SCHEMA.items()])
    return pa.Table.from_pandas(df, schema=schema, preserve_index=False)


def write_month(out: str | Path, month: str, rows: int = DEFAULT_ROWS, seed: int = 0) -> Path:
    """Generate one month and write ``<out>/green_tripdata_<month>.parquet``. Returns the path."""
    import pyarrow.parquet as pq

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / file_name(month)
    pq.write_table(to_arrow(generate_month(month, rows, seed)), path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nb2flow.examples.taxi",
        description="Write synthetic NYC green-taxi trip files with the public TLC schema.",
    )
    parser.add_argument("--out", default="data", help="directory to write to (default: data)")
    parser.add_argument(
        "--months", nargs="+", default=["2021-01", "2021-02"], metavar="YYYY-MM",
        help="months to generate (default: 2021-01 2021-02)",
    )  # fmt: skip
    parser.add_argument(
        "--rows", type=int, default=DEFAULT_ROWS, help=f"trips per month (default: {DEFAULT_ROWS})"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error("--rows must be >= 0")
    from nb2flow.errors import Nb2flowError

    try:
        for month in args.months:
            path = write_month(args.out, month, args.rows, args.seed)
            print(f"wrote {path} ({args.rows:,} trips)")
    except Nb2flowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
