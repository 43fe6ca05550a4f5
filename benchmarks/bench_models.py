"""Model benchmark: embedding throughput next to the bare forward pass, classify latency, peak memory.

    python -m benchmarks.bench_models [--data DIR] [--photos N] [--texts N]

The bare forward pass runs the same model on random tensors already in memory; the embedding
pipeline adds decoding, cleaning and batching: the ratio shows what the glue costs.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import pandas as pd
import torch

from benchmarks.common import print_table, time_calls
from core.backbones import get_backbone
from core.classify import CategoryClassifier
from core.cleaning import model_text
from core.features import image_features, load_backbone, load_text_encoder, text_states
from core.images import open_image
from core.settings import get_settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=get_settings().marketplace_data)
    parser.add_argument("--photos", type=int, default=640)
    parser.add_argument("--texts", type=int, default=640)
    args = parser.parse_args()
    torch.set_num_threads(2)
    products = pd.read_csv(args.data / "Products.csv", lineterminator="\n").head(args.texts)
    image_ids = pd.read_csv(args.data / "Images.csv", lineterminator="\n")["id"].head(args.photos)
    paths = [args.data / "images" / f"{image_id}.jpg" for image_id in image_ids]
    texts = [model_text(name, description) for name, description in zip(products["product_name"], products["product_description"])]

    backbone = get_backbone("efficientnet-lite0")
    model = load_backbone(backbone.id)
    image_features(backbone, paths[:32])  # warm-up
    started = time.perf_counter()
    image_features(backbone, paths)
    pipeline_images = len(paths) / (time.perf_counter() - started)
    batch = torch.randn(32, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(batch)
        started = time.perf_counter()
        for _ in range(len(paths) // 32):
            model(batch)
    bare_images = (len(paths) // 32) * 32 / (time.perf_counter() - started)

    encoder = load_text_encoder(128)
    text_states(texts[:32], layer=6)
    started = time.perf_counter()
    text_states(texts, layer=6)
    pipeline_texts = len(texts) / (time.perf_counter() - started)
    tokens = encoder.tokenize(texts[:32])
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        started = time.perf_counter()
        for _ in range(len(texts) // 32):
            encoder.model(**tokens)
    bare_texts = (len(texts) // 32) * 32 / (time.perf_counter() - started)

    classifier = CategoryClassifier(get_settings().models_dir)
    photo = open_image(paths[0])
    one_item = time_calls(lambda: classifier.classify(images=[photo], text=texts[0]), repeat=50)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print_table(
        [
            ("photo embeddings (decode + clean + lite0)", f"{pipeline_images:.0f} images/s"),
            ("lite0 bare forward, random tensors, batch 32", f"{bare_images:.0f} images/s (pipeline/bare = {pipeline_images / bare_images:.2f})"),
            ("text embeddings (tokenise + MiniLM)", f"{pipeline_texts:.0f} texts/s"),
            ("MiniLM bare forward, batch 32 (longest text in batch)", f"{bare_texts:.0f} texts/s (pipeline/bare = {pipeline_texts / bare_texts:.2f})"),
            ("classify one item, photo + text, models warm", f"median {one_item['p50_ms']:.0f} ms, p95 {one_item['p95_ms']:.0f} ms"),
            ("peak memory of this process, all models loaded", f"{peak_mb:.0f} MB"),
        ]
    )


if __name__ == "__main__":
    main()
