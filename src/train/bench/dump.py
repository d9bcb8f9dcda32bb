"""Synthetic platform dumps for the scale benchmark: corpus listings made unique by a SKU suffix,
with a share of rows re-posting an earlier text under a new id, as real dumps do."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from reportguard.core import paths


def make_dump(path: Path, rows: int, repeat_share: float = 0.3, seed: int = 0) -> Path:
    """A synthetic platform dump: corpus listings with a varying SKU suffix (so texts are unique),
    of which `repeat_share` repeat an earlier text under a new id, as real dumps do. Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ..corpus import load_split
    base = [r for s in ("train", "validation", "test") for r in load_split(paths.labelled_dir(), s)]
    rng = np.random.default_rng(seed)
    writer, made, batch = None, 0, 100_000
    uniques: list[int] = []
    while made < rows:
        n = min(batch, rows - made)
        repeat = rng.random(n) < repeat_share
        ids, titles, descs, shops, platforms = [], [], [], [], []
        for k in range(n):
            i = made + k
            if repeat[k] and uniques:
                j = uniques[int(rng.integers(0, len(uniques)))]
            else:
                j = i
                uniques.append(i)
            r = base[j % len(base)]
            ids.append(f"L{i:09d}")
            titles.append(f"{r['title']} 款{j // len(base)}")
            descs.append(r["description"])
            shops.append(r["shop_name"] or f"shop{j % 5000}")
            platforms.append(r["platform"])
        table = pa.table({"listing_id": ids, "title": titles, "description": descs, "platform": platforms, "shop_name": shops})
        writer = writer or pq.ParquetWriter(str(path), table.schema)
        writer.write_table(table)
        made += n
    writer.close()
    return path
