"""The human side of a benchmark result: its Markdown page (plots: benchmarks.plots)."""

from __future__ import annotations

from pathlib import Path

from lungcnn.benchmarks.report_trust import open_set_section, trust_section
from lungcnn.benchmarks.tables import (
    markdown_table,
    megabytes,
    number,
    percentiles,
    row_label,
    spread,
    variant_rows,
)
from lungcnn.edge.errors import NOTICE as DEVICE_NOTICE
from lungcnn.trainer.metrics import format_with_ci

NOTICE = f"These numbers describe software, not diagnostic performance. {DEVICE_NOTICE}"


def write_markdown(result: dict, path: Path, artifacts: dict[str, Path]) -> Path:
    from lungcnn.edge.manifest import write_bytes_atomic

    return write_bytes_atomic(path, markdown(result, artifacts).encode())


def markdown(result: dict, artifacts: dict[str, Path] | None = None) -> str:
    machine, config = result["machine"], result["config"]
    lines = [
        f"# Benchmark `{result['name']}`",
        "",
        "Regenerate with:",
        "",
        "```bash",
        result["command"],
        "```",
        "",
        f"{result['date']} on {machine['cpu_model']}, {machine['cores']} cores, "
        f"{machine['memory_gb']} GB ({machine['platform']}); load average "
        f"{machine['load_average_start'][0]} at start, {machine['load_average_end'][0]} at end "
        f"({machine['note']}). Whole benchmark: {result['elapsed_s']:.0f} s wall, "
        f"{result['cpu_s']:.0f} s CPU ("
        + ", ".join(f"{phase.replace('_', ' ')} {seconds:.0f} s"
                    for phase, seconds in result["phase_s"].items())
        + ").",
        "",
        f"> {NOTICE}",
        "",
    ]
    if config["quick"]:
        lines += ["**Quick mode: a smoke run on a few scans, not a measurement.**", ""]
    lines += _quality_section(result) + _speed_section(result) + _cost_section(result)
    lines += _robustness_section(result) + trust_section(result) + open_set_section(result)
    lines += _seeds_section(result)
    if artifacts:
        lines += ["## Plots", ""]
        lines += [f"![{key}]({Path(p).name})" for key, p in artifacts.items() if str(p).endswith(".png")]
        lines.append("")
    return "\n".join(lines)


def _quality_section(result: dict) -> list[str]:
    first = result["runs"][0]
    lines = [
        "## Quality",
        "",
        f"Test split ({first['test_scans']} scans) and its leak-free subset "
        f"({first['test_dedup_scans']} scans that duplicate no training file); 95% bootstrap "
        "intervals; F1 per class on the test split; agreement = share of test scans labelled as "
        "the run's Keras model labels them.",
        "",
    ]
    header = ["run", "variant", "test accuracy", "test AUC", "leak-free accuracy", "leak-free AUC",
              "F1 " + " / ".join(next(iter(variant_rows(result)))[1]["quality"]["test"]["f1"]),
              "agreement with Keras"]
    rows = []
    for run, variant in variant_rows(result):
        test, dedup = variant["quality"]["test"], variant["quality"]["test_dedup"]
        rows.append([
            *row_label(run, variant),
            format_with_ci(test["accuracy"], test["accuracy_ci95"]),
            format_with_ci(test["auc_macro"], test["auc_macro_ci95"]),
            format_with_ci(dedup["accuracy"], dedup["accuracy_ci95"]),
            format_with_ci(dedup["auc_macro"], dedup["auc_macro_ci95"]),
            " / ".join(f"{f:.2f}" for f in test["f1"].values()),
            number(test["agreement_with_keras"]),
        ])
    return lines + markdown_table(header, rows)


