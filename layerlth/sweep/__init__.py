"""Sweeps: a YAML grid of trials run on Ray Tune, stored, resumable, tracked in W&B."""
