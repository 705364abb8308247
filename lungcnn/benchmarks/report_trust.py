"""The trust sections of the benchmark report: the flags of each TFLite variant on the test
split and the shift proxies, and the open-set proxy."""

from __future__ import annotations

from lungcnn.benchmarks.tables import markdown_table, ms, percent, row_label, variant_rows


def trust_section(result: dict) -> list[str]:
    trusted = [(run, variant) for run, variant in variant_rows(result) if variant.get("trust")]
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
            *row_label(run, variant), percent(test["abstain_rate"]),
            f"{percent(test['accuracy'])} -> {percent(test['accepted_accuracy'])}",
            f"{test['n_wrong_flagged']} of {test['n_wrong']}",
            f"{trust['ece_before']:.3f} -> {trust['ece_after']:.3f}",
            f"{percent(non_xray['refused_rate'])} of {non_xray['n']}",
            ms(trust["heatmap_ms_one_thread"]["p50"]),
        ])
    lines += markdown_table(["run", "variant", "test abstained", "accuracy: all -> accepted",
                     "wrong flagged", "ECE test", "non-X-ray refused", "heatmap p50 ms, 1 thread"],
                    rows)
    coverages = [row["coverage"] for row in trusted[0][1]["trust"]["test"]["risk_coverage"]]
    lines += ["Risk-coverage on test: accuracy of the given share of scans the model is most "
              "stable on (calibrated confidence averaged over the scan and its re-acquired "
              "copies); AURC: mean error rate of the most stable k scans over every k (lower "
              "is better; held-out sources: `lungcnn loso`).", ""]
    lines += markdown_table(["run", "variant", *(f"{c:.0%}" for c in coverages), "AURC"], [
        [*row_label(run, variant),
         *(percent(row["accuracy"]) for row in variant["trust"]["test"]["risk_coverage"]),
         _aurc(variant["trust"]["test"].get("aurc"))]
        for run, variant in trusted])
    return lines + _shift_proxy_table(trusted)


def _aurc(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


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
            "flagged.", ""] + markdown_table(["run", "proxy", *variants], rows)


def _proxy_cell(summary: dict) -> str:
    return (f"{percent(summary['accuracy'])} / {percent(summary['abstain_rate'])} / "
            f"{percent(summary['accepted_accuracy'])} / "
            f"{summary['n_wrong_flagged']} of {summary['n_wrong']}")


def open_set_section(result: dict) -> list[str]:
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
            rows.append([arch, held_out, f"{percent(unseen['flagged'])} of {unseen['n']}",
                         percent(unseen["uncertain"]), percent(unseen["out_of_distribution"]),
                         f"{percent(seen['flagged'])} of {seen['n']}",
                         percent(seen["accepted_accuracy"])])
    return lines + markdown_table(["arch", "held-out class", "unseen flagged", "uncertain",
                           "out_of_distribution", "seen validation abstained",
                           "seen accepted accuracy"], rows)
