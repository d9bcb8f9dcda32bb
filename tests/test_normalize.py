"""normalize_text: every obfuscation family maps to plain text, and ordinary text keeps its meaning."""
import pytest

from reportguard.core.normalize import (NORMALIZER_VERSION, listing_text, load_lexicon, normalize_text,
                                        normalize_with_offsets)

# (family, disguised, plain) — the plain form is what normalize_text must return.
OBFUSCATIONS = [
    ("traditional", "檢驗檢測報告 不送樣", "检验检测报告不送样"),
    ("traditional", "質檢報告當天出", "质检报告当天出"),
    ("full-width", "ＣＭＡ資質 ＣＮＡＳ認可", "cma资质 cnas认可"),
    ("full-width", "２４小时出报告", "24小时出报告"),
    ("spaces", "检 测 报 告", "检测报告"),
    ("line breaks", "检\n测\r\n报告", "检测报告"),
    ("symbols", "检*测*报*告", "检测报告"),
    ("symbols", "包·过｜不·送·样", "包过不送样"),
    ("symbols", "报-告_代-办", "报告代办"),
    ("emoji", "包🔥过", "包过"),
    ("emoji", "✅不送样✅包过", "不送样包过"),
    ("emoji", "检❤️测", "检测"),
    ("zero-width", "检\u200b测\u200d报\ufeff告", "检测报告"),
    ("homophone", "捡测报告", "检测报告"),
    ("homophone", "质简豹告", "质检报告"),
    ("homophone", "包锅 全额腿款", "包过全额退款"),
    ("homophone", "不送祥", "不送样"),
    ("pinyin initials", "bsy 检测", "不送样检测"),
    ("pinyin initials", "jc bg 代办", "检测报告代办"),
    ("pinyin initials", "zjbg当天出", "质检报告当天出"),
    ("pinyin initials", "B S Y", "不送样"),
    ("pinyin", "baoguo jiance", "包过检测"),
    ("spelled letters", "C.M.A认证", "cma认证"),
    ("contact lure", "加V详聊", "加微信详聊"),
    ("contact lure", "➕V了解", "加微信了解"),
    ("contact lure", "薇信同号", "微信同号"),
    ("contact lure", "有事vx", "有事微信"),
    ("contact lure", "威芯: abc123", "微信: abc123"),
    ("mixed", "檢*測報吿 ＣＭＡ 包🔥過，加薇信", "检测报告 cma 包过,加微信"),
]


@pytest.mark.parametrize("family,disguised,plain", OBFUSCATIONS, ids=[f"{f}:{d}" for f, d, _ in OBFUSCATIONS])
def test_obfuscation_maps_to_plain(family, disguised, plain):
    assert normalize_text(disguised) == plain


def test_every_lexicon_family_is_covered_by_a_table_row():
    families = {family for _, family in load_lexicon().values()}
    assert families == {"homophone", "lure", "pinyin"}


# Ordinary listings and prose: only NFKC, case and whitespace may change, never the words.
# (Spaces between two CJK characters go: Chinese needs none, and sellers use them to split words.)
ORDINARY = [
    ("宝宝奶瓶 PPSU材质 附SGS检测报告", "宝宝奶瓶 ppsu材质附sgs检测报告"),
    ("拥抱告别过去，确保告知消费者", "拥抱告别过去,确保告知消费者"),
    ("宝宝过敏怎么办？简单测试一下", "宝宝过敏怎么办?简单测试一下"),
    ("Food grade 304 stainless steel, 3.5 inch", "food grade 304 stainless steel, 3.5 inch"),
    ("价格：128元/件，满200包邮", "价格:128元/件,满200包邮"),
    ("联系电话 138 1234 5678", "联系电话 138 1234 5678"),
    ("jcb信用卡 abs材质 bgm很好听", "jcb信用卡 abs材质 bgm很好听"),
    ("乾隆年间的故事", "乾隆年间的故事"),
    ("检测周期5-7个工作日，需寄送样品", "检测周期5-7个工作日,需寄送样品"),
    ("第一行\n第二行", "第一行第二行"),
]


@pytest.mark.parametrize("text,expected", ORDINARY)
def test_ordinary_text_keeps_its_words(text, expected):
    assert normalize_text(text) == expected


def test_normalisation_is_idempotent():
    for _, disguised, plain in OBFUSCATIONS:
        assert normalize_text(plain) == plain
    for _, expected in ORDINARY:
        assert normalize_text(expected) == expected


