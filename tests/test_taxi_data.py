"""The synthetic green-taxi generator: schema, determinism, and the shape of the data."""

from __future__ import annotations

import subprocess
import sys

import pytest

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")
pq = pytest.importorskip("pyarrow.parquet")

from nb2flow.examples import taxi  # noqa: E402

# The public file's schema (green_tripdata_2021-01.parquet as published by the TLC).
PUBLIC_COLUMNS = [
    "VendorID",
    "lpep_pickup_datetime",
    "lpep_dropoff_datetime",
    "store_and_fwd_flag",
    "RatecodeID",
    "PULocationID",
    "DOLocationID",
    "passenger_count",
    "trip_distance",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "ehail_fee",
    "improvement_surcharge",
    "total_amount",
    "payment_type",
    "trip_type",
    "congestion_surcharge",
]


def _minutes(df):
    return (df.lpep_dropoff_datetime - df.lpep_pickup_datetime).dt.total_seconds() / 60


def test_cli_writes_public_file_names_and_arrow_schema(tmp_path):
    out = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "nb2flow.examples.taxi", "--out", str(out),
         "--months", "2021-01", "2021-02", "--rows", "2000", "--seed", "3"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "green_tripdata_2021-02.parquet" in proc.stdout
    files = sorted(p.name for p in out.iterdir())
    assert files == ["green_tripdata_2021-01.parquet", "green_tripdata_2021-02.parquet"]
    schema = pq.read_schema(out / files[0])
    assert schema.names == PUBLIC_COLUMNS
    assert str(schema.field("lpep_pickup_datetime").type) == "timestamp[us]"
    assert str(schema.field("PULocationID").type) == "int64"
    assert str(schema.field("store_and_fwd_flag").type) == "string"
    assert str(schema.field("RatecodeID").type) == "double"
    assert pq.read_metadata(out / files[0]).num_rows == 2000


def test_pandas_dtypes_match_the_public_file():
    df = taxi.generate_month("2021-01", rows=500, seed=1)
    assert list(df.columns) == PUBLIC_COLUMNS
    assert df["VendorID"].dtype == "int64"
    assert df["PULocationID"].dtype == "int64" and df["DOLocationID"].dtype == "int64"
    assert pd.api.types.is_datetime64_any_dtype(df["lpep_pickup_datetime"])
    for col in ["RatecodeID", "passenger_count", "trip_distance", "total_amount", "ehail_fee"]:
        assert df[col].dtype == "float64", col
    assert df["ehail_fee"].isna().all()  # never filled in the 2021 files


def test_deterministic_by_seed_and_month():
    a = taxi.generate_month("2021-01", rows=3000, seed=7)
    b = taxi.generate_month("2021-01", rows=3000, seed=7)
    pd.testing.assert_frame_equal(a, b)
    c = taxi.generate_month("2021-01", rows=3000, seed=8)
    assert not a["trip_distance"].equals(c["trip_distance"])
    feb = taxi.generate_month("2021-02", rows=3000, seed=7)
    assert not a["trip_distance"].equals(feb["trip_distance"])
    # every pickup falls inside its month
    assert feb.lpep_pickup_datetime.min() >= pd.Timestamp("2021-02-01")
    assert feb.lpep_pickup_datetime.max() < pd.Timestamp("2021-03-01")


def test_outlier_tail_the_notebook_filters():
    df = taxi.generate_month("2021-01", rows=20_000, seed=0)
    minutes = _minutes(df)
    short, long = (minutes < 1).mean(), (minutes > 60).mean()
    # a visible tail on both sides, but most trips are kept by the 1..60 minute filter
    assert 0.01 < short < 0.05
    assert 0.005 < long < 0.05
    assert ((minutes >= 1) & (minutes <= 60)).mean() > 0.9
    assert minutes.max() > 120  # forgotten meters run for hours


def test_duration_depends_on_distance_and_zones():
    df = taxi.generate_month("2021-01", rows=20_000, seed=0)
    minutes = _minutes(df)
    kept = df[(minutes >= 1) & (minutes <= 60)].assign(duration=minutes)
    assert np.corrcoef(kept.trip_distance, kept.duration)[0, 1] > 0.7
    # minutes per mile differ between pickup zones (congestion), not only by distance
    busy = kept[kept.trip_distance > 1].assign(pace=lambda d: d.duration / d.trip_distance)
    by_zone = busy.groupby("PULocationID").pace.median()
    by_zone = by_zone[busy.PULocationID.value_counts().reindex(by_zone.index) > 50]
    assert by_zone.max() / by_zone.min() > 1.3
    # many zones, a few hubs
    counts = df.PULocationID.value_counts(normalize=True)
    assert df.PULocationID.between(1, 265).all() and len(counts) > 100
    assert counts.iloc[0] > 5 * counts.median()


def test_fares_add_up_and_nulls_like_the_public_files():
    df = taxi.generate_month("2021-01", rows=5000, seed=2)
    parts = ["fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount"]
    parts += ["improvement_surcharge", "congestion_surcharge"]
    total = df[parts].fillna(0).sum(axis=1)
    assert np.allclose(total, df.total_amount, atol=0.011)
    missing = df.RatecodeID.isna().mean()
    assert 0.02 < missing < 0.1
    assert (df.RatecodeID.isna() == df.payment_type.isna()).all()
    assert (df.fare_amount > 0).all()


def test_default_size_is_about_a_month_of_trips():
    df = taxi.generate_month("2021-01", seed=0)
    assert len(df) == taxi.DEFAULT_ROWS == 70_000


def test_bad_month_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "nb2flow.examples.taxi", "--out", str(tmp_path),
         "--months", "2021-13", "--rows", "10"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "bad month '2021-13'" in proc.stderr
    assert "Traceback" not in proc.stderr
