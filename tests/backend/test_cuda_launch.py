"""The launch shape of every per-channel reduction at the benchmark shapes, computed on the CPU.

``tinyad.backend_cuda.cupy_reduction_launch`` models how CuPy 14.2 plans a
reduction (see its docstring); these tests hold the fused BatchNorm sums to
filling a 132-SM GPU (H100/H200) with at least ``BLOCKS_PER_SM`` blocks per
SM at the shapes ``benchmarks/bench_gpu.py`` measures, and record what CuPy
would have launched for the same sums asked for directly.
"""
from __future__ import annotations

import pytest

from tinyad.backend_cuda import (
    BLOCKS_PER_SM, DEFAULT_SM_COUNT, Launch, Operand, channel_reduction_layout, cupy_reduction_launch,
    direct_launches, stage_one_launches,
)

SMS = DEFAULT_SM_COUNT

# shape -> the launch of each stage-one reduction (blocks, threads, outputs per block, CUB?)
EXPECTED = {
    (8192, 1024): dict.fromkeys(
        ["channel_sum", "channel_squared_deviation", "channel_sum_dy_xhat"], Launch(1024, 512, 32, False)
    ),
    (65536, 1024): dict.fromkeys(
        ["channel_sum", "channel_squared_deviation", "channel_sum_dy_xhat"], Launch(1024, 512, 32, False)
    ),
    (32, 256, 56, 56): {
        "channel_sum": Launch(8192, 512, 1, True),  # one CUB block per (sample, channel) plane
        "channel_squared_deviation": Launch(8192, 512, 1, False),
        "channel_sum_dy_xhat": Launch(8192, 512, 1, False),
    },
    (256, 512): dict.fromkeys(  # the training-step benchmark's BatchNorm1d(512) at batch 256
        ["channel_sum", "channel_squared_deviation", "channel_sum_dy_xhat"], Launch(256, 512, 256, False)
    ),
}


@pytest.mark.parametrize("shape", list(EXPECTED))
def test_stage_one_launches_at_the_benchmark_shapes(shape):
    assert stage_one_launches(shape, SMS) == EXPECTED[shape]


@pytest.mark.parametrize("shape", [(8192, 1024), (65536, 1024), (32, 256, 56, 56)])
def test_the_large_benchmark_shapes_fill_every_sm_several_times(shape):
    for name, launch in stage_one_launches(shape, SMS).items():
        assert launch.blocks >= BLOCKS_PER_SM * SMS, (name, launch)
        assert launch.threads == 512, (name, launch)


def test_the_direct_sums_launch_what_the_reading_of_cupy_found():
    # the reductions before the layouts: 32 blocks at (8192, 1024), and 8 for the two
    # kernels with a per-channel input at (32, 256, 56, 56)
    assert set(direct_launches((8192, 1024)).values()) == {Launch(32, 512, 32, False)}
    direct = direct_launches((32, 256, 56, 56))
    assert direct["channel_squared_deviation"].blocks == direct["channel_sum_dy_xhat"].blocks == 8
    assert direct["channel_sum"].blocks == 256


def test_the_layouts_are_views_of_x_and_keep_every_value():
    import math

    for shape in EXPECTED:
        layout = channel_reduction_layout(shape, SMS)
        assert math.prod(layout.view) == math.prod(shape)  # a reshape of C-ordered x: no copy
        assert shape[1] in layout.view and shape[1] in layout.partial_shape
        assert math.prod(layout.partial_shape) == math.prod(layout.view) // math.prod(layout.view[a] for a in layout.axes)


def test_chunks_stop_where_the_batch_cannot_be_split():
    assert channel_reduction_layout((7, 3)).view == (1, 7, 3)  # odd batch: one chunk
    assert channel_reduction_layout((4, 1024)).view[1] >= 2  # every chunk keeps two rows at least


def test_cupys_rule_counts_a_broadcast_per_channel_input_as_contiguous():
    # x (N, C, S) with channels strided, the mean broadcast from (1, C, 1): CuPy packs 32 channels per block
    x = Operand((32, 256, 3136), (256 * 3136, 3136, 1))
    mean_broadcast = Operand((32, 256, 3136), (0, 1, 0))
    mean_fortran = Operand((32, 256, 3136), (1, 32, 0))  # (N, C, 1) in F order: no longer "contiguous"
    assert cupy_reduction_launch([x, mean_broadcast], (2,)).outputs_per_block == 32
    assert cupy_reduction_launch([x, mean_fortran], (2,)).outputs_per_block == 1
