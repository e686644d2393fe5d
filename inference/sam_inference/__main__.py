"""`sam-inference` command line: serve, fetch, export-decoder, prepare-encoder, make-tiny.

This is the composition root: `serve` injects the torch predictor factory (`torch_models.factory`) into
`create_app`. Heavy imports (torch, segment_anything, onnx) happen inside the subcommand that needs them, so
that `fetch` and `--help` start fast and `serve` imports torch only while loading the model (`/healthz`
answers meanwhile).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sam_contract.models import VARIANTS

from . import __version__

if TYPE_CHECKING:
    from .predictor import Predictor
    from .settings import InferenceSettings


def build_torch_predictor(settings: InferenceSettings) -> Predictor:
    """The predictor factory of the service; imports torch when the app's loading task calls it."""
    from .torch_models.factory import build_predictor

    return build_predictor(settings)


def _cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web
    from pydantic import ValidationError

    from .app import create_app
    from .settings import InferenceSettings

    try:
        settings = InferenceSettings()  # type: ignore[call-arg]  # fields come from the environment
    except ValidationError as exc:
        print(f"sam-inference serve: invalid SAM_INFERENCE_* settings:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = create_app(settings, predictor_factory=build_torch_predictor)
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .fetch import FetchError, fetch

    try:
        fetch(
            args.source,
            args.sha256,
            Path(args.output),
            retries=args.retries,
            backoff=args.backoff,
            timeout=args.timeout,
        )
    except FetchError as exc:
        print(f"sam-inference fetch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def _cmd_export_decoder(args: argparse.Namespace) -> int:
    if args.variant in VARIANTS["sam2"]:  # no SAM 2 decoder to export
        print(f"skipped: no decoder export for SAM 2 ({args.variant}); /v1/decoder.onnx answers 404")
        return 0
    from .torch_models.export import export_decoder

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    try:
        result = export_decoder(
            Path(args.checkpoint),
            args.variant,
            Path(args.output),
            upstream_output=Path(args.upstream_output) if args.upstream_output else None,
            quantize=args.quantize,
            opset=args.opset,
            force=args.force,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"sam-inference export-decoder: error: {exc}", file=sys.stderr)
        return 1
    print(("skipped (up to date): " if result["skipped"] else "wrote ") + args.output)
    return 0


def _cmd_prepare_encoder(args: argparse.Namespace) -> int:
    if args.variant not in VARIANTS["sam"]:  # SAM 2's encoder has no OpenVINO engine
        print(f"skipped: no OpenVINO encoder for SAM 2 ({args.variant}); the encoder runs torch")
        return 0
    from .torch_models.preparation import memory_limit_bytes, prepare_encoder

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    try:
        result = prepare_encoder(Path(args.checkpoint), args.variant, memory_limit_bytes())
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"sam-inference prepare-encoder: error: {exc}", file=sys.stderr)
        return 1
    print(result.message)
    return 0


def _cmd_make_tiny(args: argparse.Namespace) -> int:
    from .torch_models.tiny import write_tiny_checkpoint

    print(write_tiny_checkpoint(Path(args.output), seed=args.seed, family=args.family, variant=args.variant))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand."""
    parser = argparse.ArgumentParser(prog="sam-inference", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP encoder service (configured by SAM_INFERENCE_* env)")
    serve.set_defaults(func=_cmd_serve)

    fetch = sub.add_parser("fetch", help="download or copy a checkpoint, verified by sha256")
    fetch.add_argument("--source", required=True, help="http(s) URL, file:// URL or local path")
    fetch.add_argument("--sha256", required=True, help="expected sha256 (64 hex digits)")
    fetch.add_argument("--output", required=True, help="destination file")
    fetch.add_argument("--retries", type=int, default=5, help="extra attempts after a failed download")
    fetch.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds (doubles)")
    fetch.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds")
    fetch.set_defaults(func=_cmd_fetch)

    export = sub.add_parser("export-decoder", help="export the CVAT-format ONNX decoder of a checkpoint")
    export.add_argument("--checkpoint", required=True)
    export.add_argument("--variant", required=True, choices=[*VARIANTS["sam"], *VARIANTS["sam2"]])
    export.add_argument("--output", required=True, help="CVAT-format decoder (.onnx)")
    export.add_argument("--upstream-output", help="also write the plain upstream SamOnnxModel format here")
    export.add_argument("--quantize", action="store_true", help="dynamically quantise the weights (uint8)")
    export.add_argument("--opset", type=int, default=17)
    export.add_argument("--force", action="store_true", help="export even when the outputs are up to date")
    export.set_defaults(func=_cmd_export_decoder)

    prepare = sub.add_parser(
        "prepare-encoder",
        help="prepare (and keep beside the checkpoint) the OpenVINO IR that engine auto then runs on this CPU",
    )
    prepare.add_argument("--checkpoint", required=True)
    prepare.add_argument("--variant", required=True, choices=[*VARIANTS["sam"], *VARIANTS["sam2"]])
    prepare.set_defaults(func=_cmd_prepare_encoder)

    tiny = sub.add_parser(
        "make-tiny", help="write the tiny random checkpoint (vit_tiny, or hiera_micro for sam2); prints its sha256"
    )
    tiny.add_argument("--output", required=True)
    tiny.add_argument("--family", choices=sorted(VARIANTS), default="sam")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument(
        "--variant",
        choices=[*VARIANTS["sam"], *VARIANTS["sam2"]],
        help="a random model of this variant instead (vit_b, vit_h, hiera_l, ...): real size, random weights",
    )
    tiny.set_defaults(func=_cmd_make_tiny)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sam-inference` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
