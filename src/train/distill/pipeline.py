"""`reportguard distill --teacher DIR`: students of the teacher, their routing cuts, the gate, and
a tiered bundle.

Steps (each a function below):
1. the transfer set (transfer.py) from the rows the teacher's training config may train on, and
   the teacher's calibrated logits for it (teacher.py, cached);
2. tier 1, hashed character n-grams (tier1.py), on the transfer set less a held-out slice;
3. tier 2, a few of the teacher's own layers (tier2.py), on a sample of the same;
4. a new bundle directory: the teacher's files plus the students, `route` in bundle.json;
5. every tier's logits on the fitting rows (validation + the held-out slice) and the evaluation
   sets, through the scorer's own code (serve.tiers.route_logits); margins fitted by the rule
   "no validation decision moves against the teacher-only route" (routing.py);
6. the gate on every set; bundle.json gets the margins, the gate's numbers and the default route
   (`auto` when the gate passed, else `teacher` with the reason); sealed; models/current points
   at it; reports/distill/<version>.{md,json}; MLflow gets the transfer-set hash, the teacher
   version and every tier's metrics.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from reportguard.core.atomic import write_text_atomic
from reportguard.core.bundle_format import CONTENT_FIELD, dump, seal, sha256_file, validate_thresholds
from reportguard.core.hashed_ngrams import load_tier1, save_tier1
from reportguard.core.labels import MODEL_LABELS
from reportguard.core.normalize import listing_text

from ..config import load_config, resolve
from ..datasets import evaluation_sets, training_rows
from ..metrics import to_matrix
from . import routing
from .config import DistillConfig
from .evidence_check import evidence_agreement
from .teacher import teacher_logits
from .tier1 import train_tier1
from .transfer import build_transfer_set, transfer_hash

#: The sets the gate judges (issue #14: validation, test, the writer-held-out test, real text), and
#: the held-out ordinary listings for false alarms; external and probes are reported too.
GATE_SETS = ("validation", "test_random", "test", "real", "ordinary")
REPORT_SETS = ("external", "probes")


def _texts(rows: list[dict]) -> list[str]:
    return [listing_text(r.get("title") or "", r.get("description") or "") for r in rows]


# long because it is the pipeline's outline: one call per step, each timed and logged
def distill(config: DistillConfig) -> Path:
    """Run every step; returns the tiered bundle's directory."""
    started = time.perf_counter()
    from reportguard.serve.bundle import load_bundle
    teacher_dir = resolve(config.teacher).resolve()
    teacher = load_bundle(teacher_dir, threads=config.tier1.threads)
    data = load_config(config.train_config).data.to_dict()
    data["background_max_train"] = None  # every ordinary training listing: the transfer set has room
    rows = training_rows(data)["train"]
    transfer = build_transfer_set(rows, config.transfer.size, config.transfer.seed)
    set_hash = transfer_hash(transfer)
    texts = [t.text for t in transfer]
    gold = [t.gold for t in transfer]
    print(f"distill: transfer set of {len(texts):,} texts from {len(rows):,} rows, sha256 {set_hash[:12]}", file=sys.stderr)
    soft = teacher_logits(teacher, texts, resolve(config.transfer.cache_dir))
    rng = np.random.default_rng(config.transfer.seed)
    held = np.zeros(len(texts), dtype=bool)
    held[rng.choice(len(texts), int(len(texts) * config.transfer.holdout), replace=False)] = True
    train_idx = np.flatnonzero(~held)
    timings = {"teacher_labels": time.perf_counter() - started}

    t0 = time.perf_counter()
    if config.tier1.reuse_from:
        src, entry = _student_of(resolve(config.tier1.reuse_from), teacher_dir, "hashed_ngrams")
        tier1 = load_tier1(src.path / entry["file"], entry)
    else:
        tier1 = train_tier1([texts[i] for i in train_idx], soft[train_idx], [gold[i] for i in train_idx], config.tier1)
    timings["tier1"] = time.perf_counter() - t0
    # a tiered bundle as teacher (models/current after a distill) distils its own teacher again
    base = (teacher.meta.get("route") or {}).get("teacher_version") or teacher.model_version
    version = f"{base}-tiered-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    out = resolve(config.output.models_dir) / version
    work = out.with_name(f".{out.name}.tmp")
    _copy_teacher(teacher_dir, work)
    save_tier1(work / "tier1.npz", tier1)
    tiers = [{"name": "tier1", "kind": "hashed_ngrams", "file": "tier1.npz", **tier1.config,
              **({"hidden": int(tier1.weights.shape[1])} if tier1.w2 is not None else {})}]
    tier2_info = None
    if config.tier2.enabled:
        t0 = time.perf_counter()
        tier2_info = _train_tier2(config, teacher_dir, texts, soft, gold, train_idx, work)
        timings["tier2"] = time.perf_counter() - t0
        tiers.append({"name": "tier2", "kind": "transformer", "file": tier2_info["file"], "layers": list(tier2_info["layers"]),
                      "precision": tier2_info.get("precision", "fp32")})
    for tier in tiers:
        tier["margin"] = {x: 1e9 for x in MODEL_LABELS}  # settles nothing until fitted (step 5)
    meta = _tiered_meta(teacher.meta, version, tiers, work)
    meta["route"] = {"default": "teacher", "reason": "margins not fitted yet", "tiers": tiers}
    _write(work, meta)

    fit = _fit_rows(data, texts, soft, held, config.routing.fit_on)
    summary = {"version": version, "teacher": base, "transfer_sha256": set_hash, "transfer_texts": len(texts),
               "tiers": tiers, "tier2": tier2_info, "seconds": timings}
    return _route_and_ship(config, work, out, meta, fit, data, summary, started)


