"""The loaders: every hostile input gives a clear error or a reject with a reason, and
rows in = rows accepted + rows rejected."""
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reportguard.core.records import InputError, ReadOptions, detect_encoding, iter_chunks, read_records

HEADER = "listing_id,title,description,platform,shop_name\n"


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def physical_rows(text: str) -> int:
    """Data rows as a person counts them in a CSV without embedded newlines."""
    return sum(1 for line in text.splitlines()[1:] if line.strip())


def reconcile(path, options=None):
    records, rejects = read_records(path, options)
    return records, rejects, {r.reason for r in rejects}


def test_gb18030_csv_is_detected_and_decoded(tmp_path):
    text = HEADER + "1,儿童玩具质检报告代办,不送样当天出,淘宝,某某店\n2,纯棉T恤 附检测报告,,京东,旗舰店\n"
    path = write(tmp_path / "gbk.csv", text, "gb18030")
    assert detect_encoding(path) == "gb18030"
    records, rejects = read_records(path)
    assert not rejects
    assert [r["title"] for r in records] == ["儿童玩具质检报告代办", "纯棉T恤 附检测报告"]


def test_utf8_bom_csv_keeps_the_first_column_name(tmp_path):
    path = write(tmp_path / "bom.csv", "\ufeff" + HEADER + "1,质检报告,,淘宝,店\n")
    assert detect_encoding(path) == "utf-8-sig"
    records, rejects = read_records(path)
    assert records[0]["listing_id"] == "1" and not rejects


def test_utf8_is_tried_before_gb18030(tmp_path):
    # UTF-8 bytes also decode as GB18030 (to mojibake); the loader must pick UTF-8.
    path = write(tmp_path / "u.csv", HEADER + "1,检测报告办理,,淘宝,店\n")
    assert detect_encoding(path) == "utf-8"
    assert read_records(path)[0][0]["title"] == "检测报告办理"


def test_broken_quote_costs_one_row_and_names_line_and_column(tmp_path):
    text = HEADER + '1,ok one,,淘宝,店\n2,"broken title,desc,淘宝,店\n3,ok three,,淘宝,店\n4,ok four,,淘宝,店\n'
    path = write(tmp_path / "q.csv", text)
    records, rejects = read_records(path, ReadOptions(max_record_lines=2))
    assert [r["listing_id"] for r in records] == ["1", "3", "4"]
    assert len(rejects) == 1
    assert rejects[0].line == 3 and rejects[0].column == "title"
    assert "quot" in rejects[0].reason
    assert len(records) + len(rejects) == physical_rows(text)


def test_unterminated_quote_at_end_of_file(tmp_path):
    text = HEADER + '1,ok,,淘宝,店\n2,"never closed,,淘宝,店\n'
    records, rejects = read_records(write(tmp_path / "q.csv", text))
    assert [r["listing_id"] for r in records] == ["1"]
    assert rejects[0].line == 3 and "never closed" in rejects[0].reason


def test_text_after_closing_quote(tmp_path):
    text = HEADER + '1,"title"junk,,淘宝,店\n2,fine,,淘宝,店\n'
    records, rejects = read_records(write(tmp_path / "q.csv", text))
    assert [r["listing_id"] for r in records] == ["2"]
    assert rejects[0].line == 2 and rejects[0].column == "title"


def test_quoted_newlines_are_one_row(tmp_path):
    text = HEADER + '1,"两行\n标题",desc,淘宝,店\n2,next,,淘宝,店\n'
    records, rejects = read_records(write(tmp_path / "q.csv", text))
    assert records[0]["title"] == "两行\n标题" and records[1]["_line"] == 4 and not rejects


def test_extra_and_missing_fields(tmp_path):
    text = HEADER + "1,t,d,淘宝,店,EXTRA\n2,t,d\n3,t,d,淘宝,店\n"
    records, rejects = read_records(write(tmp_path / "f.csv", text))
    assert [r["listing_id"] for r in records] == ["3"]
    assert [(r.line, r.reason) for r in rejects] == [(2, "expected 5 fields, found 6"), (3, "expected 5 fields, found 3")]
    assert rejects[0].listing_id == "1"


def test_missing_required_column_stops_before_any_row(tmp_path):
    path = write(tmp_path / "m.csv", "listing_id,description\n1,d\n")
    with pytest.raises(InputError, match=r"m\.csv: line 1: required column 'title' is missing"):
        next(iter_chunks([path]))


def test_missing_required_column_in_a_later_file_stops_before_the_first(tmp_path):
    good = write(tmp_path / "a.csv", HEADER + "1,t,,淘宝,店\n")
    bad = write(tmp_path / "b.csv", "id_only\n1\n")
    with pytest.raises(InputError, match="b.csv"):
        next(iter_chunks([good, bad]))


