"""Every line of the encoder that imports torch (and segment_anything, onnx export): the models, their
construction and checkpoint loading, the predictor, the encoder engines, the tiny test model, the decoder
export.

The rest of `sam_inference` never imports this package: the composition root (`__main__`) injects
`factory.build_predictor` into `create_app`, and the CLI subcommands that need torch import it lazily.
Importing this package itself stays cheap; its modules import torch.
"""
