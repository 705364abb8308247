"""The human side of a benchmark result: a Markdown table and PNG plots."""

from __future__ import annotations

from pathlib import Path

from lungcnn.trainer.metrics import format_with_ci

NOTICE = ("Not a medical device: these numbers describe software, not diagnostic performance; "
          "do not use for diagnosis without a clinical study.")


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
    lines += _robustness_section(result) + _trust_section(result) + _open_set_section(result)
    lines += _seeds_section(result)
    if artifacts:
        lines += ["## Plots", ""]
        lines += [f"![{key}]({Path(p).name})" for key, p in artifacts.items() if str(p).endswith(".png")]
        lines.append("")
    return "\n".join(lines)


def _rows(result: dict):
    for run in result["runs"]:
        for variant in run["variants"]:
            yield run, variant


def _label(run: dict, variant: dict) -> list[str]:
    marks = " (bundled)" if variant["bundled"] else ""
    return [run["run"], f"{variant['variant']}{marks}"]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


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
              "F1 " + " / ".join(next(iter(_rows(result)))[1]["quality"]["test"]["f1"]),
              "agreement with Keras"]
    rows = []
    for run, variant in _rows(result):
        test, dedup = variant["quality"]["test"], variant["quality"]["test_dedup"]
        rows.append([
            *_label(run, variant),
            format_with_ci(test["accuracy"], test["accuracy_ci95"]),
            format_with_ci(test["auc_macro"], test["auc_macro_ci95"]),
            format_with_ci(dedup["accuracy"], dedup["accuracy_ci95"]),
            format_with_ci(dedup["auc_macro"], dedup["auc_macro_ci95"]),
            " / ".join(f"{f:.2f}" for f in test["f1"].values()),
            _number(test["agreement_with_keras"]),
        ])
    return lines + _table(header, rows)


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
        "*end to end*: file on disk through `edge.contract.load_scan` to probabilities. "
        f"*× ref*: p50 as a multiple of the reference float32 TFLite model's, same run, "
        f"{threads[-1]} threads.",
        "",
    ]
    header = ["run", "variant"]
    for kind in ("invoke", "end to end"):
        header += [f"{kind}, {t} thread{'s' if t != '1' else ''}" for t in threads]
    header += ["× ref invoke", "× ref end to end"]
    rows, batched = [], []
    for run, variant in _rows(result):
        speed = variant["speed"]
        row = _label(run, variant)
        for kind in ("invoke_ms", "end_to_end_ms"):
            row += [_percentiles(speed[t][kind]) for t in threads]
        ratio = variant["vs_reference_float32"][threads[-1]]
        row += [f"{ratio['invoke_p50']:.2f}", f"{ratio['end_to_end_p50']:.2f}"]
        rows.append(row)
        if "batched_per_image_ms" in speed[threads[-1]]:
            batched.append([run["run"], *(_percentiles(speed[t]["batched_per_image_ms"]) for t in threads)])
    lines += _table(header, rows)
    if batched:
        lines += [
            f"Keras **batched** (`model(x)` on a batch of {config['keras_batch']}), milliseconds per "
            "image — throughput for offline scoring, not the latency of classifying one scan:",
            "",
        ]
        lines += _table(["run"] + [f"{t} thread{'s' if t != '1' else ''}" for t in threads], batched)
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
    for run, variant in _rows(result):
        cost = variant["cost"]
        rows.append([
            *_label(run, variant),
            _megabytes(cost["file_bytes"]),
            f"{cost['import_s']:.2f} s", f"{cost['load_s']:.3f} s", f"{cost['first_call_s']:.3f} s",
            f"{cost['peak_rss_mb']:.0f} MB", "yes" if cost["tensorflow_loaded"] else "no",
        ])
    return lines + _table(header, rows)


def _robustness_section(result: dict) -> list[str]:
    changes = list(next(iter(_rows(result)))[1]["robustness"])
    lines = [
        "## Robustness",
        "",
        "Share of test scans whose label does not change under each acquisition change "
        "(`benchmarks/robustness.py`). 1.00 = no label changed.",
        "",
    ]
    rows = []
    for run, variant in _rows(result):
        shares = variant["robustness"]
        rows.append([*_label(run, variant),
                     *(f"{shares[c]:.2f}" for c in changes), f"{min(shares.values()):.2f}"])
    return lines + _table(["run", "variant", *changes, "worst"], rows)


