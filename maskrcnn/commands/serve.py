"""`maskrcnn serve`: the HTTP API and web page (FastAPI + uvicorn; pip install 'maskrcnn[serve]')."""

from __future__ import annotations

from ..cli import add_set_option, add_tta_option, tta_overrides
from ..config import parse_overrides
from ..errors import UserError
from .predict import BACKENDS, _check_backend_args, _providers


def add_parser(subparsers, name: str) -> None:
    """Add `maskrcnn serve` to the argparse `subparsers` as `name`: its options and `run`."""
    parser = subparsers.add_parser(name, help="serve a model over HTTP: JSON API + web page")
    parser.add_argument("--model", help="model preset (torch backend; an .onnx file carries its own)")
    parser.add_argument("--weights", help="weights file, or the .onnx file for --backend onnxruntime")
    parser.add_argument("--backend", default="torch", choices=BACKENDS, help="torch (default) or onnxruntime (serves an exported .onnx)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="torch backend: fp32 (default) or bf16 features (faster)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port")
    parser.add_argument("--max-batch", type=int, default=4, help="images per model call at most")
    parser.add_argument("--batch-timeout-ms", type=float, default=10.0,
                        help="how long the first image of a batch waits for more")
    parser.add_argument("--max-queue", type=int, default=32,
                        help="images waiting at most; more get 503 with Retry-After")
    parser.add_argument("--max-body-mb", type=float, default=20.0, help="larger request bodies get 413")
    parser.add_argument("--score-thresh", type=float, default=0.5, help="for requests that name none")
    parser.add_argument("--min-score-thresh", type=float, default=0.3,
                        help="the model drops detections below this; requests cannot go lower")
    parser.add_argument("--tile", type=int, help="default tile size for requests (off: whole images)")
    parser.add_argument("--tile-overlap", type=int, default=64, help="overlap of the tiles of --tile, in px")
    parser.add_argument("--shutdown-grace", type=float, default=10.0, metavar="SECONDS",
                        help="after SIGTERM / Ctrl-C, requests in flight get this long to finish; "
                             "then they are answered 503 and the server exits (default 10)")
    add_set_option(parser, "config overrides passed to load_model")
    add_tta_option(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    """`maskrcnn serve`: load the model (torch or an exported .onnx), build the FastAPI app with
    dynamic batching (`--max-batch` images per call, the first waiting `--batch-timeout-ms` ms)
    and serve it with uvicorn on `--host`:`--port` until SIGTERM / Ctrl-C, after which requests in
    flight get `--shutdown-grace` seconds. Returns 0 when the server has stopped.

    Raises:
        UserError: FastAPI or uvicorn not installed, `--max-batch` or `--max-queue` below 1, a
            negative `--shutdown-grace`, bad backend options.
    """
    try:
        from ..serve.app import ServeOptions, create_app
        from ..serve.shutdown import serve
    except ImportError as exc:
        raise UserError(f"serving needs FastAPI and uvicorn ({exc.name} is missing): "
                        "pip install 'maskrcnn[serve]'") from None
    _check_backend_args(args)
    options = ServeOptions(max_batch=args.max_batch, batch_timeout_ms=args.batch_timeout_ms,
                           max_queue=args.max_queue, max_body_mb=args.max_body_mb,
                           score_thresh=args.score_thresh, tile=args.tile, tile_overlap=args.tile_overlap,
                           shutdown_grace=args.shutdown_grace)
    if args.max_batch < 1 or args.max_queue < 1:
        raise UserError("--max-batch and --max-queue must be at least 1")
    if not args.shutdown_grace >= 0:
        raise UserError(f"--shutdown-grace {args.shutdown_grace}: must be >= 0 seconds")
    app = create_app(load_served_model(args), options)
    # SIGTERM / Ctrl-C: no new connections; requests in flight finish within --shutdown-grace or
    # get 503, then the server exits (maskrcnn/serve/shutdown.py)
    serve(app, args.host, args.port, args.shutdown_grace)
    return 0


def load_served_model(args):
    """The chosen backend as a `ServedModel` (batches of CPU tensors -> CPU Instances)."""
    from ..serve.app import ServedModel

    tta_overrides(args)  # refused with onnxruntime before any work
    if args.backend == "onnxruntime":
        from ..deploy.onnx_runner import OnnxPredictor

        predictor = OnnxPredictor(args.weights, providers=_providers(args.device),
                                  score_thresh=args.min_score_thresh)
        return ServedModel(predictor.name, predictor.class_names, predictor.predict, "onnxruntime", "fp32",
                           max(args.min_score_thresh, predictor.info["box"]["score_thresh"]))
    from .. import load_model

    overrides = {"box_score_thresh": args.min_score_thresh, **tta_overrides(args), **parse_overrides(args.set)}
    model = load_model(args.model, weights=args.weights, device=args.device, precision=args.precision,
                       **overrides)

    def predict(images):
        return [instances.to("cpu") for instances in model.predict([i.to(args.device) for i in images])]

    names = model.cfg.model.class_names or ("__background__", *(
        f"class_{i}" for i in range(1, model.cfg.model.num_classes)))
    return ServedModel(model.cfg.name, tuple(names), predict, "torch", args.precision,
                       model.cfg.model.box.score_thresh)
