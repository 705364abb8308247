"""Calibrate stage (`lungcnn calibrate`): fit a converted model's temperature and trust
thresholds on training and validation scans, and write them into its manifest."""
