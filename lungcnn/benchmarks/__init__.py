"""lungcnn benchmarks: the full Keras model and every TFLite variant side by side.

`lungcnn bench` (or `python -m lungcnn.benchmarks`) measures quality, latency, cost and robustness
in one run and writes benchmarks/results/<name>.json, .md and plots.
Not a medical device (the notice every output carries: `lungcnn.edge.errors.NOTICE`).
"""
