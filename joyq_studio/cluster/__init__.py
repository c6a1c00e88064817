"""Scoring at scale on a Ray cluster (the optional ``ray`` extra).

The same decoder (:mod:`joyq_studio.images`, uint8 pixels identical to the native path)
and the same model code (:func:`joyq_studio.scoring.prepare_for_inference`) run inside
Ray Data: CPU tasks read, hash and decode; one model actor per GPU embeds and scores;
the driver writes Parquet shards and merges them into the folder's project.

Layout, one concern per file:

* :mod:`.sources` -- SOURCE arguments (folders, .txt or .parquet lists of paths) streamed
  into small Parquet listing parts; no Ray.
* :mod:`.results` -- result shards, what a rerun may skip, the merge into a project; no Ray.
* :mod:`.pipeline` -- the Ray Data job. The only module that imports ``ray``, and it is
  imported only when a command asks for Ray (the core never imports ray otherwise).
"""

from __future__ import annotations

from ..errors import JoyqError

INSTALL_HINT = "pip install 'joyq-studio[ray]'"


class ClusterError(JoyqError):
    """Ray is missing or the cluster cannot run the job; one sentence saying what to do."""


def import_ray():
    """The ``ray`` module with Ray Data and pyarrow, or one sentence on how to install them."""
    try:
        import pyarrow  # noqa: F401
        import ray
        import ray.data
    except ImportError:
        raise ClusterError(
            f"scoring with --ray needs Ray Data and pyarrow, which are not installed: {INSTALL_HINT}"
        ) from None
    return ray