def test_offsets_point_back_into_the_original():
    original = "【爆款】檢*測報告 ＣＭＡ 包🔥过"
    norm, offsets = normalize_with_offsets(original)
    assert len(offsets) == len(norm)
    assert offsets == sorted(offsets)
    start = norm.index("包过")
    # the span of 包过 in the original includes the emoji between the two characters
    assert original[offsets[start]:offsets[start + 1] + 1] == "包🔥过"
    start = norm.index("cma")
    assert original[offsets[start]:offsets[start + 2] + 1] == "ＣＭＡ"


def test_offsets_of_lexicon_replacements_cover_the_variant():
    original = "加薇信 bsy"
    norm, offsets = normalize_with_offsets(original)
    assert norm == "加微信不送样"
    i = norm.index("不送样")
    assert original[offsets[i]:offsets[i + 2] + 1] == "bsy"


def test_listing_text_joins_title_and_description():
    assert listing_text("檢測", "") == "检测"
    assert listing_text("质检报告", "寄样检测") == "质检报告 寄样检测"


def test_version_names_rules_and_lexicon():
    major, digest = NORMALIZER_VERSION.split(".")
    assert major.isdigit() and len(digest) == 10


# --- the fast paths against a per-character reference ----------------------------------------
# normalize_with_offsets takes whole-string shortcuts (str.translate, str.lower, regexes, a
# lexicon prefilter) because the scorer runs it on every row of a dump. This is the rule set
# written the slow, obvious way, one character at a time; the two must agree on text and offsets.

def _reference(text: str) -> tuple[str, list[int]]:
    import re
    import unicodedata

    from reportguard.core import normalize as n

    def cjk(ch):
        return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or "\uf900" <= ch <= "\ufaff"

    def decorations(pairs):
        kept = [(c, s) for c, s in pairs if not n._is_pictograph(c)]
        out, i = [], 0
        while i < len(kept):
            c = kept[i][0]
            if c in n._SEPARATORS and out and cjk(out[-1][0]):
                j = i
                while j < len(kept) and kept[j][0] in n._SEPARATORS:
                    j += 1
                if j < len(kept) and cjk(kept[j][0]):
                    i = j
                    continue
            out.append(kept[i])
            i += 1
        return out

    pairs = []
    for i, ch in enumerate(text):
        if ch in n._INVISIBLE:
            continue
        ch = n._PLUS_LIKE.get(ch, ch)
        if unicodedata.category(ch) == "Cc":
            ch = "\n" if ch in "\n\r" else " "
        pairs += [(c, i) for c in (unicodedata.normalize("NFKC", ch) if ord(ch) > 127 else ch)]
    joined = "".join(c for c, _ in pairs)
    converted = n._converter().convert(joined)
    if len(converted) == len(joined):
        pairs = [(c, s) for c, (_, s) in zip(converted, pairs)]
    else:
        converted, src = n._realign(joined, converted, [s for _, s in pairs])
        pairs = list(zip(converted, src))
    pairs = decorations([(out, s) for c, s in pairs for out in c.lower()])
    lexicon = n.load_lexicon()
    for pattern, repl in ((n._SPELLED_LATIN, lambda m: re.sub(r"[^a-z]", "", m.group())),
                          (n._lexicon_regex(), lambda m: lexicon[m.group()][0])):
        text_now, src = n._sub_with_offsets(pattern, repl, "".join(c for c, _ in pairs), [s for _, s in pairs])
        pairs = list(zip(text_now, src))
    out = []
    for c, s in decorations(pairs):
        if c.isspace():
            if not out or out[-1][0] == " ":
                continue
            c = " "
        out.append((c, s))
    if out and out[-1][0] == " ":
        out.pop()
    return "".join(c for c, _ in out), [s for _, s in out]


def test_fast_paths_match_the_per_character_rules():
    import random

    from reportguard.core.normalize import normalize_with_offsets
    # Everything the rules treat specially: traditional and full-width forms, separators (丨 is
    # both a separator and CJK), emoji, invisible and control characters, characters NFKC makes
    # several of (①, ﬁ, ㈱), a capital sigma (lowered by context) and İ (lowers to two).
    pool = list("检測報告包过ＣＭＡcma 　\t\n\r*·•・.．_-~|^`'\"#=丨/，。！？🔥➕✚\u200b\ufeff\u00adΣσςİIiAé\u0301\ufe0f😀"
                "ｂｓｙ薇信加V\x07\x0b\u2028①ﬁ㈱") + ["bsy", "c.m.a", "b s y", "檢*測", "不送洋", "jcbg", "加vx"]
    rng = random.Random(14)
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    texts += ["汤锅 不粘 家用 煮面", "檢測報告 ＣＭＡ 包🔥过，加薇信", "  bsy 检测  ", "过丨 a", "过 丨检"]
    for text in texts:
        assert normalize_with_offsets(text) == _reference(text), repr(text)
