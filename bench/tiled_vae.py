"""A VAE decoded in tiles, every GroupNorm synchronised through gncpu's
statistics that merge, against the untiled decode and two tilings that do not
synchronise: per-tile statistics (what naive tiling computes) and diffusers'
own enable_tiling() (overlapping tiles blended).

    pip install diffusers matplotlib
    python bench/tiled_vae.py [--latent 32] [--tile 16] [--halo 8] [--sd] [--png seams.png]

diffusers' AutoencoderKL is built from its config with random weights (no
download): by default a small one (64..256 channels), --sd for Stable
Diffusion's (128..512).  The tiles' decoders run in lockstep, one thread per
tile: at each GroupNorm every tile measures its own core region (the halo,
which overlaps the neighbours, is not counted), the statistics are merged
in tile order, and every tile normalises its whole padded region with them.
What is left between the synchronised tiling and the untiled decode is what
tiling does to everything else: the mid-block's attention sees one tile,
and convolutions near a tile's outer edge see the halo's zero padding.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import threading
import time

import numpy as np
import torch

import gncpu.torch
from gncpu import GroupStats


def build_vae(sd: bool, attention: bool):
    from diffusers import AutoencoderKL

    channels = (128, 256, 512, 512) if sd else (64, 128, 256, 256)
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=channels, layers_per_block=2, latent_channels=4,
                        norm_num_groups=32, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4,
                        mid_block_add_attention=attention)
    return vae.eval()


class Tile:
    """A core region of the latent, and the padded region decoded for it."""

    def __init__(self, index, y0, y1, x0, x1, halo, height, width):
        self.index = index
        self.core = (y0, y1, x0, x1)
        self.padded = (max(0, y0 - halo), min(height, y1 + halo), max(0, x0 - halo),
                       min(width, x1 + halo))

    def as_image(self, activation):
        """An activation of the padded tile as (N, C, H, W): the mid-block's
        attention normalises its tokens flattened, (N, C, H * W)."""
        if activation.ndim == 4:
            return activation
        py0, py1, px0, px1 = self.padded
        scale = round((activation.shape[-1] / ((py1 - py0) * (px1 - px0))) ** 0.5)
        return activation.reshape(*activation.shape[:2], (py1 - py0) * scale, (px1 - px0) * scale)

    def core_of(self, activation):
        """The core region in an activation of the padded tile (any scale)."""
        py0, py1, px0, px1 = self.padded
        scale = activation.shape[-1] // (px1 - px0)
        y0, y1, x0, x1 = self.core
        return (slice((y0 - py0) * scale, (y1 - py0) * scale),
                slice((x0 - px0) * scale, (x1 - px0) * scale))


class Lockstep:
    """Where the tiles' threads meet at each GroupNorm: every tile deposits
    its statistics, the last to arrive merges them (in tile order), all read
    the result, and a second barrier keeps the slots until everyone has."""

    def __init__(self, tiles):
        self.tiles = tiles
        self.slots = [None] * len(tiles)
        self.merged = None
        self.local = threading.local()
        self.arrive = threading.Barrier(len(tiles), action=self._merge)
        self.leave = threading.Barrier(len(tiles))

    def _merge(self):
        total = self.slots[0]
        for stats in self.slots[1:]:
            total = total.merge(stats)
        self.merged = total

    def exchange(self, stats: GroupStats) -> GroupStats:
        self.slots[self.local.tile.index] = stats
        self.arrive.wait()
        merged = self.merged
        self.leave.wait()
        return merged


class SyncedGroupNorm(torch.nn.Module):
    """An nn.GroupNorm of a tiled decoder, normalising with every tile's statistics."""

    def __init__(self, norm: torch.nn.GroupNorm, lockstep: Lockstep):
        super().__init__()
        self.norm, self.lockstep = norm, lockstep

    def forward(self, x):
        tile = self.lockstep.local.tile
        image = tile.as_image(x)
        rows, cols = tile.core_of(image)
        mine = gncpu.torch.group_norm_stats(image[..., rows, cols], self.norm.num_groups)
        merged = self.lockstep.exchange(mine)
        return gncpu.torch.group_norm(x, self.norm.num_groups, self.norm.weight, self.norm.bias,
                                      self.norm.eps, stats=merged)


def make_tiles(height, width, tile, halo):
    tiles = []
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            tiles.append(Tile(len(tiles), y0, min(height, y0 + tile), x0, min(width, x0 + tile),
                              halo, height, width))
    return tiles


