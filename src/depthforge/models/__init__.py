"""Model registry and factory: ``create_model(name, pretrained=..., **overrides)``."""

from depthforge.models import hf, zoo  # noqa: F401  (registers the models)
from depthforge.models.pretrained import PretrainedWeightsError
from depthforge.models.registry import create_model, list_models, model_from_config, register_model

__all__ = ["create_model", "list_models", "model_from_config", "register_model", "PretrainedWeightsError"]
