"""The benchmark's PNG plots: accuracy vs latency vs size, and latency distributions."""

from __future__ import annotations

from pathlib import Path

from lungcnn.benchmarks.tables import variant_rows


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
    for run, variant in variant_rows(result):
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
    labels = [f"{run['run']}/{variant['variant']}" for run, variant in variant_rows(measured.result)]
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
