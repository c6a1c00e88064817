"""Ranking a project: calibrated buckets (``calibration``) and the ranked rows every
export and the rank view share (``rows``)."""

from .calibration import (
    DEFAULT_K,
    METHOD_NAMES,
    METHODS,
    QUALITY_PHRASES,
    TAU_PRIOR_SD,
    Calibration,
    CalibrationError,
    calibrate,
    default_labels,
    fit_bias,
    fit_tau,
    fit_tau_map,
)
from .rows import (
    MIN_LABELS_B,
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
    set_bucket_override,
)

__all__ = [
    "DEFAULT_K", "QUALITY_PHRASES", "Calibration", "CalibrationError", "RankedImage", "bucket_counts",
    "calibrate", "calibrate_project", "current_model_key", "default_labels", "ensure_calibration",
    "fit_bias", "fit_tau", "held_out_pairs", "load_calibration", "model_version_of",
    "not_scored_message", "ranked_images", "save_calibration", "METHODS", "METHOD_NAMES", "TAU_PRIOR_SD",
    "fit_tau_map", "MIN_LABELS_B", "set_bucket_override",
]
