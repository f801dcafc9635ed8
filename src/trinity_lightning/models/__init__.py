"""Ordinary task models that the recipes and benchmarks use."""

from trinity_lightning.models.classifier import Classifier, SmallCNN
from trinity_lightning.models.tagger import CNNCNNLSTM, EntityF1, Tagger, entity_spans

__all__ = ["CNNCNNLSTM", "Classifier", "EntityF1", "SmallCNN", "Tagger", "entity_spans"]
