"""What "auto" means: the int8 regressor only where the CPU has int8 dot-product instructions and
a timing here shows it faster; the float one at once elsewhere; a name forced by the
environment wins; the verdict is cached beside the compiled graphs. Which way the timing goes
depends on the machine, so the tests check that the choice follows the timing, not its result."""
from __future__ import annotations

import json

import pytest

from densehead import Pipeline
from densehead.batch import BatchSettings
from densehead.core.errors import OptionsError
from densehead.core.machine import Machine, this_machine
from densehead.core.options import REGRESSOR_ENV
from densehead.engine.regressor_choice import (
    CHOICES_FILE,
    INT8_MARGIN,
    resolve_regressor,
)
from densehead.engine.runtime import runtime_version
from densehead.weights import assets

NO_DOT_PRODUCT = Machine("a CPU with AVX2 only", 2, ("sse4_2", "avx", "fma", "avx2"))


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.HOME_ENV, str(tmp_path))
    monkeypatch.delenv(REGRESSOR_ENV, raising=False)
    return tmp_path / "compiled" / CHOICES_FILE


def test_without_int8_dot_products_auto_is_the_float_graph_at_once(fresh_cache):
    choice = resolve_regressor("auto", 1, NO_DOT_PRODUCT)
    assert choice.name == "mb05" and "no int8 dot-product" in choice.reason
    assert choice.float_ms is None and not fresh_cache.exists()   # nothing was timed


def test_a_name_is_itself_and_the_environment_forces_auto(fresh_cache, monkeypatch):
    assert resolve_regressor("mb1", 2).name == "mb1"
    monkeypatch.setenv(REGRESSOR_ENV, "mb05-int8")
    assert resolve_regressor("auto", 1, NO_DOT_PRODUCT).name == "mb05-int8"
    assert Pipeline(num_threads=1).options.regressor == "mb05-int8"
    monkeypatch.setenv(REGRESSOR_ENV, "fast")
    with pytest.raises(OptionsError, match=f"'fast' \\(from {REGRESSOR_ENV}\\) is not known"):
        resolve_regressor("auto", 1)


@pytest.mark.skipif(not this_machine().int8_dot_product,
                    reason="this CPU has no int8 dot-product instructions: nothing is timed")
def test_with_int8_dot_products_the_timing_decides_and_is_cached(fresh_cache):
    choice = resolve_regressor("auto", 1)
    assert "timed here" in choice.reason and choice.float_ms > 0 and choice.int8_ms > 0
    int8_faster = choice.int8_ms < INT8_MARGIN * choice.float_ms
    assert choice.name == ("mb05-int8" if int8_faster else "mb05")
    stored = json.loads(fresh_cache.read_text())
    assert [entry["name"] for entry in stored.values()] == [choice.name]
    # kept for this CPU and this runtime's kernels: an upgraded runtime times again
    key = next(iter(stored))
    assert this_machine().describe() in key and runtime_version() in key
    # a later process decides from the cache: the same medians (a new timing would differ)
    assert resolve_regressor("auto", 1) == choice


def test_the_pipeline_and_a_batch_run_a_named_regressor():
    pipe = Pipeline(num_threads=1)
    assert pipe.options.regressor in ("mb05", "mb05-int8") and pipe.regressor_choice.reason
    assert pipe.with_options(max_faces=1).regressor_choice == pipe.regressor_choice
    settings = BatchSettings().resolved()
    assert settings.pipeline.regressor == resolve_regressor("auto", 1).name
