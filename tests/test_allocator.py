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
    if plain["faults"] < 0.5 * pages:  # e.g. transparent huge pages always on: few faults to save
        pytest.skip(f"glibc's defaults fault only {plain['faults']} times here (huge pages?)")
    assert tuned["faults"] < 0.4 * plain["faults"]  # reused: at most a few rounds fault


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_release_hands_free_memory_back():
    probe = """
import json, resource
import torch
from extendgan_geo import allocator
allocator.tune()
x = [torch.ones(16 << 20) for _ in range(4)]
del x
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
kept = rss()
allocator.release()
print(json.dumps({"kept": kept, "released": rss()}))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    sizes = json.loads(out.stdout)
    assert sizes["kept"] - sizes["released"] > 200 << 20  # the 256 MiB freed by `del` left the process


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
