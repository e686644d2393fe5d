"""sam-inference: the SAM image-encoder HTTP service run in the model pods."""

__version__ = "0.1.0"