def _trust_section(result: dict) -> list[str]:
    trusted = [(run, variant) for run, variant in _rows(result) if variant.get("trust")]
    if not trusted:
        return []
    lines = [
        "## Trust",
        "",
        "Thresholds (temperature, X-ray gate, minimum confidence) come from each model's "
        "manifest, fitted by `lungcnn calibrate` on the run's train/validation files only; "
        "the test scans are only read.",
        "",
        "The flags of `edge-classify` for each TFLite variant (Keras: not assessed). "
        "*abstained*: any flag but `ok`; *wrong flagged*: wrong answers not flagged `ok`; "
        "*non-X-ray refused*: images of `benchmarks/ood_images.py` flagged "
        "`out_of_distribution`; ECE in 15 bins on test, without -> with the temperature.",
        "",
    ]
    rows = []
    for run, variant in trusted:
        trust = variant["trust"]
        test, non_xray = trust["test"], trust["non_xray"]
        rows.append([
            *_label(run, variant), _percent(test["abstain_rate"]),
            f"{_percent(test['accuracy'])} -> {_percent(test['accepted_accuracy'])}",
            f"{test['n_wrong_flagged']} of {test['n_wrong']}",
            f"{trust['ece_before']:.3f} -> {trust['ece_after']:.3f}",
            f"{_percent(non_xray['refused_rate'])} of {non_xray['n']}",
            _ms(trust["heatmap_ms_one_thread"]["p50"]),
        ])
    lines += _table(["run", "variant", "test abstained", "accuracy: all -> accepted",
                     "wrong flagged", "ECE test", "non-X-ray refused", "heatmap p50 ms, 1 thread"],
                    rows)
    coverages = [row["coverage"] for row in trusted[0][1]["trust"]["test"]["risk_coverage"]]
    lines += ["Risk-coverage on test: accuracy of the given share of scans the model is most "
              "stable on (calibrated confidence averaged over the scan and its re-acquired "
              "copies).", ""]
    lines += _table(["run", "variant", *(f"{c:.0%}" for c in coverages)], [
        [*_label(run, variant),
         *(_percent(row["accuracy"]) for row in variant["trust"]["test"]["risk_coverage"])]
        for run, variant in trusted])
    return lines + _shift_proxy_table(trusted)


def _shift_proxy_table(trusted: list[tuple[dict, dict]]) -> list[str]:
    """One row per run and proxy, one column per variant."""
    variants = list(dict.fromkeys(variant["variant"] for _, variant in trusted))
    by_run: dict[str, dict[str, dict]] = {}
    for run, variant in trusted:
        by_run.setdefault(run["run"], {})[variant["variant"]] = variant["trust"]["shift_proxies"]
    rows = []
    for run_name, proxies_by_variant in by_run.items():
        for proxy in next(iter(proxies_by_variant.values())):
            rows.append([run_name, proxy, *(
                _proxy_cell(proxies_by_variant[v][proxy]) if v in proxies_by_variant else ""
                for v in variants)])
    return ["Shift proxies (test scans shrunk to 128 px and saved as JPEG quality 30, and each "
            "robustness change); each cell: accuracy / abstained / accuracy of accepted / wrong "
            "flagged.", ""] + _table(["run", "proxy", *variants], rows)


def _proxy_cell(summary: dict) -> str:
    return (f"{_percent(summary['accuracy'])} / {_percent(summary['abstain_rate'])} / "
            f"{_percent(summary['accepted_accuracy'])} / "
            f"{summary['n_wrong_flagged']} of {summary['n_wrong']}")


