"""gncpu.torch's statistics that merge: group_norm_stats, group_norm(..., stats=)
and distributed_group_norm over torch.distributed (gloo, 2 processes on
loopback)."""

import os
import socket
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import gncpu.torch as gt  # noqa: E402
from gncpu import GroupStats  # noqa: E402


def whole_and_tiles(x, cut):
    return [x[..., :cut], x[..., cut:]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("activation", [None, "silu"])
def test_tiles_of_tensors_normalise_as_the_whole(dtype, channels_last, activation):
    torch.manual_seed(0)
    x = (torch.randn(2, 32, 12, 18) * 3 + 2e4 * (dtype != torch.bfloat16)).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(32), torch.randn(32)
    whole = gt.group_norm(x, 8, w, b, activation=activation)
    tiles = whole_and_tiles(x, 7)
    stats = gt.group_norm_stats(tiles[0], 8).merge(gt.group_norm_stats(tiles[1], 8))
    assert isinstance(stats, GroupStats) and stats.shape == (2, 8)
    out = torch.cat([gt.group_norm(t, 8, w, b, activation=activation, stats=stats)
                     for t in tiles], dim=-1)
    assert out.dtype == dtype
    tol = {torch.float32: 2e-6, torch.float64: 1e-12, torch.bfloat16: 2e-2}[dtype]
    scale = max(1.0, whole.abs().max().item())
    assert (out.double() - whole.double()).abs().max().item() <= tol * scale
    # the NumPy function measures the same statistics
    if dtype != torch.bfloat16:
        same = GroupStats.concatenate([gt.group_norm_stats(x, 8)])
        np.testing.assert_allclose(same.m2, stats.m2, rtol=1e-12)


def test_a_mean_rstd_pair_and_errors():
    x = torch.randn(2, 8, 5, 5)
    s = gt.group_norm_stats(x, 4)
    mean, rstd = s.mean_rstd(1e-5)
    y = gt.group_norm(x, 4, stats=(torch.from_numpy(mean), torch.from_numpy(rstd)))
    torch.testing.assert_close(y, gt.group_norm(x, 4, stats=s), rtol=0, atol=0)
    with pytest.raises(ValueError, match="example"):
        gt.group_norm(x, 4, stats=s[:1])
    with pytest.raises(ValueError, match="whole groups"):
        gt.group_norm(x[:, :3], 1, stats=s[:, :1])
    with pytest.raises(TypeError, match="GroupStats"):
        gt.group_norm(x, 4, stats=[mean, rstd])
    with pytest.raises(ValueError, match="shape"):
        gt.group_norm(x, 4, stats=(torch.zeros(2, 3), torch.ones(2, 3)))
    with pytest.raises(RuntimeError, match="inference"):
        gt.group_norm(x.requires_grad_(), 4, stats=s)
    with torch.no_grad():
        gt.group_norm(x, 4, stats=s)  # fine without a graph
    x = x.detach()
    ints = (torch.zeros(2, 4, dtype=torch.uint8), torch.ones(2, 4, dtype=torch.int16))
    torch.testing.assert_close(gt.group_norm(x, 4, stats=ints), x, rtol=0, atol=0)
    from torch.fx.experimental.proxy_tensor import make_fx
    for traced in (lambda t: gt.group_norm(t, 4, stats=s), lambda t: gt.group_norm_stats(t, 4)):
        with pytest.raises(RuntimeError, match="eagerly"):
            make_fx(traced)(x)
    with pytest.raises(RuntimeError, match="eagerly"):
        torch.func.vmap(lambda t: gt.group_norm(t, 4, stats=s))(x[None])


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank, world, port, result_path):
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # every rank builds the same whole tensor, then keeps its patch
        x = torch.randn(2, 32, 16, 20) * 4 + 1e4
        w, b = torch.randn(32), torch.randn(32)
        cuts = [(0, 6), (6, 16)]
        r0, r1 = cuts[rank]
        mine = gt.distributed_group_norm(x[:, :, r0:r1].contiguous(), 8, w, b, activation="silu")
        expected = gt.group_norm(x, 8, w, b, activation="silu")[:, :, r0:r1]
        error = (mine - expected).abs().max().item() / expected.abs().max().item()
        torch.save({"rank": rank, "error": error}, f"{result_path}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(sys.platform == "win32", reason="gloo on loopback: Linux and macOS")
def test_distributed_patches_over_gloo(tmp_path):
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    import torch.multiprocessing as mp

    path = str(tmp_path / "result")
    mp.start_processes(_rank_main, args=(2, _free_port(), path), nprocs=2, join=True,
                       start_method="spawn")
    for rank in range(2):
        result = torch.load(f"{path}.{rank}")
        assert result["rank"] == rank
        assert result["error"] <= 2e-6
