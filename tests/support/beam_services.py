"""The local Beam services (benchmarks/local_cluster/beam_services.py) as a pytest fixture."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks.local_cluster.beam_services import BeamServices, start_beam_services


@pytest.fixture(scope="module")
def beam_services(tmp_path_factory) -> Iterator[BeamServices]:
    """A running job service and worker pool for the module's tests; stopped afterwards."""
    services = start_beam_services(tmp_path_factory.mktemp("beam-services"))
    try:
        yield services
    finally:
        services.stop()
