"""The small vocabularies every layer shares, as StrEnums: each member is its own stored string,
so database rows, checkpoints and JSON outputs read the same as before."""

from __future__ import annotations

from enum import StrEnum


class ModelKind(StrEnum):
    IMAGE = "image"
    TEXT = "text"
    COMBINED = "combined"


class RunStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"  # Ctrl-C: the checkpoint holds the best epoch so far
    FAILED = "failed"
    DIED = "died"  # its process vanished without recording an end


class LabelSource(StrEnum):
    """Where a label change (or a review-queue entry) came from."""

    IMPORT = "import"
    REVIEW = "review"  # decided in the review queue
    MANUAL = "manual"  # corrected by hand from a product
    CROSS_VALIDATION = "cross-validation"  # queued by out-of-fold scoring
    UPLOAD = "upload"  # a listing added from Classify
    API = "api"  # changed or added through the HTTP API


FIX_SOURCES: tuple[str, ...] = (LabelSource.REVIEW.value, LabelSource.MANUAL.value, LabelSource.API.value)  # the label changes people made
