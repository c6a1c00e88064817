"""What every benchmark shares: the machine's name (results always name it) and median rates."""

from __future__ import annotations

import os
import platform
import statistics
import time

import torch

from ..model import describe_device


def machine_name(device: torch.device | None = None) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{platform.node()}: {os.cpu_count()} cores, {cpu}"
    if device is not None and device.type == "cuda":
        text += f", GPU {describe_device(device)}"
    return text


def median_rate(fn, count: int, repeats: int) -> float:
    """Median items/s over ``repeats`` timed runs of fn() that each process ``count`` items."""
    rates = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        rates.append(count / (time.perf_counter() - t0))
    return statistics.median(rates)