def refit(bundle_dir: Path, config: DistillConfig) -> Path:
    """Fit a tiered bundle's margins again (`reportguard distill --refit DIR`, e.g. with another
    `routing.*`), gate and reseal it in place, without training anything; the held-out transfer
    slice is not rebuilt, so the fit is on validation alone."""
    started = time.perf_counter()
    bundle_dir = Path(bundle_dir).resolve()
    meta = json.loads((bundle_dir / "bundle.json").read_text(encoding="utf-8"))
    meta = {k: v for k, v in meta.items() if k not in (CONTENT_FIELD, "other_files")}
    data = load_config(config.train_config).data.to_dict()
    route = meta["route"]
    fit = _fit_rows(data, [], np.zeros((0, len(MODEL_LABELS)), np.float32), np.zeros(0, bool), "validation")
    summary = {"version": meta["model_version"], "teacher": route.get("teacher_version"), "transfer_sha256": route.get("transfer_sha256"),
               "transfer_texts": route.get("transfer_texts"), "tiers": route["tiers"], "tier2": None, "seconds": {}}
    work = bundle_dir.with_name(f".{bundle_dir.name}.tmp")
    shutil.rmtree(work, ignore_errors=True)
    _copy_teacher(bundle_dir, work, keep_tiers=True)
    return _route_and_ship(config, work, bundle_dir, meta, fit, data, summary, started)


