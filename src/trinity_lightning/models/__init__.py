"""Ordinary task models that the recipes and benchmarks use."""

from trinity_lightning.models.classifier import Classifier, SmallCNN

__all__ = ["Classifier", "SmallCNN"]
