"""Generated scenes for the engine fidelity tests and bench/: the product's own (the `openvino` engine calibrates on
them), `sam_inference.torch_models.engine.calibration`."""

from sam_inference.torch_models.engine.calibration import Scene, make_scene

__all__ = ["Scene", "make_scene"]
