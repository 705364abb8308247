"""`lungcnn classify-archive`: classify an archive of scans on a Ray cluster with Ray Data.

The same device kernel (`lungcnn.edge.api.Classifier`) gives every label, probability and
trust flag; this package only lists the files, spreads them over Ray actors and writes
Parquet results with a run manifest. Needs the `[scale]` extra (Ray Data, pyarrow).
Not a medical device: do not use for diagnosis without a clinical study.
"""
