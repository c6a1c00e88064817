"""The Ray Data scoring job: list -> read + hash -> decode (CPU tasks) -> model (actors) -> shards.

::

    listing parts (driver)   from_items               one block (and one CPU task) per part
      -> prepare_part        CPU tasks, num_cpus=1:   stat, skip what is done by (path, size,
                                                      mtime), read + content hash, skip scored
                                                      hashes, decode with joyq_studio.images
                                                      (uint8 [3, S, S], the native path's pixels)
      -> Scorer              actors, one per GPU:     normalise on the device, bf16 on CUDA
                                                      (prepare_for_inference), embed + score
      -> driver              iter_batches:            atomic Parquet shards (+ project merge),
                                                      progress, per-file errors

Fault tolerance is Ray's: Ray Data restarts a dead actor (``max_restarts=-1``) and resends
its unfinished batch (``max_task_retries=-1``); a dead CPU task is retried. Rows reach the
driver once, and the driver only counts a row as done once its shard is on disk, so a job
killed at any point and rerun scores every file exactly once. ``JOYQ_RAY_KILL_ACTOR=N:MARKER``
makes the first actor to reach its N-th batch exit hard (once: it creates MARKER first), to
test exactly that.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import ClusterError, import_ray
from .results import (
    Done,
    ShardWriter,
    done_from_project,
    done_from_shards,
    job_lock,
    merge_into_project,
    merge_missing,
    path_key,
    shard_schema,
)
from .sources import write_listing

ray = import_ray()

Progress = Callable[[int, int, float], None]  # (done, total, rows per second)
KILL_ENV = "JOYQ_RAY_KILL_ACTOR"
SHARD_ROWS = 8192  # rows per shard, at most
SHARD_SECONDS = 60.0  # and at least one shard a minute, so a killed job loses little
DECODE_BATCH = 16  # rows per CPU decode batch: small blocks keep memory flat at 12 MP


@dataclass
class RaySummary:
    scored: int = 0
    already_done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    listed: int = 0
    seconds: float = 0.0
    rows_per_second: float = 0.0
    out_dir: Path | None = None
    shards: int = 0
    actors: int = 0
    device: str = "cpu"
    startup_seconds: float = 0.0  # from the job's start to its first finished rows (actors loading the model)
    steady_rows_per_second: float = 0.0  # after the first finished rows: the rate a long job keeps


# -- CPU stage ------------------------------------------------------------------------------
_CACHE: dict = {}


def _resolve(ref):
    """Broadcast objects are fetched once per worker process."""
    if isinstance(ref, ray.ObjectRef):
        key = ref.hex()
        if key not in _CACHE:
            _CACHE.clear()
            _CACHE[key] = ray.get(ref)
        return _CACHE[key]
    return ref


def prepare_part(batch: dict, size: int, done_ref):
    """One listing part (a Parquet file of paths) -> rows of :data:`DECODE_BATCH`, yielded as
    they are decoded, so a part of 12 MP photos never sits in memory whole."""
    import pyarrow.parquet as pq

    for part in batch["part"]:
        paths = pq.read_table(str(part), columns=["path"]).column("path").to_pylist()
        for i in range(0, len(paths), DECODE_BATCH):
            yield prepare_rows({"path": paths[i : i + DECODE_BATCH]}, size, done_ref)


def prepare_rows(batch: dict, size: int, done_ref) -> dict:
    """Paths -> one row each: status ok (with uint8 pixels), skipped (already done) or error."""
    from ..fsio import describe_error
    from ..images import ImageError, content_hash, load_rgb, resize_for_model

    done: Done = _resolve(done_ref)
    out: dict[str, list] = {
        k: [] for k in ("path", "status", "hash", "error", "size", "mtime_ns", "width", "height", "pixels")
    }
    for path in batch["path"]:
        path = str(path)
        status, digest, error, st_size, mtime, w, h, px = "ok", "", "", -1, -1, -1, -1, b""
        try:
            st = os.stat(path)
            st_size, mtime = st.st_size, st.st_mtime_ns
            if done.has_key(path_key(path, st_size, mtime)):
                status = "skipped"
            else:
                digest = content_hash(path)
                if done.has_hash(digest):
                    status = "skipped"
        except FileNotFoundError:
            status, error = "error", f"{path}: the file no longer exists."
        except OSError as e:
            status, error = "error", f"{path}: cannot be read ({describe_error(e)})."
        if status == "ok":
            try:
                img = load_rgb(path)
                w, h = img.size
                # pixels.pil_to_uint8's bytes (uint8 CHW) without torch: decode workers stay light
                px = np.ascontiguousarray(
                    np.asarray(resize_for_model(img, size), dtype=np.uint8).transpose(2, 0, 1)
                ).tobytes()
            except ImageError as e:
                status, error = "error", str(e)
            except Exception as e:  # noqa: BLE001 - never let one file kill a run of millions
                status, error = "error", f"{path}: {e}"
        for k, v in zip(out, (path, status, digest, error, st_size, mtime, w, h, px)):
            out[k].append(v)
    return {
        "path": np.array(out["path"], dtype=object),
        "status": np.array(out["status"], dtype=object),
        "hash": np.array(out["hash"], dtype=object),
        "error": np.array(out["error"], dtype=object),
        "size": np.array(out["size"], dtype=np.int64),
        "mtime_ns": np.array(out["mtime_ns"], dtype=np.int64),
        "width": np.array(out["width"], dtype=np.int32),
        "height": np.array(out["height"], dtype=np.int32),
        "pixels": np.array(out["pixels"] + [b""], dtype=object)[:-1],  # keep bytes as objects
    }


# -- model actors ----------------------------------------------------------------------------
class Scorer:
    """One model on one device. Runs the native path's inference code on each batch."""

    def __init__(self, spec: str, key: str, use_gpu: bool, threads: int, embeddings: bool, kill: str = ""):
        import torch

        from ..model import load_model, model_id
        from ..scoring import prepare_for_inference

        if not use_gpu:  # Ray gives an actor one thread; a CPU actor shares its node's cores with the decoders
            torch.set_num_threads(threads or os.cpu_count() or 1)
        model = load_model(spec)
        found = model_id(model).key
        if found != key:
            raise ClusterError(
                f"model {spec!r} on node {ray.util.get_node_ip_address()} is not the model the "
                f"driver loaded (key {found}, expected {key}); give every node the same weights."
            )
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.model, self.forward, self.dtype = prepare_for_inference(model, self.device)
        self.size, self.embeddings = model.image_size, embeddings
        self.calls, self.kill = 0, kill

    def _maybe_die(self) -> None:
        if not self.kill:
            return
        after, _, marker = self.kill.partition(":")
        if self.calls >= int(after):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return  # an earlier actor already died for the test
            os._exit(1)

    def __call__(self, batch: dict) -> dict:
        import torch

        from ..pixels import normalize

        self.calls += 1
        self._maybe_die()
        ok = batch["status"] == "ok"
        n = len(batch["status"])
        scores = np.full(n, np.nan, dtype=np.float32)
        embs = np.array([b""] * n + [None], dtype=object)[:-1]
        if ok.any():
            rows = batch["pixels"][ok]
            pixels = np.empty((len(rows), 3, self.size, self.size), dtype=np.uint8)  # one copy, writable
            for i, raw in enumerate(rows):
                pixels[i] = np.frombuffer(raw, dtype=np.uint8).reshape(3, self.size, self.size)
            with torch.inference_mode():
                x = normalize(torch.from_numpy(pixels).to(self.device, non_blocking=True), self.dtype)
                emb = self.forward(x)
                scores[ok] = self.model.score_embeddings(emb).float().cpu().numpy()
                if self.embeddings:
                    e16 = emb.float().cpu().numpy().astype("<f2")
                    embs[np.flatnonzero(ok)] = [row.tobytes() for row in e16]
        out = {k: v for k, v in batch.items() if k != "pixels"}
        out["score"], out["embedding"] = scores, embs
        return out


