"""lungcnn edge: classify chest X-rays with a TFLite model, without TensorFlow.

Not a medical device: do not use for diagnosis without a clinical study.
"""
