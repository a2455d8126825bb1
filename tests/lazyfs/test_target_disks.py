"""A process target's lazy disks: one per node over dataDir/version-2, a restored copy is on disk."""
from __future__ import annotations

import json
import uuid

import pytest

from chaos import lazyfs, procs
from chaos.plan.model import Ensemble
from chaos.targets.fle import FleTarget

MISSING = lazyfs.missing_requirements()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))


def test_disks_cover_version_2_and_a_restored_copy_survives_a_cut(tmp_path):
    spec = Ensemble(nodes=3)
    links = {(a, b, p): 40000 + k for k, (a, b, p) in enumerate(
        (a, b, p) for a in spec.sids for b in spec.sids if a != b for p in ("election", "quorum"))}
    run_id = uuid.uuid4().hex[:8]
    registry = procs.RunRegistry(run_id, tmp_path)
    target = FleTarget(tmp_path, spec, range(30000, 30009), links, registry=registry)
    target.write_configs()
    try:
        target.mount_disks(run_id)
        covered = sorted(mp for mp, src in lazyfs.mounts() if src == lazyfs.SOURCE_PREFIX + run_id)
        assert covered == [str(target.lazy_dir(s)) for s in spec.sids]
        assert (target.nodes[1].data_dir / "myid").read_text() == "1\n"   # myid, events: not on the disk
        copy = tmp_path / "snapshots" / "old"
        (copy / "data" / "version-2").mkdir(parents=True)
        (copy / "data" / "version-2" / "currentEpoch").write_text("4")
        (copy / "snapshot.json").write_text(json.dumps({"sid": 1, "name": "old"}))
        (target.lazy_dir(1) / "leftover").write_bytes(b"x")
        target.restore(1, "old")
        assert not (target.lazy_dir(1) / "leftover").exists() and lazyfs.is_mounted(target.lazy_dir(1))
        target.power_loss(1)                        # the node is down already: nothing to kill
        assert target.lose_unsynced(1)["files"] == []
        assert (target.lazy_dir(1) / "currentEpoch").read_text() == "4"
    finally:
        target.unmount_disks()
        registry.close()
    assert not [mp for mp, src in lazyfs.mounts() if src == lazyfs.SOURCE_PREFIX + run_id]
