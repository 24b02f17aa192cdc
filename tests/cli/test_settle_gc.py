"""``runbook serve`` freezes start-up objects and makes cyclic collections rarer."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from bot.cli.service_commands import SERVE_GC_THRESHOLDS, settle_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_start_up_objects_are_frozen_and_thresholds_raised(restore_gc: None) -> None:
    before = gc.get_freeze_count()
    long_lived = [Node() for _ in range(100)]
    settle_gc()
    assert gc.get_threshold() == SERVE_GC_THRESHOLDS
    assert gc.get_freeze_count() >= before + len(long_lived)
    # frozen objects are outside every generation the collector walks
    walked = {id(obj) for obj in gc.get_objects()}
    assert gc.is_tracked(long_lived[0])
    assert not any(id(node) in walked for node in long_lived)


def test_cyclic_garbage_made_after_start_up_is_still_collected(restore_gc: None) -> None:
    settle_gc()
    first, second = Node(), Node()
    first.other, second.other = second, first
    alive = weakref.ref(first)
    del first, second
    gc.collect()
    assert alive() is None
