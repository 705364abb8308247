"""Classifying with several workers (`edge.workers`, `edge-classify --workers`): the same
records in the same order as one worker, one interpreter per thread, early stop."""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
import warnings

import pytest
from typer.testing import CliRunner

from lungcnn.edge import cli, interpreter
from lungcnn.edge.api import BUNDLED_MODEL, Classifier
from lungcnn.edge.errors import print_error
from lungcnn.edge.pixels import DecodeMemory
from lungcnn.edge.quiet import decoder_warnings_silenced
from lungcnn.edge.workers import LOOKAHEAD, Classifiers, classify_in_order, default_workers


def run(*args) -> tuple[int, list[dict]]:
    result = CliRunner().invoke(cli.app, [str(a) for a in args])
    return result.exit_code, [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def mixed_folder(scan_files, tmp_path_factory):
    """Twenty scans (copies of the committed ones, two sharing each stem in subfolders) and
    two files that are not images."""
    folder = tmp_path_factory.mktemp("mixed")
    for index in range(20):
        target = folder / f"part{index % 2}" / f"{index // 2:02d}{scan_files[index % 6].suffix}"
        target.parent.mkdir(exist_ok=True)
        shutil.copy(scan_files[index % len(scan_files)], target)
    (folder / "part0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "part1" / "empty.jpg").write_bytes(b"")
    return folder


@pytest.mark.parametrize("workers", [2, 3])
def test_several_workers_write_the_records_of_one(mixed_folder, workers, tmp_path):
    code_one, one = run("--json", "--workers", 1, "--heatmap", tmp_path / "one", mixed_folder)
    code_many, many = run("--json", "--workers", workers, "--heatmap", tmp_path / "many",
                          mixed_folder)
    assert code_one == code_many == 1  # the two bad files fail, the rest are classified
    assert many == one
    assert [r["status"] for r in one].count("error") == 2
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == names
    for name in names:  # the same scan's heatmap under the same name, whatever finished first
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "many" / name).read_bytes()


def test_workers_must_be_positive(scan_files):
    assert run("--workers", 0, scan_files[0])[0] == 2


def test_results_come_in_input_order_and_no_interpreter_is_shared():
    classifier = Classifier(BUNDLED_MODEL)
    busy: set[int] = set()
    used: set[int] = set()
    shared = []
    lock = threading.Lock()

    def work(leased: Classifier, item: int) -> int:
        key = id(leased.runtime)
        with lock:
            shared.append(key in busy)
            busy.add(key)
            used.add(key)
        time.sleep(0.001 * (item % 3))  # finish out of order
        with lock:
            busy.discard(key)
        return item * item

    assert list(classify_in_order(classifier, work, range(40), 3)) == [i * i for i in
                                                                         range(40)]
    assert not any(shared)
    assert id(classifier.runtime) in used and len(used) <= 3


def test_closing_early_stops_the_work_not_yet_started():
    started = []

    def work(leased: Classifier, item: int) -> int:
        started.append(item)
        return item

    results = classify_in_order(Classifier(BUNDLED_MODEL), work, range(1000), 2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    results.close()  # cancels what is queued and waits for what runs
    assert len(started) <= 3 + 2 * (LOOKAHEAD + 1)


def test_a_replica_answers_like_its_original(scan_files):
    classifier = Classifier(BUNDLED_MODEL)
    twin = classifier.replica()
    assert twin.runtime is not classifier.runtime
    assert twin.classify(scan_files[0]).to_dict() == classifier.classify(scan_files[0]).to_dict()


def test_no_more_classifiers_than_the_limit():
    pool = Classifiers(Classifier(BUNDLED_MODEL), 2)
    with pool.lease() as first, pool.lease() as second:
        assert first is not second
    with pool.lease() as again:
        assert again in (first, second)
    assert Classifiers(Classifier(BUNDLED_MODEL), 3, eager=True)._made == 3


def test_default_workers_is_bounded():
    assert 1 <= default_workers() <= 4


def test_decodes_on_several_threads_share_one_memory_budget():
    memory = DecodeMemory(budget=100)
    order = []
    first_in = threading.Event()

    def first():
        with memory.held(70):
            order.append("first in")
            first_in.set()
            time.sleep(0.05)
            order.append("first out")

    def second():
        first_in.wait()
        with memory.held(70):  # 70 + 70 > 100: waits for the first to leave
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert order == ["first in", "first out", "second in"]
    with memory.held(500):  # one decode alone never waits, even over the budget
        pass


def test_overlapping_decodes_silence_warnings_and_restore_the_filters():
    before = list(warnings.filters)
    inside = threading.Barrier(2)
    caught = []

    def decode_like():
        with decoder_warnings_silenced:
            inside.wait(timeout=5)  # both threads are inside at once
            caught.append(warnings.filters[0][0])
            inside.wait(timeout=5)

    threads = [threading.Thread(target=decode_like) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert caught == ["ignore", "ignore"]
    assert warnings.filters == before


def test_an_error_line_printed_while_a_worker_loads_a_model_is_not_swallowed(capfd,
                                                                             monkeypatch):
    """Loading a model redirects file descriptor 2 to capture the runtime's log; a line the
    main thread prints meanwhile must wait and reach stderr, not the capture (a CI failure:
    a symlink's error line went missing with several workers)."""
    captured, loading, release = [], threading.Event(), threading.Event()
    descriptor_2 = open(2, "w", closefd=False)  # noqa: SIM115 - as in a process, not capfd's
    monkeypatch.setattr(sys, "stderr", descriptor_2)

    def load():
        with interpreter._native_stderr_captured(captured):
            loading.set()
            release.wait(10)

    loader = threading.Thread(target=load)
    loader.start()
    loading.wait(10)
    printer = threading.Thread(target=print_error, args=("scan.png: unreadable", "prog"))
    printer.start()
    printer.join(0.2)
    release.set()
    loader.join(10)
    printer.join(10)
    assert capfd.readouterr().err == "prog: error: scan.png: unreadable\n"
    assert "unreadable" not in "".join(captured)
