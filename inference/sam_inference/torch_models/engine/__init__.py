"""The encoder engines: how the image encoder computes (issue 13).

`plan` decides (pure, plus hardware facts) and imports no torch at module level; `encoder`, `attention`
and `int8` prepare the torch modules and are imported only by the predictor, the bench and the tests.
"""

from .plan import ENGINES, PRECISIONS, EngineChoice, EnginePlan, PrecisionChoice, resolve_plan

__all__ = ["ENGINES", "PRECISIONS", "EngineChoice", "EnginePlan", "PrecisionChoice", "resolve_plan"]
