"""Detection: the classifier of this generator's output (a scikit-learn estimator), its dataset,
training and calibration. Batch scans live in :mod:`anima.scan`."""
