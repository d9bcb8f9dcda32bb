"""Label Studio interop: a queue out as tasks with model predictions, annotations back as verdicts.

Teams that already review in Label Studio import `tasks.json` into a project whose labelling
config is `LABEL_CONFIG` (written beside the tasks as tasks.xml; Chinese label names, hotkeys
1-4 for labels and q/w/e/r for evidence spans), review there, export the
project as JSON, and `reportguard review labelstudio-import` stores the annotations as verdicts
in the same store the web UI writes, so kappa, adjudication and the exporters see them all.

Task format (LS "basic JSON"), one per queue item:

    {"id": position + 1,
     "data": {"text": title + "\\n" + description, "title", "description", "platform", "shop",
              "listing_id", "queue_id", "position", "model_version", "decision",
              "p_report_sale", "p_false_ad", "p_testing_service"},
     "predictions": [{"model_version": ..., "score": highest label probability,
                      "result": [{"id", "from_name": "labels", "to_name": "text", "type": "choices",
                                  "value": {"choices": [predicted labels]}},
                                 {"id", "from_name": "evidence", "to_name": "text", "type": "labels",
                                  "value": {"start", "end", "text", "labels": [label]}}, ...]}]}

Label Studio highlights spans in one text, so title and description are joined with a newline
and description offsets are shifted by len(title) + 1; `field_offsets` undoes it. A task whose
annotation has no `choices` result for `labels` is a clean listing (no label). Annotations marked
`was_cancelled` (skipped) are not verdicts and are ignored.
"""
from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

from reportguard.core.labels import ALL_LABEL_NAMES, BY_NAME, PROB_COLUMNS

from .highlight import spans_for
from .queue import Queue
from .runs import row_field, shop_of
from .store import Store

#: Per review label: the Choices hotkey (1-4, as in the web UI, review/app.py), the evidence-span hotkey (the key
#: below it) and the span colour.
LS_HOTKEYS: dict[str, tuple[str, str, str]] = {
    "report_sale": ("1", "q", "#ffb3b3"),
    "false_ad": ("2", "w", "#ffd699"),
    "credential_missing": ("3", "e", "#e0c3ff"),
    "testing_service": ("4", "r", "#b3d9ff"),
}


def label_config() -> str:
    """The labelling config: Chinese label names (core.labels Label.zh) on screen, with the code
    beside them, and hotkeys. Names are shown through `html`, so annotations keep the English codes
    (`value`) that predictions carry and `verdict_of` reads; `alias` would replace the code in
    the results instead."""
    def shown(name: str) -> str:
        return quoteattr(f"{BY_NAME[name].zh} <code>{name}</code>")
    spans = "\n".join(f'    <Label value="{x}" html={shown(x)} hotkey="{LS_HOTKEYS[x][1]}" background="{LS_HOTKEYS[x][2]}"/>'
                      for x in ALL_LABEL_NAMES)
    choices = "\n".join(f'    <Choice value="{x}" html={shown(x)} hotkey="{LS_HOTKEYS[x][0]}"/>' for x in ALL_LABEL_NAMES)
    return f"""<View>
  <Header value="$title"/>
  <Text name="text" value="$text"/>
  <Header value="证据片段（选中文字后按 q/w/e/r）" size="6"/>
  <Labels name="evidence" toName="text">
{spans}
  </Labels>
  <Header value="标签（可多选，按 1-4；都不选 = 无违规）" size="6"/>
  <Choices name="labels" toName="text" choice="multiple" showInline="true">
{choices}
  </Choices>
  <TextArea name="comment" toName="text" placeholder="备注 comment" maxSubmissions="1"/>
</View>
"""


LABEL_CONFIG = label_config()


def task_of(item: dict, model_version: str) -> dict:
    """One queue item (as in the queue file) as a Label Studio task with its predictions."""
    record = item["record"]
    title, description = row_field(record, "title"), row_field(record, "description")
    text = f"{title}\n{description}" if description else title
    predicted = [x for x in ALL_LABEL_NAMES if x in record.get("labels", [])]
    result = [{"id": f"choices-{item['position']}", "from_name": "labels", "to_name": "text", "type": "choices",
               "value": {"choices": predicted}}]
    for field, shift in (("title", 0), ("description", len(title) + 1)):
        source = title if field == "title" else description
        for k, (start, end, label) in enumerate(spans_for(source, record.get("evidence") or [], field)):
            if label == "other":
                continue
            result.append({"id": f"ev-{item['position']}-{field[0]}{k}", "from_name": "evidence", "to_name": "text",
                           "type": "labels", "value": {"start": start + shift, "end": end + shift,
                                                       "text": source[start:end], "labels": [label]}})
    scores = {c: float(record[c]) for c in PROB_COLUMNS}
    return {
        "id": int(item["position"]) + 1,
        "data": {"text": text, "title": title, "description": description,
                 "platform": row_field(record, "platform"), "shop": shop_of(record),
                 "listing_id": item["listing_id"], "queue_id": item["queue_id"], "position": int(item["position"]),
                 "model_version": model_version, "decision": record.get("decision"), **scores},
        "predictions": [{"model_version": model_version, "score": round(max(scores.values()), 4), "result": result}],
    }


def export_tasks(queue: Queue, out: str | Path) -> tuple[Path, Path]:
    """Write the queue as LS tasks (JSON list) and the labelling config beside it (.xml)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tasks = [task_of(item, queue.header["model_version"]) for item in queue.items]
    out.write_text(json.dumps(tasks, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    config = out.with_suffix(".xml")
    config.write_text(LABEL_CONFIG, encoding="utf-8")
    return out, config


def field_offsets(title: str, start: int, end: int) -> tuple[str, int, int]:
    """LS offsets in the joined text -> (field, start, end) in the original field.

    >>> field_offsets("abc", 4, 6)
    ('description', 0, 2)
    """
    if end <= len(title):
        return "title", start, end
    return "description", start - len(title) - 1, end - len(title) - 1


def verdict_of(annotation: dict) -> tuple[list[str], str]:
    """(labels, comment) from one LS annotation's result list."""
    labels: list[str] = []
    comment = ""
    for r in annotation.get("result") or []:
        value = r.get("value") or {}
        if r.get("type") == "choices" and r.get("from_name") == "labels":
            labels += [x for x in value.get("choices", []) if x in ALL_LABEL_NAMES]
        elif r.get("type") == "textarea" and r.get("from_name") == "comment":
            comment = "\n".join(value.get("text") or [])
    return [x for x in ALL_LABEL_NAMES if x in labels], comment


def annotator_of(annotation: dict) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("username") or who.get("id")
    return f"labelstudio:{who if who not in (None, '') else 'unknown'}"


def import_annotations(store: Store, path: str | Path) -> dict:
    """Store every (not cancelled) annotation of an LS JSON export as a review verdict."""
    tasks = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(tasks, dict):
        tasks = [tasks]
    counts = {"tasks": len(tasks), "verdicts": 0, "cancelled": 0, "unknown_items": 0}
    for task in tasks:
        data = task.get("data") or {}
        queue_id, listing_id = str(data.get("queue_id", "")), str(data.get("listing_id", ""))
        item = store.item_by_listing(queue_id, listing_id) if queue_id and listing_id else None
        if item is None:
            counts["unknown_items"] += 1
            continue
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                counts["cancelled"] += 1
                continue
            labels, comment = verdict_of(annotation)
            store.save_verdict(queue_id, item.position, annotator_of(annotation), labels, comment,
                               role="review", source="labelstudio")
            counts["verdicts"] += 1
    return counts
