"""paper-monitor: watch paper listings, match them against watch rules, alert on channels."""

__version__ = "0.1.0"
