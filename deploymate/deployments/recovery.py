"""After an interrupted job: what to do so the records match what the target really runs.

Pure logic over the target's containers of one deployment (from `docker ps`): the job handler
runs the decided commands and writes the decided states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deploymate.runtime import docker


@dataclass
class Settlement:
    remove: list[str] = field(default_factory=list)  # containers to remove
    start: str | None = None  # a stopped serving container to start again
    inflight_status: str | None = None  # the interrupted release's final status
    serving_id: int | None = None  # the release that serves afterwards (None: nothing does)
    restore_serving_config: bool = False  # the desired config goes back to what serves
    status: str = "failed"
    status_message: str | None = None
    notes: list[str] = field(default_factory=list)


def settle(
    containers: list[dict[str, Any]],
    *,
    current_id: int | None,
    inflight_id: int | None,
    inflight_number: int | None,
    job_kind: str,
    deleted: bool,
) -> Settlement:
    """Decide from the containers (`parse_ps` rows) and the releases the records name."""
    out = Settlement(serving_id=current_id)
    by_release: dict[int, list[dict[str, Any]]] = {}
    for row in containers:
        labels = row["labels"]
        if labels.get(docker.LABEL_ROLE) == docker.ROLE_CANDIDATE:
            out.remove.append(str(row["name"]))  # a candidate never outlives its job
            continue
        by_release.setdefault(int(labels.get(docker.LABEL_RELEASE, 0)), []).append(row)
    if inflight_id is not None and inflight_id != current_id:
        mine = by_release.get(inflight_id, [])
        if current_id is not None and current_id in by_release:
            out.remove += [str(row["name"]) for row in by_release.pop(inflight_id, [])]
            out.inflight_status = "failed"
            out.restore_serving_config = True
            out.notes.append(f"release {inflight_number} interrupted and removed")
        elif mine and mine[0]["state"] == "running":
            out.inflight_status = "succeeded"
            out.serving_id = inflight_id
            out.notes.append(f"release {inflight_number} was already serving; adopted")
        else:
            out.inflight_status = "failed"
            out.notes.append(f"release {inflight_number} interrupted")
    if out.serving_id is None:
        out.status = "deleted" if deleted else "failed"
        return out
    serving = by_release.pop(out.serving_id, [])
    if not serving:
        out.serving_id = None
        out.status, out.status_message = (
            "failed",
            "no container of the serving release on the target",
        )
        return out
    # Containers of other releases outlived an interrupted drain or clean-up: a finished job
    # leaves only the release that serves.
    for rows in by_release.values():
        names = [str(row["name"]) for row in rows]
        out.remove += names
        out.notes.append(f"removed {', '.join(names)} (no longer serving)")
    if serving[0]["state"] != "running" and job_kind in ("deploy", "start", "restart"):
        out.start = str(serving[0]["name"])
        out.status = "running"
        out.notes.append(f"restarted {out.start}")
    else:
        out.status = "running" if serving[0]["state"] == "running" else "stopped"
    return out
