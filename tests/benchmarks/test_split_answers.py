"""`python -m lungcnn.benchmarks.split_answers`: the device's answers on the test split."""

from __future__ import annotations

from lungcnn.benchmarks.split_answers import answers, main, summary


def test_rows_cover_the_test_split_and_the_table_names_its_command(tiny_tflite_models,
                                                                   dataset_dir, tmp_path):
    model = tiny_tflite_models["int8"]
    rows = answers(model, dataset_dir)
    assert len(rows) == 66 and sum(r["leak_free"] for r in rows) == 57
    totals = summary(rows)
    assert totals["wrong"] == sum(not r["right"] for r in rows)
    assert 0 <= totals["wrong_flagged"] <= totals["wrong"]
    out = tmp_path / "table.md"
    main([str(model), "--data", str(dataset_dir), "--out", str(out)])
    text = out.read_text()
    assert "Regenerate: `python -m lungcnn.benchmarks.split_answers" in text
    assert f"| {model} | leak-free test | 57 |" in text and "Not a medical device" in text
