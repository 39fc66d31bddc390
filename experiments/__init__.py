"""Experiment mains (absl) and their ml_collections configs, one folder per paper."""
