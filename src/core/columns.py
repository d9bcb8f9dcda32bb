"""Column mapping and takedown reason codes: configs/columns.yaml and configs/takedown_reasons.yaml
in the project home when it has them, else the defaults packaged with reportguard (core/paths.py)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from .errors import InputError
from .labels import check_model_labels
from .paths import config_file


def load_column_map(path: str | Path | None = None) -> dict[str, str]:
    """alias -> canonical column name, from `path`, else the home's configs/columns.yaml, else the
    packaged default (so an installed scorer maps Chinese headers too).

    >>> load_column_map()["商品ID"], load_column_map()["商品标题"]
    ('listing_id', 'title')
    """
    path = Path(path) if path else config_file("columns.yaml")
    if not path.is_file():
        raise InputError(f"{path}: column mapping file not found")
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    mapping: dict[str, str] = {}
    for canonical, aliases in (spec.get("aliases") or {}).items():
        for alias in aliases or []:
            mapping[str(alias)] = canonical
            mapping[str(alias).lower()] = canonical
    return mapping


class ReasonCodes:
    """Maps a takedown export's reason codes to model labels (takedown_reasons.yaml, see load_column_map)."""

    def __init__(self, path: str | Path | None = None):
        path = Path(path) if path else config_file("takedown_reasons.yaml")
        if not path.is_file():
            raise InputError(f"{path}: reason-code mapping file not found")
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        self.path = path
        self.column: str = spec.get("reason_column", "takedown_reason")
        self.codes: dict[str, list[str]] = {
            str(code): check_model_labels(list(labels)) for code, labels in spec["codes"].items()
        }

    def labels_for(self, value: str) -> list[str]:
        """Union of the labels of every code in `value` ("A|B", "A;B" or "A,B"), in model order.

        Raises KeyError naming the code if one is unknown.
        """
        labels: set[str] = set()
        for code in filter(None, (c.strip() for c in re.split(r"[|;,]", value or ""))):
            if code not in self.codes:
                raise KeyError(f"unknown takedown reason code {code!r}; add it to {self.path}")
            labels.update(self.codes[code])
        from .labels import MODEL_LABELS
        return [name for name in MODEL_LABELS if name in labels]