# -- the driver ------------------------------------------------------------------------------
def connect(address: str | None = None) -> None:
    """Join the cluster at ``address`` ('auto' = the one started on this machine with
    `ray start`), or start a local one; reuse a connection already made (tests)."""
    if not ray.is_initialized():
        try:
            ray.init(address=address, logging_level="WARNING", log_to_driver=True, include_dashboard=False)
        except ConnectionError as e:
            raise ClusterError(
                f"cannot reach the Ray cluster at {address}: {e}; start it with `ray start --head` (see docs/scale.md)."
            ) from None
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # our own progress line
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False


def plan_actors(gpus: int | None, device: str | None) -> tuple[int, bool]:
    """(number of model actors, on GPUs?) from --gpus and --device and what the cluster has."""
    have = int(ray.cluster_resources().get("GPU", 0))
    if device == "cpu" or gpus == 0 or (gpus is None and have == 0):
        if device and device.startswith("cuda"):
            raise ClusterError("--device cuda was asked for but the Ray cluster has no GPU.")
        return 1, False
    want = have if gpus is None else gpus
    if want > have:
        raise ClusterError(f"--gpus {want} asked for more GPUs than the Ray cluster has ({have}).")
    return want, True


def score_with_ray(
    sources: list[Path],
    model,
    spec: str,
    out_dir: Path,
    project=None,
    gpus: int | None = None,
    device: str | None = None,
    batch_size: int = 32,
    embeddings: bool = True,
    follow_links: bool = False,
    progress: Progress | None = None,
    cpu_threads: int | None = None,
    shard_rows: int = SHARD_ROWS,
) -> RaySummary:
    """Score every image of ``sources`` with ``model`` (loaded from ``spec`` on every actor)
    not scored yet; rows go to Parquet shards in ``out_dir`` and, with ``project``, into the
    project's database. Call :func:`connect` first. One job per ``out_dir`` at a time
    (:func:`~joyq_studio.cluster.results.job_lock`)."""
    with job_lock(out_dir):
        from ..model import model_id

        t0 = time.perf_counter()
        mid = model_id(model)
        summary = RaySummary(out_dir=out_dir)
        shards_dir = out_dir / "shards"
        listing = write_listing(sources, out_dir / "listing", follow_links)
        summary.listed = listing.total
        summary.failed = list(listing.unreadable)

        keys, hashes = done_from_shards(shards_dir)
        if project is not None:
            merge_missing(project, shards_dir, mid.tower, mid.key)  # a killed run's last shards
            pk, ph = done_from_project(project, mid.key)
            keys += pk
            hashes += ph
        done = Done.build(keys, hashes)
        del keys, hashes
        if listing.total == 0:
            summary.seconds = time.perf_counter() - t0
            return summary

        actors, use_gpu = plan_actors(gpus, device)
        summary.actors, summary.device = actors, ("cuda" if use_gpu else "cpu")
        parts = [str(p) for p in sorted(listing.folder.glob("part-*.parquet"))]
        ds = ray.data.from_items([{"part": p} for p in parts], override_num_blocks=len(parts))  # a task per part
        ds = ds.map_batches(
            prepare_part,
            fn_kwargs={"size": model.image_size, "done_ref": ray.put(done)},
            batch_size=1,
            batch_format="numpy",
            num_cpus=1,
        )
        ds = ds.map_batches(
            Scorer,
            fn_constructor_kwargs={
                "spec": spec,
                "key": mid.key,
                "use_gpu": use_gpu,
                "threads": cpu_threads or 0,
                "embeddings": embeddings,
                "kill": os.environ.get(KILL_ENV, ""),
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=1 if use_gpu else 0,
            num_cpus=1 if use_gpu else 0.5,
        )

        writer = ShardWriter(shards_dir, mid.key)
        pending: list = []
        pending_rows, last_flush = 0, time.monotonic()
        processed, t_start = 0, time.perf_counter()
        t_first, first_rows = t_start, 0

        def flush() -> None:
            nonlocal pending_rows, last_flush
            if pending:
                import pyarrow as pa

                table = pa.concat_tables(pending)
                writer.write(table)
                summary.shards += 1
                if project is not None:
                    merge_into_project(project, table, mid.tower, mid.key)
                pending.clear()
            pending_rows, last_flush = 0, time.monotonic()

        try:
            for block in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2):
                table, failed, scored, skipped = _finished_rows(block)
                summary.already_done += skipped
                summary.failed += failed
                summary.scored += scored
                if table.num_rows:
                    pending.append(table)
                    pending_rows += table.num_rows
                if not processed:
                    t_first, first_rows = time.perf_counter(), block.num_rows
                    summary.startup_seconds = t_first - t_start
                processed += block.num_rows
                if pending_rows >= shard_rows or time.monotonic() - last_flush >= SHARD_SECONDS:
                    flush()
                if progress:
                    progress(processed, listing.total, processed / max(time.perf_counter() - t_start, 1e-9))
        finally:
            flush()  # whatever finished is kept, also on Ctrl-C or an error
            summary.seconds = time.perf_counter() - t0
            summary.rows_per_second = processed / max(time.perf_counter() - t_start, 1e-9)
            if processed > first_rows:
                summary.steady_rows_per_second = (processed - first_rows) / max(time.perf_counter() - t_first, 1e-9)
        if project is not None:
            project.set_current_model_key(mid.key)
        return summary


