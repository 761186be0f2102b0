"""Column chunks written straight into the on-disk layout `datasets.load_from_disk` reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from bayling.tokenize.chunks import ColumnChunk


def parse_size(text: str) -> int:
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "B": 1}
    upper = text.strip().upper()
    for unit in sorted(units, key=len, reverse=True):
        if upper.endswith(unit):
            return int(float(upper[: -len(unit)]) * units[unit])
    return int(upper)


def write_split(chunks: Iterator[ColumnChunk], split_dir: Path, max_shard_bytes: int, fingerprint: str) -> int:
    """Write chunks straight into the layout `datasets.load_from_disk` reads (Arrow stream shards plus
    state.json and dataset_info.json), rotating shards at `max_shard_bytes`; returns rows written.

    Writing the final files directly, rather than building a Dataset and calling save_to_disk, keeps
    memory flat (nothing is re-read through a memory map) and writes every byte once.
    """
    import pyarrow as pa
    from datasets import DatasetInfo, Features

    split_dir.mkdir(parents=True, exist_ok=True)
    shards: list[Path] = []
    writer, sink, schema, rows = None, None, None, 0
    try:
        for chunk in chunks:
            batch = chunk.record_batch()
            schema = schema or batch.schema
            if writer is None or sink.tell() >= max_shard_bytes:
                if writer is not None:
                    writer.close()
                    sink.close()
                shards.append(split_dir / f".shard-{len(shards):05d}.arrow")
                sink = pa.OSFile(str(shards[-1]), "wb")
                writer = pa.ipc.new_stream(sink, schema)
            writer.write_batch(batch)
            rows += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
            sink.close()
    if not rows:
        return 0
    names = []
    for i, shard in enumerate(shards):
        name = f"data-{i:05d}-of-{len(shards):05d}.arrow"
        shard.rename(split_dir / name)
        names.append({"filename": name})
    DatasetInfo(features=Features.from_arrow_schema(schema)).write_to_directory(str(split_dir))
    state = {"_data_files": names, "_fingerprint": fingerprint[:16], "_format_columns": None, "_format_kwargs": {},
             "_format_type": None, "_output_all_columns": False, "_split": None}
    (split_dir / "state.json").write_text(json.dumps(state, indent=2) + "\n", "utf-8")
    return rows
