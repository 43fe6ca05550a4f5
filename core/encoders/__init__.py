"""Pretrained encoders and what they compute: image backbones (with their preprocessing and
metadata), the sentence encoder, the ONNX Runtime engines that run them, and the on-disk cache of
their outputs (`embedding_store`)."""