# long because it is the second half of the outline: fit, gate, reseal, evidence, report
def _route_and_ship(config: DistillConfig, work: Path, out: Path, meta: dict, fit: dict, data: dict, summary: dict,
                    started: float) -> Path:
    """Steps 5-6 on a bundle directory in `work` whose bundle.json (`meta`) lists its tiers."""
    from reportguard.serve.bundle import load_bundle
    tiers = meta["route"]["tiers"]
    t0 = time.perf_counter()
    bundle = load_bundle(work, threads=config.tier1.threads)
    margins, agreement = _fit_margins(bundle, tiers, fit, config)
    sets = _set_logits(bundle, tiers, data)
    passed, reason, numbers = _judge(bundle, tiers, sets, margins, config)
    if fit.get("held_texts"):
        numbers["held_out_transfer"] = _held_out_check(bundle, tiers, fit, margins)
    summary["seconds"]["routing_and_gate"] = time.perf_counter() - t0
    for tier, margin in zip(tiers, margins):
        tier["margin"] = {x: float(m) for x, m in zip(MODEL_LABELS, margin)}
    meta["route"] = {**{k: v for k, v in meta["route"].items() if k not in ("default", "reason", "gate", "fitted_on")},
                     "default": "auto" if passed else "teacher", "reason": reason, "tiers": tiers,
                     "fitted_on": f"validation ({fit['validation_rows']} rows, ordinary listings included)"
                                  + (f" + {len(fit['held_texts'])} held-out transfer texts" if fit["known_teacher"] is not None else ""),
                     "gate": numbers}
    if "teacher_version" not in meta["route"]:
        meta["route"].update(teacher_version=summary["teacher"], transfer_sha256=summary["transfer_sha256"],
                             transfer_texts=summary["transfer_texts"])
    _write(work, meta)
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)
    t0 = time.perf_counter()
    evidence = evidence_agreement(load_bundle(out, threads=config.tier1.threads), training_rows(data)["validation"]) if passed else None
    summary["seconds"]["evidence_check"] = time.perf_counter() - t0
    summary.update(passed=passed, reason=reason, gate=numbers, tiers=tiers, fit_agreement=agreement, evidence=evidence)
    _report(config, out, summary)
    if config.output.point_current:
        from ..export import point_current
        point_current(out.parent, out)
    print(f"distill: {out} ({reason}); {time.perf_counter() - started:.0f} s in all", file=sys.stderr)
    return out


def _held_out_check(bundle, tiers: list[dict], fit: dict, margins: list[np.ndarray]) -> dict:
    """How the fitted route does on the held-out transfer texts (not fitted on when fit_on is
    validation): label sets and block decisions that would move against the teacher."""
    per_tier = [_route(bundle, fit["held_texts"], t["name"]) for t in tiers]
    route, where = routing.cascade(per_tier, fit["held_teacher"], bundle.cuts(), margins)
    moved = routing.moved(route, fit["held_teacher"], bundle.cuts())
    return {"rows": len(route), "settled_by_tier": np.bincount(where, minlength=len(tiers) + 1).tolist(), "decisions_moved": int(moved.sum())}


def _route(bundle, texts: list[str], name: str) -> np.ndarray:
    from reportguard.serve.tiers import route_logits
    return route_logits(bundle, texts, name, 32)[0]


def _copy_teacher(src: Path, dst: Path, keep_tiers: bool = False) -> None:
    """The teacher's bundle files, hard-linked where the filesystem allows (nothing edits them in place)."""
    shutil.rmtree(dst, ignore_errors=True)

    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)
    shutil.copytree(src, dst, copy_function=link)
    # a tiered teacher's own students go: new ones are written in their place (never through the links)
    for tier in [] if keep_tiers else (json.loads((src / "bundle.json").read_text(encoding="utf-8")).get("route") or {}).get("tiers", []):
        (dst / tier["file"]).unlink(missing_ok=True)


def _tiered_meta(teacher_meta: dict, version: str, tiers: list[dict], work: Path) -> dict:
    meta = {k: v for k, v in teacher_meta.items() if k not in (CONTENT_FIELD, "other_files")}
    meta["model_version"] = version
    old_tiers = {t["file"] for t in (teacher_meta.get("route") or {}).get("tiers", [])}
    meta["files"] = {k: v for k, v in meta["files"].items() if k not in old_tiers} | {t["file"]: sha256_file(work / t["file"]) for t in tiers}
    meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return meta


def _write(work: Path, meta: dict) -> None:
    validate_thresholds(work / "bundle.json", meta["thresholds"], meta["decision"]["block"], meta["temperature"])
    # A new file, renamed over the old: bundle.json was hard-linked from the teacher's (_copy_teacher)
    write_text_atomic(work / "bundle.json", dump(seal(meta, work)))


