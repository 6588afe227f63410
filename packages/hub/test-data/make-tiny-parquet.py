# Regenerates tiny*.parquet, the fixtures of read-parquet-rows.test.ts (pyarrow 25, snappy, the defaults
# Hugging Face `datasets` uses). Columns mimic GEdit-Bench: strings, a nullable string, numbers,
# an image struct {bytes, path} with non-UTF-8 bytes, and a list column.
import pyarrow as pa
import pyarrow.parquet as pq

image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
table = pa.table({
    "key": pa.array(["a1", "b2", "c3"]),
    "task_type": pa.array(["background_change", "color_alter", None]),
    "instruction": pa.array(["Make the sky red", "把杯子变成蓝色", "Remove the cat"]),
    "score": pa.array([0.5, -1.25, 3.0], pa.float64()),
    "n": pa.array([1, 2**40, -3], pa.int64()),
    "ok": pa.array([True, False, True]),
    "input_image": pa.array([{"bytes": b"\x89PNG\x00\xff", "path": "a.png"}, {"bytes": b"", "path": None}, None], image),
    "tags": pa.array([["x", "y"], [], None], pa.list_(pa.string())),
})
pq.write_table(table, "tiny.parquet", compression="snappy")
for codec in ["gzip", "brotli", "zstd"]:
    pq.write_table(table, f"tiny-{codec}.parquet", compression=codec)
