"""`edge-classify serve`: a web page and a versioned JSON API on the device.

Every answer comes from `lungcnn.edge.api.Classifier`, so a record from `POST /v1/classify`
is exactly an `edge-classify --json` line. Needs the `serve` extra
(`pip install 'lungcnn[serve]'`); importing this package alone needs nothing more than the
device kernel. Not a medical device.
"""
