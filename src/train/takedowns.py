"""Turn a platform's takedown export into labelled rows in the corpus format.

Labels come from the export's reason codes through configs/takedown_reasons.yaml; columns through
configs/columns.yaml. Rows the loader rejects, and rows with unknown reason codes, are written to
OUTPUT.rejects.jsonl with their reason; the summary's counts reconcile.
"""
from __future__ import annotations

import json
from pathlib import Path

from reportguard.core.columns import ReasonCodes, load_column_map
from reportguard.core.records import ReadOptions, Reject, iter_chunks


def import_takedowns(inputs: list[str], output: Path, reasons: str | None = None, columns: str | None = None) -> dict:
    codes = ReasonCodes(reasons)
    options = ReadOptions(column_map=load_column_map(columns), required=("listing_id", "title", codes.column))
    rows_in = accepted = 0
    rejects: list[Reject] = []
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as out:
        for chunk in iter_chunks(inputs, options):
            rows_in += chunk.rows_in
            rejects += chunk.rejects
            for r in chunk.records:
                try:
                    labels = codes.labels_for(str(r[codes.column] or ""))
                except KeyError as exc:
                    rejects.append(Reject(r["_file"], r["_line"], str(exc.args[0]), column=codes.column, listing_id=r["listing_id"]))
                    continue
                row = {"listing_id": r["listing_id"], "platform": str(r.get("platform") or ""),
                       "shop_name": str(r.get("shop_name") or ""), "title": r["title"],
                       "description": r.get("description") or "", "qualification": r.get("qualification") or "",
                       "labels": labels, "tags": []}
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                accepted += 1
    with Path(f"{output}.rejects.jsonl").open("w", encoding="utf-8") as fh:
        for rej in rejects:
            fh.write(json.dumps(rej.to_dict(), ensure_ascii=False) + "\n")
    assert rows_in == accepted + len(rejects), "row counts must reconcile"
    return {"rows_in": rows_in, "accepted": accepted, "rejected": len(rejects), "output": str(output)}
