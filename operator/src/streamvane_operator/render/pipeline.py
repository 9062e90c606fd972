"""A whole Pipeline -> its Pulsar topology and Kubernetes objects, or every reason it can't be.

Everything is computed before anything is written, so an invalid spec creates nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from streamvane_operator.api.backend import InferenceBackendSpec
from streamvane_operator.api.common import Manifest
from streamvane_operator.api.pipeline import PipelineSpec
from streamvane_operator.api.validation import InvalidSpecError, pipeline_problems
from streamvane_operator.render.backend import resolve
from streamvane_operator.render.keda import render_keda
from streamvane_operator.render.labels import Owner
from streamvane_operator.render.stage import render_stage
from streamvane_operator.render.topology import Topology, topology
from streamvane_operator.render.worker import (
    WorkerDefaults,
    secret_files,
    trainer_claim,
    worker_config,
)
from streamvane_worker.config import WorkerConfig


@dataclass(frozen=True)
class RenderedPipeline:
    topology: Topology
    objects: tuple[Manifest, ...]
    """In apply order."""
    configs: Mapping[str, WorkerConfig]
    """Stage name -> the WorkerConfig its ConfigMap holds."""


def render_pipeline(
    owner: Owner,
    spec: PipelineSpec,
    backends: Mapping[str, InferenceBackendSpec],
    defaults: WorkerDefaults,
) -> RenderedPipeline:
    """Raises InvalidSpecError listing every problem found."""
    problems = pipeline_problems(owner.name, spec, backends, owner.namespace)
    if problems:
        raise InvalidSpecError(problems)
    resolved = {name: resolve(name, owner.namespace, b) for name, b in backends.items()}
    configs: dict[str, WorkerConfig] = {}
    for stage in spec.stages:
        try:
            configs[stage.name] = worker_config(
                owner.namespace, owner.name, spec, stage, resolved, defaults
            )
        except InvalidSpecError as e:
            problems.extend(e.problems)
    if problems:
        raise InvalidSpecError(problems)
    objects = [
        obj
        for stage in spec.stages
        for obj in render_stage(
            owner,
            spec,
            stage,
            configs[stage.name],
            secret_files(spec, stage, resolved),
            trainer_claim(stage, resolved),
            defaults,
        )
    ]
    topo = topology(owner.namespace, owner.name, spec)
    subscriptions = {s.stage: s.name for s in topo.subscriptions}
    objects.extend(render_keda(owner, spec, subscriptions))
    return RenderedPipeline(topo, tuple(objects), configs)