def _train_tier2(config: DistillConfig, teacher_dir: Path, texts, soft, gold, train_idx, work: Path) -> dict:
    if config.tier2.reuse_from:
        return _reuse_tier2(resolve(config.tier2.reuse_from), teacher_dir, work)
    from .tier2 import train_tier2
    rng = np.random.default_rng(config.tier2.seed)
    pick = rng.permutation(train_idx)[:config.tier2.train_texts]
    return train_tier2(teacher_dir, [texts[i] for i in pick], soft[pick], [gold[i] for i in pick], work, config.tier2)


def _student_of(source: Path, teacher_dir: Path, kind: str) -> tuple:
    """`tier1.reuse_from` / `tier2.reuse_from`: (the bundle, its tier entry of `kind`) when that
    tiered bundle's students are of this teacher (its files hash-checked on load, as any bundle's);
    else a ValueError saying whose they are."""
    from reportguard.serve.bundle import load_bundle
    src, teacher = load_bundle(source), load_bundle(teacher_dir)
    mine = (teacher.meta.get("route") or {}).get("teacher_version") or teacher.model_version
    theirs = (src.meta.get("route") or {}).get("teacher_version")
    entry = next((t for t in (src.meta.get("route") or {}).get("tiers", []) if t["kind"] == kind), None)
    if entry is None or theirs != mine:
        raise ValueError(f"reuse_from {source}: " + (f"has no {kind} tier" if entry is None else
                         f"its students are of teacher {theirs}, not {mine}"))
    print(f"distill: {entry['name']} reused from {src.model_version}", file=sys.stderr)
    return src, entry


def _reuse_tier2(source: Path, teacher_dir: Path, work: Path) -> dict:
    src, entry = _student_of(source, teacher_dir, "transformer")
    shutil.copy2(src.path / entry["file"], work / entry["file"])
    return {"file": entry["file"], "layers": list(entry["layers"]), "precision": entry.get("precision", "fp32"),
            "reused_from": src.model_version}


def _fit_rows(data: dict, texts: list[str], soft: np.ndarray, held: np.ndarray, fit_on: str) -> dict:
    """The rows the margins are fitted on: validation (`fit_on: validation`, the issue's rule), or
    validation and the held-out transfer slice (`validation+holdout`: wider margins, fewer rows
    settled early). The held-out slice is checked either way."""
    validation = _texts(training_rows(data)["validation"])
    held_texts = [texts[i] for i in np.flatnonzero(held)]
    with_held = fit_on == "validation+holdout"
    return {"texts": validation + (held_texts if with_held else []), "validation_rows": len(validation),
            "known_teacher": soft[held] if with_held else None, "held_texts": held_texts, "held_teacher": soft[held]}