def _open_set_section(result: dict) -> list[str]:
    reports = result.get("open_set")
    if not reports:
        return []
    lines = [
        "## Open-set proxy",
        "",
        "Scans of a class the model never saw (benchmarks/open_set.py): for each class, the "
        "architecture's recipe trained on the other two classes' train/validation scans, trust "
        "thresholds fitted on those as `lungcnn calibrate` does, then every train/ scan of the "
        "held-out class assessed (a class the model was never taught). *flagged*: not `ok`. "
        "Seen validation: the other classes' validation scans. test/ is not read.",
        "",
    ]
    rows = []
    for arch, report in reports.items():
        for held_out, entry in report["held_out"].items():
            unseen, seen = entry["unseen"], entry["seen_val"]
            rows.append([arch, held_out, f"{_percent(unseen['flagged'])} of {unseen['n']}",
                         _percent(unseen["uncertain"]), _percent(unseen["out_of_distribution"]),
                         f"{_percent(seen['flagged'])} of {seen['n']}",
                         _percent(seen["accepted_accuracy"])])
    return lines + _table(["arch", "held-out class", "unseen flagged", "uncertain",
                           "out_of_distribution", "seen validation abstained",
                           "seen accepted accuracy"], rows)


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
                         *(_spread(summary[key]) for key in
                           ("test_accuracy", "test_auc_macro", "test_dedup_accuracy", "test_dedup_auc_macro"))])
    return lines + _table(["arch", "variant", "seeds", "test accuracy", "test AUC",
                           "leak-free accuracy", "leak-free AUC"], rows)


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _percent(value) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _percentiles(dist: dict) -> str:
    return " / ".join(_ms(dist[key]) for key in ("p50", "p90", "p99"))


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"


def _spread(summary: dict) -> str:
    if summary["mean"] is None:
        return "n/a"
    return (f"{summary['mean']:.3f} ± {summary['std']:.3f} "
            f"({summary['min']:.3f}–{summary['max']:.3f})")


def write_plots(measured, out_dir: Path, name: str) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return {
        "tradeoff_plot": _tradeoff_plot(plt, measured.result, out_dir / f"{name}_tradeoff.png"),
        "latency_plot": _latency_plot(plt, measured, out_dir / f"{name}_latency.png"),
    }


_MARKERS = {"keras": "o", "float32": "s", "float16": "^", "dynamic": "D", "int8": "*"}


def _tradeoff_plot(plt, result: dict, path: Path) -> Path:
    threads = str(result["config"]["threads"][-1])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    run_colors = {run["run"]: colors[i % len(colors)] for i, run in enumerate(result["runs"])}
    figure, axes = plt.subplots(1, 2, figsize=(12, 5))
    for run, variant in _rows(result):
        accuracy = variant["quality"]["test_dedup"]["accuracy"]
        if accuracy is None:
            accuracy = variant["quality"]["test"]["accuracy"]
        size_mb = variant["cost"]["file_bytes"] / 1e6
        style = {"color": run_colors[run["run"]], "marker": _MARKERS.get(variant["variant"], "o"),
                 "alpha": 0.7, "label": f"{run['run']} / {variant['variant']}"}
        axes[0].scatter(variant["speed"][threads]["invoke_ms"]["p50"], accuracy,
                        s=30 + 300 * size_mb ** 0.5, **style)
        axes[1].scatter(size_mb, accuracy, s=60, **style)
    axes[0].set(xscale="log", xlabel=f"invoke p50, ms ({threads} threads)",
                ylabel="leak-free test accuracy", title="accuracy vs latency (area ~ file size)")
    axes[1].set(xscale="log", xlabel="file size, MB", ylabel="leak-free test accuracy",
                title="accuracy vs size")
    for axis in axes:
        axis.margins(0.15)
    axes[1].legend(fontsize=7, loc="best")
    figure.suptitle(f"{result['name']}: {result['machine']['cpu_model']}, "
                    f"{result['machine']['cores']} cores (shared)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _latency_plot(plt, measured, path: Path) -> Path:
    threads = [str(t) for t in measured.result["config"]["threads"]]
    labels = [f"{run['run']}/{variant['variant']}" for run, variant in _rows(measured.result)]
    figure, axes = plt.subplots(2, len(threads), figsize=(6 * len(threads), 8), squeeze=False)
    for row, kind in enumerate(("invoke", "end_to_end")):
        for column, thread in enumerate(threads):
            data = [measured.samples[f"{label}/{kind}/{thread}"] * 1000 for label in labels]
            axis = axes[row][column]
            axis.boxplot(data, whis=(1, 99), showfliers=False)
            axis.set_xticks(range(1, len(labels) + 1), labels, rotation=60, ha="right", fontsize=7)
            axis.set(yscale="log", ylabel="ms",
                     title=f"{kind.replace('_', ' ')}, {thread} thread(s): box p25-p75, whiskers p1-p99")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
