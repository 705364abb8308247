"""lungcnn: an edge-deployable TensorFlow Lite classifier of chest X-rays.

    from lungcnn import Classifier
    result = Classifier().classify("scan.png")   # the bundled model; no TensorFlow needed
    result.to_dict()                             # the `edge-classify --json` record

Not a medical device (the notice every output carries: `lungcnn.edge.errors.NOTICE`).
"""

__all__ = ["Classifier", "ScanResult"]


def __getattr__(name: str):
    # Lazy, so that `import lungcnn.trainer...` does not load the device runtime first.
    if name == "Classifier":
        from lungcnn.edge.api import Classifier

        return Classifier
    if name == "ScanResult":
        from lungcnn.edge.report import ScanResult

        return ScanResult
    raise AttributeError(f"module 'lungcnn' has no attribute {name!r}")
