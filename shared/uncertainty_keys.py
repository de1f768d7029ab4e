"""Names of the uncertainty measures (torch-free, so text parsers and reports can import them cheaply).

The measures themselves (Malinin & Gales, Uncertainty in Structured Prediction, eqs. 7–14) are computed
in :mod:`shared.uncertainty`.
"""

UNCERTAINTY_KEYS = ("total", "data", "mutual_information", "epkl", "rmi", "confidence")
