"""The previous validated run's statistics, for the drift check, without an MLMD resolver."""
from components.previous_statistics.component import PreviousStatistics, RecordStatistics

__all__ = ["PreviousStatistics", "RecordStatistics"]
