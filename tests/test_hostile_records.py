"""Hostile inputs at the reader (core/records.py): per-line decoding of mixed encodings, a stray
byte, CR line breaks, control characters and spaces in ids, rows decided by content, truncated
archives, empty files, and the duplicate-id index that spills to disk. Rows in = accepted +
rejected in every case."""
import gzip
import json

import pytest

from reportguard.core.records import (IdIndex, InputError, ReadError, ReadOptions, SpillStore, iter_chunks, key_digest,
                                      read_records)

HEADER = "listing_id,title,description,platform,shop_name\n"


def chunks_of(path, **kw):
    return list(iter_chunks([path], ReadOptions(**kw)))


def everything(chunks):
    records = [r for c in chunks for r in c.records]
    rejects = [r for c in chunks for r in c.rejects]
    encodings = {}
    for c in chunks:
        for k, v in c.encodings.items():
            encodings[k] = encodings.get(k, 0) + v
    return records, rejects, encodings, [w for c in chunks for w in c.warnings]


def test_one_stray_byte_is_one_reject_with_its_bytes_escaped(tmp_path):
    # printf 'listing_id,title\na1,report ok\na2,bad byte \xff here\na3,towel\n' > x.csv
    path = tmp_path / "x.csv"
    path.write_bytes(b"listing_id,title\na1,report ok\na2,bad byte \xff here\na3,towel\n")
    records, rejects, encodings, warnings = everything(chunks_of(path))
    assert [r["listing_id"] for r in records] == ["a1", "a3"]
    (reject,) = rejects
    assert (reject.line, reject.column, reject.listing_id) == (3, "title", "a2")
    assert "neither UTF-8 nor GB18030" in reject.reason
    as_json = json.dumps(reject.to_dict(), ensure_ascii=False)
    as_json.encode("utf-8")  # writable: no surrogates left
    assert reject.to_dict()["raw"] == "a2,bad byte \\xff here\n"
    assert encodings == {"ascii": 2, "undecodable": 1} and not warnings


def test_utf8_then_gb18030_past_the_first_mib(tmp_path):
    utf8_rows = [f"u{i},质检报告代办 第{i}号,描述文字 {'检' * 40},淘宝,店\n" for i in range(12_000)]
    gb_rows = [f"g{i},纯棉T恤 附检测报告 {i},,京东,旗舰店\n" for i in range(50)]
    head = (HEADER + "".join(utf8_rows)).encode("utf-8")
    assert len(head) > 1 << 20
    path = tmp_path / "shards.csv"
    path.write_bytes(head + "".join(gb_rows).encode("gb18030"))
    records, rejects, encodings, warnings = everything(chunks_of(path, chunk_size=5000))
    assert not rejects and len(records) == 12_050
    assert records[-1]["title"] == "纯棉T恤 附检测报告 49" and records[0]["title"] == "质检报告代办 第0号"
    assert encodings == {"utf-8": 12_000, "gb18030": 50}
    first_gb_line = 1 + 12_000 + 1
    assert warnings == [f"{path}: line {first_gb_line}: encoding switches from UTF-8 to GB18030 (each line is decoded on its own)"]


