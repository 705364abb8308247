"""lungcnn edge: classify chest X-rays with a TFLite model, without TensorFlow.

Not a medical device (the notice every output carries: `lungcnn.edge.errors.NOTICE`).
"""
