"""Softmax/temperature, MC dropout, the variational head and calibration (see issue 4)."""
