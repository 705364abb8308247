"""Ensemble disagreement on held-out sources: does an answer depend on which hospitals the
model saw?

For every pair of sources {S, T}, a member model is trained on every other source (the LOSO
recipe, usually with fewer epochs), converted to int8, and run on the scans of S and of T.
When source S is held out, its LOSO fold model gives the answer and the members trained
without S (one per other source T) vote: none of them saw S either, so the evaluation stays
nested. Each held-out record of the LOSO result gains `member_probabilities` (one vector per
member); `benchmarks.selective` scores the agreement as a trust rule, and the members' mean as
a label, side by side with today's rule.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from lungcnn.benchmarks.loso import (
    all_samples,
    held_out_records,
    held_out_samples,
    train_convert_calibrate,
)
from lungcnn.benchmarks.selective import members_support
from lungcnn.benchmarks.tables import two_decimals as _f
from lungcnn.edge.manifest import write_json_atomic
from lungcnn.trainer.architectures import ARCHITECTURES
from lungcnn.trainer.config import TrainConfig

MEMBER_RECORDS = "member_records.json"


@dataclass(frozen=True)
class EnsembleConfig:
    out: Path  # member run directories: out/<S>+<T>/
    epochs: int  # members' epochs (the LOSO recipe's other settings are kept)


def pair_name(pair: tuple[str, str]) -> str:
    return "+".join(sorted(pair))


def train_members(result: dict, config: EnsembleConfig,
                  log: Callable[[str], None] = print) -> dict:
    """Every pair's member records for the sources of `result` (a `lungcnn loso` result),
    {pair name: {source: records of that source}}: read when the member's run has them, else
    trained, converted and run."""
    pairs = list(itertools.combinations(sorted(result["sources"]), 2))
    members = {pair_name(pair): _reused(config.out / pair_name(pair), log) for pair in pairs}
    missing = [pair for pair in pairs if members[pair_name(pair)] is None]
    if missing:
        recipe = replace(TrainConfig.from_json(result["recipe"]), epochs=config.epochs)
        data = [Path(p) for p in result["data"]]
        root, samples = all_samples(data, config.out / "data")
        for pair in missing:
            log(f"ensemble member without {pair_name(pair)}")
            members[pair_name(pair)] = _member(result["arch"], recipe, data, root, samples,
                                               pair, config.out / pair_name(pair), log)
    return members


def _reused(run_dir: Path, log: Callable[[str], None]) -> dict | None:
    records_path = run_dir / MEMBER_RECORDS
    if not records_path.is_file():
        return None
    log(f"  {records_path} exists: member reused")
    return json.loads(records_path.read_text())


def _member(arch: str, recipe: TrainConfig, data: list[Path], root: Path, samples: list,
            pair: tuple[str, str], run_dir: Path, log: Callable[[str], None]) -> dict:
    recipe = replace(recipe, exclude_sources=(*recipe.exclude_sources, *pair))
    train_convert_calibrate(ARCHITECTURES[arch], recipe, data, run_dir, log)
    kept = [s for s in samples if recipe.keeps(s)]
    records = {source: held_out_records(run_dir / "model_int8.tflite", root,
                                        held_out_samples(samples, source, recipe), kept)
               for source in pair}
    write_json_atomic(run_dir / MEMBER_RECORDS, records)
    return records


def with_members(result: dict, members: dict) -> dict:
    """The LOSO result with each held-out record's `member_probabilities`: the vote of every
    member trained without its source (None for a scan a member could not read)."""
    folds = {}
    for source, fold in result["folds"].items():
        votes = [_by_file(records[source]) for name, records in members.items()
                 if source in name.split("+")]
        folds[source] = {**fold, "records": [
            {**r, "member_probabilities": [vote.get(r["file"]) for vote in votes]}
            for r in fold["records"]]}
    return {**result, "folds": folds}


def _by_file(records: list[dict]) -> dict[str, dict[str, float] | None]:
    return {r["file"]: r["probabilities"] if r["status"] == "ok" else None for r in records}


def label_accuracy(result: dict) -> dict:
    """Per fold and pooled, over answered scans: accuracy of the fold model's answer, of the
    members' mean and of the mean of both (all of them trained without the fold's source),
    and the members' mean support of the answer when it is right and when it is wrong."""
    rows, pooled = {}, _Tally()
    for source, fold in result["folds"].items():
        tally = _Tally()
        for record in fold["records"]:
            votes = [v for v in record.get("member_probabilities") or [] if v is not None]
            if record["status"] == "ok" and votes:
                tally.add(record, votes)
                pooled.add(record, votes)
        rows[source] = tally.row()
    rows["pooled"] = pooled.row()
    return rows


class _Tally:
    def __init__(self):
        self.hits = {"answer": [], "members": [], "all": []}
        self.support = {True: [], False: []}

    def add(self, record: dict, votes: list[dict[str, float]]) -> None:
        right = record["predicted"] == record["label"]
        self.hits["answer"].append(right)
        self.hits["members"].append(_mean_label(votes) == record["label"])
        self.hits["all"].append(_mean_label([*votes, record["probabilities"]]) == record["label"])
        self.support[right].append(members_support(record))

    def row(self) -> dict:
        return {**{key: _mean(values) for key, values in self.hits.items()},
                "n": len(self.hits["answer"]), "support_right": _mean(self.support[True]),
                "support_wrong": _mean(self.support[False])}


def _mean_label(votes: list[dict[str, float]]) -> str:
    names = list(votes[0])
    return max(names, key=lambda name: sum(v[name] for v in votes))


def _mean(values: list) -> float | None:
    return sum(values) / len(values) if values else None


def ensemble_lines(result: dict, kept: bool) -> list[str]:
    """The Markdown section of a `lungcnn loso-ensemble` result."""
    lines = ["", f"## Ensemble members ({result['ensemble']['epochs']} epochs each, each "
             "without the held-out source and one more)", "",
             f"Ensemble support as a trust signal: {'kept' if kept else 'not kept'} "
             "(nested: more wrong answers flagged, at most the allowed share of right ones, "
             "and accepted answers more accurate than all on at least as many folds).", "",
             "Accuracy on answered held-out scans, by which model gives the label, and the "
             "members' mean probability of the fold model's answer (its support) when that "
             "answer is right and when it is wrong:", "",
             "| held out | n | fold model | members' mean | fold model and members "
             "| support, right answers | support, wrong answers |",
             "|---|---|---|---|---|---|---|"]
    for source, row in label_accuracy(result).items():
        lines.append(f"| {source} | {row['n']} | {_f(row['answer'])} | {_f(row['members'])} "
                     f"| {_f(row['all'])} | {_f(row['support_right'])} "
                     f"| {_f(row['support_wrong'])} |")
    return lines
