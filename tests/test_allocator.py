"""The allocator setting: freed feature maps stay in the process, so repeated windows stop page-faulting."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from extendgan_geo import allocator

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Allocate, touch and free a 64 MiB tensor: ten rounds to settle (torch's own first allocations interleave), then
# the page faults of ten more.
PROBE = """
import json, resource, sys
import torch
from extendgan_geo import allocator
tuned = allocator.tune()
for _ in range(10):
    torch.ones(16 << 20).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(16 << 20).sum()
print(json.dumps({"tuned": tuned, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(setting: str) -> dict[str, int]:
    env = {**os.environ, "EGAN_TUNE_MALLOC": setting}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_tuned_process_reuses_freed_memory_instead_of_faulting_it_in_again():
    plain, tuned = _probe("NO"), _probe("YES")
    assert not plain["tuned"] and tuned["tuned"]
    pages = 10 * (64 << 20) // 4096
    assert plain["faults"] > 0.8 * pages  # glibc's defaults: every round maps fresh memory
    assert tuned["faults"] < 0.4 * pages  # reused: at most a few rounds fault


def test_opt_out_and_once_per_process(monkeypatch):
    monkeypatch.setattr(allocator, "_tuned", None)
    monkeypatch.setenv("EGAN_TUNE_MALLOC", "no")
    assert allocator.tune() is False
    monkeypatch.setenv("EGAN_TUNE_MALLOC", "YES")
    assert allocator.tune() is False  # decided once per process


@pytest.mark.skipif(GLIBC, reason="other C libraries")
def test_left_alone_without_glibc(monkeypatch):
    monkeypatch.setattr(allocator, "_tuned", None)
    assert allocator.tune() is False