def _finished_rows(block):
    """A block from the actors -> (shard rows, [(path, error)], scored, skipped)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    status = block.column("status")
    kept = block.filter(pc.not_equal(status, "skipped"))
    skipped = block.num_rows - kept.num_rows
    ok = pc.equal(kept.column("status"), "ok")

    def nullify(col, empty):
        return pc.if_else(pc.equal(col, empty), pa.scalar(None, col.type), col)

    score = pc.if_else(ok, kept.column("score"), pa.scalar(None, pa.float32()))
    fine = np.isfinite(score.to_numpy(zero_copy_only=False).astype(np.float64)) | ~ok.to_numpy(zero_copy_only=False)
    if not fine.all():
        from ..model import ModelError

        raise ModelError(
            "the model gives scores that are not numbers (NaN or infinite), so its weights are "
            "damaged; choose another model or version."
        )
    table = pa.table(
        {
            "path": kept.column("path").cast(pa.string()),
            "hash": nullify(kept.column("hash").cast(pa.string()), ""),
            "score": score,
            "embedding": nullify(kept.column("embedding").cast(pa.binary()), b""),
            "error": nullify(kept.column("error").cast(pa.string()), ""),
            "size": nullify(kept.column("size").cast(pa.int64()), -1),
            "mtime_ns": nullify(kept.column("mtime_ns").cast(pa.int64()), -1),
            "width": nullify(kept.column("width").cast(pa.int32()), -1),
            "height": nullify(kept.column("height").cast(pa.int32()), -1),
        },
        schema=shard_schema(),
    )
    errors = table.filter(pc.is_valid(table.column("error")))
    failed = list(zip(errors.column("path").to_pylist(), errors.column("error").to_pylist()))
    return table, failed, table.num_rows - len(failed), skipped
