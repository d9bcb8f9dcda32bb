"""The Label Studio labelling config: Chinese label names with hotkeys, English codes in the results."""
import json
import xml.etree.ElementTree as ET

from reportguard.core.labels import ALL_LABEL_NAMES, BY_NAME
from reportguard.review.labelstudio import LABEL_CONFIG, export_tasks, verdict_of
from reportguard.review.queue import make_queue
from reportguard.review.samples import sample_rows, write_run


def test_label_studio_config_shows_chinese_names_with_hotkeys():
    view = ET.fromstring(LABEL_CONFIG)
    hotkeys = []
    for control, tag in (("Choices", "Choice"), ("Labels", "Label")):
        options = view.find(control).findall(tag)
        # The code stays the value (what predictions carry and annotations export); the Chinese
        # name is what the annotator sees.
        assert [o.get("value") for o in options] == list(ALL_LABEL_NAMES), control
        for option in options:
            assert BY_NAME[option.get("value")].zh in option.get("html"), option.attrib
            assert option.get("hotkey") and option.get("alias") is None
            hotkeys.append(option.get("hotkey"))
    assert hotkeys[:4] == ["1", "2", "3", "4"]  # as in reportguard's own review UI
    assert len(set(hotkeys)) == len(hotkeys)


def test_exported_predictions_match_the_choices_and_read_back(tmp_path):
    queue = make_queue(write_run(sample_rows(12), tmp_path / "run.jsonl"), 12, "top")
    tasks_path, config_path = export_tasks(queue, tmp_path / "tasks.json")
    values = {c.get("value") for c in ET.fromstring(config_path.read_text(encoding="utf-8")).find("Choices")}
    for task in json.loads(tasks_path.read_text(encoding="utf-8")):
        result = task["predictions"][0]["result"]
        choices = next(r for r in result if r["type"] == "choices")["value"]["choices"]
        assert set(choices) <= values
        assert verdict_of({"result": result})[0] == choices
