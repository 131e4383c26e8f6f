"""Train stage: segmentation models trained on pseudo-labels."""
from wsss.train.models import TRAIN_MODELS
from wsss.train.trainer import TrainParams, build_model, evaluate_model, predict, train

__all__ = ["TRAIN_MODELS", "TrainParams", "build_model", "evaluate_model", "predict", "train"]
