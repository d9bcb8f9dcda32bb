"""reportguard: find listings that sell counterfeit inspection and testing reports (市监检测发〔2021〕54号).

From Python (needs the `serve` extra)::

    import reportguard
    scorer = reportguard.load()            # $REPORTGUARD_MODEL, else models/current in the project home
    rows = scorer.score([{"listing_id": "1", "title": "代办质检报告 当天出"}])

`load` and `Scorer` live in reportguard/api.py; importing this package imports neither
onnxruntime nor tokenizers (the `reportguard` command starts from here).
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("reportguard")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["Scorer", "__version__", "load"]


def load(path=None, **kwargs):
    """A Scorer over a model bundle; see reportguard.api.load."""
    from .api import load as _load
    return _load(path, **kwargs)


def __getattr__(name: str):
    if name == "Scorer":
        from .api import Scorer
        return Scorer
    raise AttributeError(f"module 'reportguard' has no attribute {name!r}")