def _speed_section(result: dict) -> list[str]:
    config = result["config"]
    threads = [str(t) for t in config["threads"]]
    lines = [
        "## Speed",
        "",
        f"Milliseconds, p50 / p90 / p99 over {config['timed_calls']} timed calls after "
        f"{config['warmup_calls']} warm-up calls, one fresh process per model and thread count, "
        f"the calls made in {config['rounds']} rounds that alternate between all models. "
        "*invoke*: one model call on a prepared input (Keras: `model(x)` on a batch of 1); "
        "*end to end*: file on disk through the model's contract (`edge.contract.prepare`) to probabilities. "
        f"*× ref*: p50 as a multiple of the reference float32 TFLite model's, same run, "
        f"{threads[-1]} threads.",
        "",
    ]
    header = ["run", "variant"]
    for kind in ("invoke", "end to end"):
        header += [f"{kind}, {t} thread{'s' if t != '1' else ''}" for t in threads]
    header += ["× ref invoke", "× ref end to end"]
    rows, batched = [], []
    for run, variant in variant_rows(result):
        speed = variant["speed"]
        row = row_label(run, variant)
        for kind in ("invoke_ms", "end_to_end_ms"):
            row += [percentiles(speed[t][kind]) for t in threads]
        ratio = variant["vs_reference_float32"][threads[-1]]
        row += [f"{ratio['invoke_p50']:.2f}", f"{ratio['end_to_end_p50']:.2f}"]
        rows.append(row)
        if "batched_per_image_ms" in speed[threads[-1]]:
            batched.append([run["run"], *(percentiles(speed[t]["batched_per_image_ms"]) for t in threads)])
    lines += markdown_table(header, rows)
    if batched:
        lines += [
            f"Keras **batched** (`model(x)` on a batch of {config['keras_batch']}), milliseconds per "
            "image — throughput for offline scoring, not the latency of classifying one scan:",
            "",
        ]
        lines += markdown_table(["run"] + [f"{t} thread{'s' if t != '1' else ''}" for t in threads], batched)
    return lines


def _cost_section(result: dict) -> list[str]:
    lines = [
        "## Cost",
        "",
        "Measured in a fresh process per model: importing the runtime, loading the model, the "
        "first call, and the process's peak resident memory after loading the model and "
        "classifying one scan (VmHWM: Linux carries a forking parent's ru_maxrss across exec).",
        "",
    ]
    header = ["run", "variant", "file size", "runtime import", "model load", "first call",
              "peak RSS", "TensorFlow loaded"]
    rows = []
    for run, variant in variant_rows(result):
        cost = variant["cost"]
        rows.append([
            *row_label(run, variant),
            megabytes(cost["file_bytes"]),
            f"{cost['import_s']:.2f} s", f"{cost['load_s']:.3f} s", f"{cost['first_call_s']:.3f} s",
            f"{cost['peak_rss_mb']:.0f} MB", "yes" if cost["tensorflow_loaded"] else "no",
        ])
    return lines + markdown_table(header, rows)


def _robustness_section(result: dict) -> list[str]:
    changes = list(next(iter(variant_rows(result)))[1]["robustness"])
    lines = [
        "## Robustness",
        "",
        "Share of test scans whose label does not change under each acquisition change "
        "(`benchmarks/robustness.py`). 1.00 = no label changed.",
        "",
    ]
    rows = []
    for run, variant in variant_rows(result):
        shares = variant["robustness"]
        rows.append([*row_label(run, variant),
                     *(f"{shares[c]:.2f}" for c in changes), f"{min(shares.values()):.2f}"])
    return lines + markdown_table(["run", "variant", *changes, "worst"], rows)


def _seeds_section(result: dict) -> list[str]:
    seeds = result.get("seeds")
    if not seeds:
        return []
    lines = [
        "## Seeds",
        "",
        f"{seeds['seeds']} seeds per architecture ({len(seeds['trained'])} trained by this "
        f"benchmark in {seeds['train_s']:.0f} s, {len(seeds['reused'])} reused from earlier runs, "
        f"the others are the benchmarked runs; converting and evaluating the seeds took "
        f"{seeds['elapsed_s'] - seeds['train_s']:.0f} s); mean ± standard deviation (min–max) "
        "across seeds, quality only.",
        "",
    ]
    rows = []
    for arch, variants in seeds["architectures"].items():
        for variant, summary in variants.items():
            rows.append([arch, variant, str(summary["n_seeds"]),
                         *(spread(summary[key]) for key in
                           ("test_accuracy", "test_auc_macro", "test_dedup_accuracy", "test_dedup_auc_macro"))])
    return lines + markdown_table(["arch", "variant", "seeds", "test accuracy", "test AUC",
                           "leak-free accuracy", "leak-free AUC"], rows)