def test_gb18030_then_utf8_is_not_mojibake(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_bytes((HEADER + "1,儿童玩具质检报告代办,不送样当天出,淘宝,某某店\n").encode("gb18030")
                     + "2,检测报告包过 一天出,,京东,店\n3,plain ascii,,x,y\n".encode("utf-8")
                     + "4,再来一行国标,,淘宝,店\n".encode("gb18030"))
    records, rejects, encodings, warnings = everything(chunks_of(path))
    assert [r["title"] for r in records] == ["儿童玩具质检报告代办", "检测报告包过 一天出", "plain ascii", "再来一行国标"]
    assert encodings == {"gb18030": 2, "utf-8": 1, "ascii": 1} and not rejects
    # ASCII lines are valid in both and switch nothing; each real switch is named once.
    assert [w.split(": ", 1)[1] for w in warnings] == [
        "line 3: encoding switches from GB18030 to UTF-8 (each line is decoded on its own)",
        "line 5: encoding switches from UTF-8 to GB18030 (each line is decoded on its own)"]


def test_a_file_that_is_all_gb18030(tmp_path):
    text = HEADER + "".join(f"{i},检测报告代办 {i} 号,不送样,淘宝,某店\n" for i in range(300)) + '301,"两行\n标题",,淘宝,店\n'
    path = tmp_path / "gb.csv.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(text.encode("gb18030"))
    records, rejects, encodings, warnings = everything(chunks_of(path, chunk_size=100))
    assert len(records) == 301 and not rejects and not warnings
    assert records[-1]["title"] == "两行\n标题"
    assert encodings == {"gb18030": 301}


def test_jsonl_with_cr_only_line_endings(tmp_path):
    rows = [{"listing_id": str(i), "title": f"检测报告 {i}"} for i in range(5)]
    path = tmp_path / "mac.jsonl"
    path.write_bytes("\r".join(json.dumps(r, ensure_ascii=False) for r in rows).encode("utf-8") + b"\r")
    records, rejects = read_records(path)
    assert [r["listing_id"] for r in records] == ["0", "1", "2", "3", "4"] and not rejects
    assert [r["_line"] for r in records] == [1, 2, 3, 4, 5]
    crlf = tmp_path / "dos.jsonl"
    crlf.write_bytes("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode("utf-8"))
    assert [r["_line"] for r in read_records(crlf)[0]] == [1, 2, 3, 4, 5]  # CRLF is one break, not two


def test_ids_with_control_characters_are_rejected_and_spaces_trimmed_and_counted(tmp_path):
    rows = [{"listing_id": "a\nb", "title": "t"}, {"listing_id": "tab\t", "title": "t"},
            {"listing_id": "ls\u2028", "title": "t"}, {"listing_id": "c1\x85", "title": "t"},
            {"listing_id": "  padded ", "title": "t"}, {"listing_id": "\u3000全角\u3000", "title": "t"},
            {"listing_id": "plain", "title": "t"}, {"listing_id": "   ", "title": "t"}]
    path = tmp_path / "ids.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    chunks = chunks_of(path)
    records, rejects, _, _ = everything(chunks)
    assert [r["listing_id"] for r in records] == ["padded", "全角", "plain"]
    reasons = {r.line: r.reason for r in rejects}
    assert reasons[1] == "listing_id holds a control character (U+000A at position 2)"
    assert reasons[2] == "listing_id holds a control character (U+0009 at position 4)"
    assert reasons[3] == "listing_id holds a control character (U+2028 at position 3)"
    assert reasons[4] == "listing_id holds a control character (U+0085 at position 3)"
    assert reasons[8] == "empty listing_id"
    assert sum(c.ids_trimmed for c in chunks) == 2


def test_rows_are_decided_by_content(tmp_path):
    rows = [{"listing_id": "1", "title": "", "description": "朋友圈：检测报告代办，不送样当天出"},
            {"listing_id": "2", "description": "论坛回帖：CMA章可代盖"},  # no title field at all
            {"listing_id": "3", "title": " ", "description": "", "shop_name": "质检报告代办专营店"},
            {"listing_id": "4", "title": "  ", "description": "\u3000", "shop_name": ""},
            {"listing_id": "5", "title": None}]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    records, rejects = read_records(path)
    assert [r["listing_id"] for r in records] == ["1", "2", "3"]
    assert records[1]["title"] == ""
    assert [(r.line, r.reason) for r in rejects] == [(4, "no text"), (5, "no text")]


def test_lone_surrogate_escapes_in_json_are_rejected(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"listing_id": "1", "title": "ok", "extra": "\\ud800"}\n'
                    '{"listing_id": "2", "title": "emoji pair is fine \\ud83d\\ude00"}\n', encoding="utf-8")
    records, rejects = read_records(path)
    assert [r["listing_id"] for r in records] == ["2"] and records[0]["title"].endswith("😀")
    assert "lone surrogate" in rejects[0].reason and rejects[0].column == "extra"


def test_undecodable_jsonl_line_is_rejected_wherever_the_byte_is(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_bytes(b'{"listing_id": "1", "title": "ok", "price": "9\xff"}\n{"listing_id": "2", "title": "fine"}\n')
    records, rejects = read_records(path)
    assert [r["listing_id"] for r in records] == ["2"]
    assert rejects[0].column == "price" and "\\xff" in rejects[0].to_dict()["raw"]


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "cut.csv.gz"
    data = gzip.compress((HEADER + "".join(f"{i},检测报告 {i},,淘宝,店\n" for i in range(5000))).encode("utf-8"))
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReadError, match=r"cut\.csv\.gz: cannot be read: truncated gzip archive"):
        read_records(path)
    garbage = tmp_path / "junk.jsonl.gz"
    garbage.write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match=r"junk\.jsonl\.gz: cannot be read: corrupt gzip archive"):
        read_records(garbage)


