"""Session-wide peers: the shared kube-apiserver + istiod that tests protecting hosts without
the controller put their gateway Envoys on (e2e/harness/istio.py Mesh.shared(), started by
the first of them), stopped by pid when the session ends."""
from __future__ import annotations

import pytest

from e2e.harness.istio import Mesh


@pytest.fixture(scope="session", autouse=True)
def _shared_mesh():
    yield
    Mesh.stop_shared()
