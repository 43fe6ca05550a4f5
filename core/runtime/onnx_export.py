"""`python -m core.runtime.onnx_export GRAPH ...`: one ONNX export, in its own process (see core.runtime.onnx_runtime).

backbone BACKBONE_ID OUT | sentence-encoder OUT | text-model MODEL_FILE OUT
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(arguments: list[str]) -> None:
    graph, *rest = arguments
    if graph == "backbone":
        from core.encoders.image_engine import export_onnx

        export_onnx(rest[0], Path(rest[1]))
    elif graph == "sentence-encoder":
        from core.encoders.text_engine import export_sentence_encoder

        export_sentence_encoder(Path(rest[0]))
    elif graph == "text-model":
        from core.encoders.text_engine import export_text_model

        export_text_model(Path(rest[0]), Path(rest[1]))
    else:
        raise SystemExit(f"unknown graph {graph!r}: backbone, sentence-encoder or text-model")


if __name__ == "__main__":
    main(sys.argv[1:])
