"""splitleak: how much of a client's raw data can a split-learning server rebuild?"""

__version__ = "0.1.0"
