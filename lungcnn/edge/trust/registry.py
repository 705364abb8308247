"""The trust signals, most severe first: the first one a scan fails decides its flag.
Adding a signal: a module with its `SIGNAL` (see `trust.signal`), and one line here."""

from __future__ import annotations

from lungcnn.edge.trust.feature_distance import SIGNAL as FEATURE_DISTANCE
from lungcnn.edge.trust.gate import SIGNAL as GATE
from lungcnn.edge.trust.lung_field import SIGNAL as LUNG_FIELD
from lungcnn.edge.trust.signal import Signal
from lungcnn.edge.trust.stability import SIGNAL as STABILITY

SIGNALS: tuple[Signal, ...] = (GATE, LUNG_FIELD, FEATURE_DISTANCE, STABILITY)
