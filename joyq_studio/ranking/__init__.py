"""Ranking a project: calibrated buckets (``calibration``) and the ranked rows every
export and the rank view share (``rows``)."""

from .calibration import (
    DEFAULT_K,
    QUALITY_PHRASES,
    Calibration,
    CalibrationError,
    calibrate,
    default_labels,
    fit_bias,
    fit_tau,
)
from .rows import (
    RankedImage,
    bucket_counts,
    calibrate_project,
    current_model_key,
    ensure_calibration,
    held_out_pairs,
    load_calibration,
    model_version_of,
    not_scored_message,
    ranked_images,
    save_calibration,
)

__all__ = [
    "DEFAULT_K", "QUALITY_PHRASES", "Calibration", "CalibrationError", "RankedImage", "bucket_counts",
    "calibrate", "calibrate_project", "current_model_key", "default_labels", "ensure_calibration",
    "fit_bias", "fit_tau", "held_out_pairs", "load_calibration", "model_version_of",
    "not_scored_message", "ranked_images", "save_calibration",
]