def test_files_with_no_rows(tmp_path):
    for name, content in (("empty.csv", b""), ("blank.csv", b"\n\n"), ("header.csv", HEADER.encode()),
                          ("bom.csv", b"\xef\xbb\xbf"), ("empty.jsonl", b""), ("blank.jsonl", b"\n\r\n")):
        path = tmp_path / name
        path.write_bytes(content)
        assert read_records(path) == ([], []), name
    with pytest.raises(InputError, match="blank header"):
        path = tmp_path / "late.csv"
        path.write_text("\n" + HEADER + "1,t,,x,y\n")
        read_records(path)


def test_duplicate_ids_spill_to_disk_and_give_the_same_rejects(tmp_path):
    rows = [{"listing_id": f"id{i % 700}", "title": f"t{i}"} for i in range(1000)]
    path = tmp_path / "dups.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    in_memory = everything(chunks_of(path, chunk_size=64))
    spilled = everything(chunks_of(path, chunk_size=64, memory_ids=50, spill_dir=str(tmp_path)))
    assert [r.to_dict() for r in spilled[1]] == [r.to_dict() for r in in_memory[1]]
    assert [r["listing_id"] for r in spilled[0]] == [r["listing_id"] for r in in_memory[0]] == [f"id{i}" for i in range(700)]
    assert spilled[1][0].reason == "duplicate listing_id 'id0' (first seen at dups.jsonl:1)"
    assert not list(tmp_path.glob("rg-spill-*")), "the spill store is deleted when reading ends"


def test_id_index_within_and_across_batches():
    index = IdIndex(memory_limit=2)
    assert index.check_and_add(["a", "b", "a"], "f.csv", [2, 3, 4]) == [None, None, "f.csv:2"]
    assert index.store is None
    # over the limit: spilled; the earlier first sighting wins over one in this batch
    assert index.check_and_add(["c", "a", "c", "d"], "g.csv", [1, 2, 3, 4]) == [None, "f.csv:2", "g.csv:1", None]
    assert index.store is not None and len(index) == 4
    assert index.check_and_add(["d", "e"], "g.csv", [9, 10]) == ["g.csv:4", None]
    index.close()


def test_spill_store_is_exact_behind_its_bloom_filter(tmp_path):
    store = SpillStore(tmp_path, bloom_bits=1 << 10)  # a tiny filter: many false positives, still exact
    store.put_many([(f"k{i}", i) for i in range(500)])
    found = store.get_many([f"k{i}" for i in range(0, 1000, 7)])
    assert found == {f"k{i}": i for i in range(0, 500, 7)}
    assert store.bloom.may_contain([key_digest("k3")]).all()
    store.close()
    assert not list(tmp_path.iterdir())


def test_line_breaks_across_read_blocks(monkeypatch):
    import io

    from reportguard.core import records
    monkeypatch.setattr(records, "_BLOCK", 4)  # every CR, CRLF and long line straddles a block
    for data in (b"ab\rcdefghijk", b"abc\r\ndef\rg", b"a\r", b"\r\n\r\n", b"abcdefghij\r\nxy", b"abc\r" + b"x" * 9 + b"\n",
                 "检测报告\r\n包过\r".encode("gb18030")):
        assert list(records._byte_lines(io.BytesIO(data))) == data.splitlines(keepends=True), data


def test_reading_a_large_parquet_file_does_not_keep_what_it_has_read(tmp_path):
    """pyarrow's pre-buffering keeps the bytes of every row group read until the reader closes: memory
    grew with the input (~0.2 KB per row of a generated dump, ~2.7 GB for 12M rows). Arrow memory
    must stay at about a row group, for the scorer's input and for every reader of a scored run."""
    import base64
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    from reportguard.serve.outputs import iter_run
    path = tmp_path / "big.parquet"
    schema = pa.schema([("listing_id", pa.string()), ("title", pa.string()), ("labels", pa.list_(pa.string())),
                        ("decision", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for g in range(8):  # 8 row groups of ~6 MB that do not compress
            ids = [f"{g}-{i}" for i in range(2000)]
            titles = [base64.b64encode(os.urandom(2250)).decode() for _ in ids]
            writer.write_table(pa.table({"listing_id": ids, "title": titles, "labels": [[] for _ in ids],
                                         "decision": ["pass"] * len(ids)}, schema=schema))
    peak = 0
    for _ in iter_chunks([path], ReadOptions(chunk_size=500, reject_duplicate_ids=False)):
        peak = max(peak, pa.total_allocated_bytes())
    assert peak < 24 << 20, f"{peak >> 20} MB of Arrow memory held while reading ~48 MB"
    peak = 0
    for _ in iter_run(path, columns=["listing_id", "title", "labels", "decision"], batch_size=500):
        peak = max(peak, pa.total_allocated_bytes())
    assert peak < 24 << 20, f"{peak >> 20} MB of Arrow memory held while reading a run"
