"""Keras -> TensorFlow Lite converter (`lungcnn convert`, `python -m lungcnn.convert`).

Library API: `convert.converter.convert_keras_run`. TensorFlow is imported only when a
conversion runs, so importing this package stays cheap.
"""
