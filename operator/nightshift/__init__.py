"""Nightshift: a Kubernetes operator that runs ScheduledTasks as Jobs, exactly once, DST-correct."""

__version__ = "0.1.0.dev0"