def decode_tiles(vae, z, tiles, synced):
    """Each tile's padded latent decoded (in lockstep when synced), its core pasted."""
    decoder = vae.decoder
    lockstep = Lockstep(tiles)
    originals = {}
    if synced:
        for name, module in list(decoder.named_modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, torch.nn.GroupNorm):
                    originals[(module, child_name)] = child
                    setattr(module, child_name, SyncedGroupNorm(child, lockstep))
    out = torch.empty(z.shape[0], 3, z.shape[2] * 8, z.shape[3] * 8)
    errors = []

    def run(tile):
        try:
            lockstep.local.tile = tile
            py0, py1, px0, px1 = tile.padded
            with torch.no_grad():
                image = vae.decode(z[..., py0:py1, px0:px1]).sample
            y0, y1, x0, x1 = tile.core
            out[..., y0 * 8:y1 * 8, x0 * 8:x1 * 8] = image[
                ..., (y0 - py0) * 8:(y1 - py0) * 8, (x0 - px0) * 8:(x1 - px0) * 8]
        except BaseException as error:  # noqa: BLE001 - reported by the caller
            errors.append(error)
            lockstep.arrive.abort()
            lockstep.leave.abort()

    try:
        threads = [threading.Thread(target=run, args=(t,)) for t in tiles]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for (module, child_name), child in originals.items():
            setattr(module, child_name, child)
    if errors:
        raise errors[0]
    return out


def method(name, args, queue):
    """One decode in a fresh process: (name, image, seconds, peak RSS MiB)."""
    torch.set_num_threads(args.threads)
    vae = build_vae(args.sd, not args.no_attention)
    torch.manual_seed(1)
    z = torch.randn(1, 4, args.latent, args.latent)
    tiles = make_tiles(args.latent, args.latent, args.tile, args.halo)
    start = time.perf_counter()
    with torch.no_grad():
        if name == "untiled":
            image = vae.decode(z).sample
        elif name == "gncpu synchronised tiles":
            image = decode_tiles(vae, z, tiles, synced=True)
        elif name == "per-tile statistics":
            image = decode_tiles(vae, z, tiles, synced=False)
        else:  # diffusers' own: overlapping tiles, blended
            vae.enable_tiling()
            vae.tile_latent_min_size = args.tile + args.halo
            vae.tile_sample_min_size = (args.tile + args.halo) * 8
            image = vae.decode(z).sample
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((name, image.numpy(), seconds, peak))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latent", type=int, default=32, help="latent height and width (image: 8x)")
    parser.add_argument("--tile", type=int, default=16, help="tile core, in latent pixels")
    parser.add_argument("--halo", type=int, default=8, help="overlap around each core, in latent pixels")
    parser.add_argument("--sd", action="store_true", help="Stable Diffusion's VAE channels (slower)")
    parser.add_argument("--no-attention", action="store_true",
                        help="no attention in the mid-block (then only the halo's edges differ)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads per decode")
    parser.add_argument("--png", default=None, help="write a picture of the differences here")
    args = parser.parse_args()
    names = ["untiled", "gncpu synchronised tiles", "per-tile statistics", "diffusers enable_tiling"]
    context = multiprocessing.get_context("spawn")
    results = {}
    for name in names:
        print(f"decoding: {name} ...", flush=True)
        queue = context.Queue()
        process = context.Process(target=method, args=(name, args, queue))
        process.start()
        result = queue.get()
        process.join()
        results[name] = result[1:]
    reference = results["untiled"][0]
    scale = float(np.abs(reference).max())
    print(f"\n{args.latent * 8}x{args.latent * 8} image, tiles of {args.tile * 8} px with a "
          f"{args.halo * 8} px halo, {'SD' if args.sd else 'small'} VAE"
          f"{'' if not args.no_attention else ', no mid-block attention'}, {args.threads} threads")
    print(f"  {'method':26s} {'max |diff|':>11s} {'mean |diff|':>12s} {'time':>8s} {'peak RSS':>10s}")
    for name in names:
        image, seconds, peak = results[name]
        diff = np.abs(image - reference)
        print(f"  {name:26s} {diff.max() / scale:11.2e} {diff.mean() / scale:12.2e} "
              f"{seconds:7.2f}s {peak:8.0f} MiB")
    print("  (differences relative to the untiled image's largest magnitude)")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from matplotlib.colors import LogNorm

        fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
        shown = max(float(np.abs(results[n][0] - reference).max()) for n in names[1:]) / scale
        for ax, name in zip(axes, names[1:]):
            diff = np.abs(results[name][0] - reference).max(axis=(0, 1)) / scale
            im = ax.imshow(np.maximum(diff, 1e-7), cmap="magma", norm=LogNorm(1e-7, shown))
            ax.set_title(f"{name}\nmax |diff| {diff.max():.1e}")
            ax.axis("off")
        fig.colorbar(im, ax=axes, shrink=0.8,
                     label="|tiled - untiled| / max |untiled|, largest over RGB (log)")
        fig.suptitle("Where tiled VAE decodes differ from the untiled one (seams show as lines)")
        fig.savefig(args.png, dpi=110, bbox_inches="tight")
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