def test_no_text_nul_bytes_huge_field_and_duplicate_ids(tmp_path):
    huge = "检" * 1_000_000
    text = (HEADER + "1,,desc,淘宝,店\n" + "2,nul\x00title,,淘宝,店\n" + f"3,ok,{huge},淘宝,店\n"
            + "4,first,,淘宝,店\n" + "4,second,,淘宝,店\n" + "5,fine,,淘宝,店\n" + "6, ,,淘宝,\n")
    records, rejects = read_records(write(tmp_path / "h.csv", text))
    # An empty title with a description is a listing (a 朋友圈 post): it is scored.
    assert [r["title"] for r in records] == ["", "first", "fine"]
    reasons = {r.line: r.reason for r in rejects}
    assert reasons[3] == "NUL byte in field 'title'"
    assert "1,000,000 characters" in reasons[4]
    assert "duplicate listing_id '4' (first seen at h.csv:5)" == reasons[6]
    assert reasons[8] == "no text"
    assert len(records) + len(rejects) == 7


def test_undecodable_bytes_reject_the_row_not_the_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(HEADER.encode() + "1,好的,,淘宝,店\n".encode() + b"2,\xff\xfe broken,,x,y\n" + b"3,fine,,x,y\n")
    records, rejects = read_records(path, ReadOptions(encoding="utf-8"))
    assert [r["listing_id"] for r in records] == ["1", "3"]
    assert "not valid in the file's encoding" in rejects[0].reason


def test_jsonl_invalid_lines_and_wrong_types(tmp_path):
    lines = [
        json.dumps({"listing_id": 1, "title": "数字id可以"}, ensure_ascii=False),
        '{"listing_id": "2", "title": "缺右括号"',
        "[1, 2, 3]",
        json.dumps({"listing_id": "4", "title": 123}),
        json.dumps({"listing_id": "5", "title": "ok", "description": ["list"]}),
        json.dumps({"listing_id": True, "title": "bool id"}),
        json.dumps({"title": "no id"}),
        "",
        json.dumps({"listing_id": "9", "title": "最后一行", "extra": {"kept": 1}}, ensure_ascii=False),
    ]
    path = write(tmp_path / "x.jsonl", "\n".join(lines) + "\n")
    records, rejects = read_records(path)
    assert [r["listing_id"] for r in records] == ["1", "9"]
    assert records[1]["extra"] == {"kept": 1}  # unknown fields are carried through
    by_line = {r.line: r for r in rejects}
    assert by_line[2].reason.startswith("invalid JSON") and by_line[2].column.startswith("char")
    assert by_line[3].reason == "expected a JSON object, got list"
    assert by_line[4].reason == "field 'title' must be a string, got int"
    assert by_line[5].reason == "field 'description' must be a string, got list"
    assert by_line[6].reason == "field 'listing_id' must be a string, got bool"
    assert by_line[7].reason == "required field 'listing_id' is missing"
    assert len(records) + len(rejects) == 8  # the blank line is not a row


def test_gzip_and_column_mapping(tmp_path):
    path = tmp_path / "export.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("商品ID,商品标题,店铺名称,价格\n100,质检报告加急,某店,9.9\n")
    records, _ = read_records(path, ReadOptions(column_map={"商品ID": "listing_id", "商品标题": "title", "店铺名称": "shop_name"}))
    assert records[0]["listing_id"] == "100" and records[0]["shop_name"] == "某店" and records[0]["价格"] == "9.9"


def test_parquet_with_numeric_ids_and_wrong_types(tmp_path):
    table = pa.table({"listing_id": [1, 2, 3], "title": ["检测报告", None, "ok"], "description": ["", "", ""]})
    path = tmp_path / "p.parquet"
    pq.write_table(table, path)
    records, rejects = read_records(path)
    assert [r["listing_id"] for r in records] == ["1", "3"]
    assert rejects[0].line == 2 and rejects[0].reason == "no text"


def test_directory_of_shards_in_order_and_chunks_are_bounded(tmp_path):
    shards = tmp_path / "dump"
    shards.mkdir()
    for k in range(3):
        write(shards / f"part-{k:05d}.jsonl", "".join(json.dumps({"listing_id": f"{k}-{i}", "title": "t"}) + "\n" for i in range(25)))
    (shards / "_SUCCESS").write_text("")
    chunks = list(iter_chunks([shards], ReadOptions(chunk_size=10)))
    assert all(c.rows_in <= 10 for c in chunks)
    ids = [r["listing_id"] for c in chunks for r in c.records]
    assert ids[0] == "0-0" and ids[-1] == "2-24" and len(ids) == 75


def test_unknown_format_and_missing_path(tmp_path):
    with pytest.raises(InputError, match="unknown format"):
        list(iter_chunks([write(tmp_path / "x.xlsx", "")]))
    with pytest.raises(InputError, match="no such file"):
        list(iter_chunks([tmp_path / "nope.csv"]))
