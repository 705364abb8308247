"""Training stage: architectures, dataset split and leak checks, metrics, `lungcnn train`
and `lungcnn data check`. Needs the `[train]` extra (TensorFlow) only for training itself."""