def _tier_logits(bundle, tiers: list[dict], texts: list[str], known_teacher: np.ndarray | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Every tier's logits and the teacher's, through the scorer's route code; the teacher's for
    the last len(known_teacher) texts are taken as given (the transfer set's cached labels, from
    the same `Bundle.calibrated_logits`)."""
    per_tier = [_route(bundle, texts, t["name"]) for t in tiers]
    known = 0 if known_teacher is None else len(known_teacher)
    teacher = _route(bundle, texts[:len(texts) - known], "teacher")
    return per_tier, np.concatenate([teacher, known_teacher]) if known else teacher


def _fit_margins(bundle, tiers: list[dict], fit: dict, config: DistillConfig) -> tuple[list[np.ndarray], dict]:
    per_tier, teacher = _tier_logits(bundle, tiers, fit["texts"], fit["known_teacher"])
    cuts = bundle.cuts()
    margins = [routing.fit_margins(l, teacher, cuts, config.routing.min_margin, config.routing.slack) for l in per_tier]
    agreement = {}
    for t, l, m in zip(tiers, per_tier, margins):
        flag = routing.flag_cuts(cuts)
        agreement[t["name"]] = {"label_set_agreement": float((routing.label_matrix(l, flag) == routing.label_matrix(teacher, flag)).all(axis=1).mean()),
                                "settled_alone": float(routing.settled(l, cuts, m).mean()),
                                "margin": m.round(3).tolist()}
        print(f"distill: {t['name']} margins {m.round(2).tolist()}, settles {agreement[t['name']]['settled_alone']:.1%} of the "
              f"fitting rows alone, label sets agree {agreement[t['name']]['label_set_agreement']:.1%}", file=sys.stderr)
    return margins, agreement


def _set_logits(bundle, tiers: list[dict], data: dict) -> dict:
    sets = evaluation_sets(data)
    sets["validation"] = training_rows(data)["validation"]
    out = {}
    for name in GATE_SETS + REPORT_SETS:
        if name not in sets:
            continue
        rows = sets[name]
        per_tier, teacher = _tier_logits(bundle, tiers, _texts(rows))
        gold = None if name == "ordinary" else to_matrix([r.get("labels") or [] for r in rows])
        out[name] = {"per_tier": per_tier, "teacher": teacher, "gold": gold, "ordinary": name == "ordinary",
                     "gate": name in GATE_SETS}
    return out


def _judge(bundle, tiers, sets: dict, margins: list[np.ndarray], config: DistillConfig) -> tuple[bool, str, dict]:
    cuts = bundle.cuts()
    flag = routing.flag_cuts(cuts)
    judged, reported = {}, {}
    for name, s in sets.items():
        route, where = routing.cascade(s["per_tier"], s["teacher"], cuts, margins)
        entry = {"gold": s["gold"], "teacher": s["teacher"], "route": route, "where": where, "ordinary": s["ordinary"]}
        (judged if s["gate"] else reported)[name] = entry
    passed, reason, numbers = routing.gate(judged, flag, len(tiers), config.routing.max_f1_drop)
    _, _, extra = routing.gate(reported, flag, len(tiers), config.routing.max_f1_drop) if reported else (True, "", {})
    numbers["not_gated"] = {k: v for k, v in extra.items() if k != "teacher_share"}
    return passed, reason, numbers


def _report(config: DistillConfig, bundle_dir: Path, summary: dict) -> None:
    from .report import render
    out = resolve(config.output.reports_dir) / "distill"
    out.mkdir(parents=True, exist_ok=True)
    stem = out / summary["version"]
    stem.with_suffix(".json").write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(render(summary), encoding="utf-8")
    (out / "latest.md").write_text(render(summary), encoding="utf-8")
    _log_mlflow(config, summary, stem)


def _log_mlflow(config: DistillConfig, summary: dict, stem: Path) -> None:
    if config.mlflow.disabled:
        return
    from .. import tracking
    mlflow_cfg = {"experiment": config.mlflow.experiment, "tracking_uri": config.mlflow.tracking_uri,
                  "artifact_location": config.mlflow.artifact_location}
    with tracking.mlflow_run({"name": "distill", "mlflow": mlflow_cfg}, summary["version"]) as mlflow:
        mlflow.log_params(tracking.flatten(config.to_dict()))
        mlflow.set_tags({"teacher_version": summary["teacher"], "transfer_sha256": summary["transfer_sha256"],
                         "route_default": "auto" if summary["passed"] else "teacher"})
        metrics = {"transfer_texts": summary["transfer_texts"]}
        for name, row in summary["gate"].items():
            if isinstance(row, dict):
                for key, value in row.items():
                    if isinstance(value, (int, float)):
                        metrics[f"{name}_{key}"] = float(value)
        for tier, row in summary["fit_agreement"].items():
            metrics[f"{tier}_fit_label_set_agreement"] = row["label_set_agreement"]
            metrics[f"{tier}_fit_settled_alone"] = row["settled_alone"]
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(stem.with_suffix(".md")))
        mlflow.log_artifact(str(stem.with_suffix(".json")))
