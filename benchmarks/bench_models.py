"""Model benchmark: embedding throughput next to the bare forward pass, classify latency, peak memory,
in the precision and on the image engine the code chose for this CPU (printed first).

    python -m benchmarks.bench_models [--data DIR] [--photos N] [--texts N]

The bare forward pass runs the same model on inputs already in memory (random pixels; texts tokenised
beforehand) on the fastest engine this CPU has; the embedding pipeline adds decoding, cleaning,
tokenising and batching: the ratio shows what the glue costs. Each pipeline and its bare pass run in
turn, `--runs` times (medians).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from benchmarks.common import alternating, machine_line, print_table, time_calls
from core.data.catalogue_folder import read_catalogue_folder
from core.data.cleaning import model_text
from core.data.images import open_image
from core.encoders.backbones import get_backbone
from core.encoders.features import image_features, load_text_encoder, text_states
from core.encoders.image_engine import feature_extractor
from core.encoders.text_engine import graph_inputs, sentence_embeddings, sentence_encoder, sentence_graph_path
from core.evaluation.catalogue import evaluate_catalogue
from core.inference.category_classifier import CategoryClassifier
from core.runtime.compute import autocast, configure_threads
from core.runtime.onnx_runtime import open_session
from core.settings import get_settings


def time_evaluate(classifier: CategoryClassifier, data: Path, *, products: int) -> tuple[float, int, int]:
    """`evaluate` on the last `products` listings of the data set, copied to a temporary folder."""
    all_products = pd.read_csv(data / "Products.csv", lineterminator="\n")
    all_images = pd.read_csv(data / "Images.csv", lineterminator="\n")
    subset = all_products.tail(products)
    photos = all_images[all_images["product_id"].isin(subset["id"])]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "images").mkdir()
        subset.to_csv(root / "Products.csv", index=False, lineterminator="\n")
        photos.to_csv(root / "Images.csv", index=False, lineterminator="\n")
        for image_id in photos["id"]:
            shutil.copyfile(data / "images" / f"{image_id}.jpg", root / "images" / f"{image_id}.jpg")
        started = time.perf_counter()
        catalogue, _ = read_catalogue_folder(root)
        evaluate_catalogue(classifier, catalogue)
        return time.perf_counter() - started, len(subset), len(photos)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=get_settings().marketplace_data)
    parser.add_argument("--photos", type=int, default=640)
    parser.add_argument("--texts", type=int, default=640)
    parser.add_argument("--evaluate-products", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="throughputs are medians over this many runs")
    args = parser.parse_args()
    configure_threads()
    products = pd.read_csv(args.data / "Products.csv", lineterminator="\n").head(args.texts)
    image_ids = pd.read_csv(args.data / "Images.csv", lineterminator="\n")["id"].head(args.photos)
    paths = [args.data / "images" / f"{image_id}.jpg" for image_id in image_ids]
    texts = [model_text(name, description) for name, description in zip(products["product_name"], products["product_description"])]

    backbone = get_backbone("efficientnet-lite0")
    _, model = feature_extractor(backbone.id)  # the fastest engine on this CPU: the reference the pipeline must keep up with
    batch = torch.randn(32, 3, 224, 224).numpy()

    def bare_image_pass() -> None:
        for _ in range(len(paths) // 32):
            model(batch)

    pipeline_seconds, bare_seconds = alternating(lambda: image_features(backbone, paths), bare_image_pass, runs=args.runs)
    pipeline_images, bare_images = len(paths) / pipeline_seconds, (len(paths) // 32) * 32 / bare_seconds

    # Sentence embeddings (search): the engine in use, against the fastest bare MiniLM forward on this
    # CPU (ONNX Runtime or torch eager), both on the same length-sorted batches, prepared beforehand.
    sentence_embeddings(texts[:32])  # warm-up (and the export, on a new machine)
    encoder = load_text_encoder(128)
    ordered = sorted(texts, key=len)
    batches = [encoder.tokenize(ordered[start : start + 32]) for start in range(0, len(ordered), 32)]
    onnx_inputs = [graph_inputs(ordered[start : start + 32], 128) for start in range(0, len(ordered), 32)]
    onnx_session = open_session(sentence_graph_path())

    def bare_torch_text_pass() -> None:
        with torch.inference_mode(), autocast():
            for tokens in batches:
                encoder.model(**tokens)

    def bare_onnx_text_pass() -> None:
        for inputs in onnx_inputs:
            onnx_session.run(None, inputs)

    pipeline_seconds, torch_seconds, onnx_seconds = alternating(
        lambda: sentence_embeddings(texts), bare_torch_text_pass, bare_onnx_text_pass, runs=args.runs
    )
    pipeline_texts = len(texts) / pipeline_seconds
    bare_text_engine, bare_texts = max(
        [("torch eager", len(texts) / torch_seconds), ("ONNX Runtime", len(texts) / onnx_seconds)], key=lambda row: row[1]
    )
    engines_note = f"torch eager {len(texts) / torch_seconds:.0f}, ONNX Runtime {len(texts) / onnx_seconds:.0f}"
    states_seconds = time_calls(lambda: text_states(texts, layer=6), repeat=args.runs, warmup=0)["p50_ms"] / 1000

    classifier = CategoryClassifier(get_settings().models_dir)
    evaluate_seconds, evaluated_products, evaluated_photos = time_evaluate(classifier, args.data, products=args.evaluate_products)
    photo = open_image(paths[0])
    one_item = time_calls(lambda: classifier.classify(images=[photo], text=texts[0]), repeat=50)
    # Reference: the two encoders' bare forward passes for that one item (preprocessed photo, pre-tokenised text).
    pixels = backbone.preprocess([photo])
    tokens = encoder.tokenize([texts[0]])

    item_inputs = graph_inputs([texts[0]], 128)

    def bare_item() -> None:
        model(pixels.numpy())
        if bare_text_engine == "ONNX Runtime":
            onnx_session.run(None, item_inputs)
        else:
            with torch.inference_mode(), autocast():
                encoder.model(**tokens)

    one_item_bare = time_calls(bare_item, repeat=50)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(machine_line())
    print_table(
        [
            (f"photo embeddings (decode + clean + lite0), median of {args.runs}", f"{pipeline_images:.0f} images/s"),
            (
                "lite0 bare forward, random tensors, batch 32",
                f"{bare_images:.0f} images/s (pipeline/bare = {pipeline_images / bare_images:.2f})",
            ),
            (f"sentence embeddings (tokenise + MiniLM on {sentence_encoder()[0]} + pool)", f"{pipeline_texts:.0f} texts/s"),
            (
                f"MiniLM bare forward, same batches prepared, fastest engine ({bare_text_engine}; {engines_note})",
                f"{bare_texts:.0f} texts/s (pipeline/bare = {pipeline_texts / bare_texts:.2f})",
            ),
            ("token states for evaluation and training (tokenise + MiniLM on torch)", f"{len(texts) / states_seconds:.0f} texts/s"),
            ("classify one item, photo + text, models warm", f"median {one_item['p50_ms']:.0f} ms, p95 {one_item['p95_ms']:.0f} ms"),
            (
                "reference: both encoders' bare forward for that item",
                f"median {one_item_bare['p50_ms']:.0f} ms, p95 {one_item_bare['p95_ms']:.0f} ms",
            ),
            (f"evaluate on {evaluated_products:,} products / {evaluated_photos:,} photos", f"{evaluate_seconds:.0f} s"),
            ("peak memory of this process, all models loaded", f"{peak_mb:.0f} MB"),
        ]
    )


if __name__ == "__main__":
    main()
