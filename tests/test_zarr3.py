"""Readers work under zarr 3 too (Kaggle's image may move to it), and zarr 3 writes what zarr 2 reads.

zarr 3 is installed into a temporary folder and used from a subprocess, since copick pins zarr 2 in
the main environment.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cryokit.io import open_tomogram, write_tomogram

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def zarr3_site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("zarr3")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "zarr>=3,<4"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if install.returncode != 0:
        pytest.skip(f"could not install zarr 3 from the package index: {install.stderr.strip()[-300:]}")
    return target


def _run_under_zarr3(site: Path, code: str) -> str:
    env = {"PYTHONPATH": f"{site}:{REPO}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_zarr3_reads_a_zarr2_store(zarr3_site, tmp_path):
    volume = np.arange(6 * 10 * 12, dtype=np.float32).reshape(6, 10, 12)
    write_tomogram(tmp_path / "t.zarr", volume, (10.0, 10.5, 11.0), chunks_zyx=(4, 4, 4))
    out = _run_under_zarr3(
        zarr3_site,
        (
            "import zarr; from cryokit.io.tomogram import open_tomogram\n"
            f"t = open_tomogram({str(tmp_path / 't.zarr')!r}, level=1)\n"
            "print(zarr.__version__.split('.')[0], t.shape_zyx, float(t.read().sum()),"
            " t.voxel_spacing_angstrom_zyx.tolist())"
        ),
    )
    major, rest = out.split(" ", 1)
    assert major == "3"
    level1 = open_tomogram(tmp_path / "t.zarr", level=1)
    assert rest.strip() == f"{level1.shape_zyx} {float(level1.read().sum())} [20.0, 21.0, 22.0]"


def test_zarr3_writes_a_store_zarr2_reads(zarr3_site, tmp_path):
    _run_under_zarr3(
        zarr3_site,
        (
            "import numpy as np; from cryokit.io.tomogram import write_tomogram\n"
            "v = np.arange(5 * 9 * 7, dtype=np.float32).reshape(5, 9, 7)\n"
            f"write_tomogram({str(tmp_path / 'w.zarr')!r}, v, 10.0, chunks_zyx=(4, 4, 4))"
        ),
    )
    expected = np.arange(5 * 9 * 7, dtype=np.float32).reshape(5, 9, 7)
    np.testing.assert_array_equal(open_tomogram(tmp_path / "w.zarr").read(), expected)
    assert (tmp_path / "w.zarr" / "0" / "1" / "1" / "1").is_file()  # nested keys, as copick expects


@pytest.mark.parametrize("nest_under_ome", [False, True])
def test_a_native_zarr3_store_reads_under_zarr2(zarr3_site, tmp_path, nest_under_ome):
    """A store zarr 3 writes by default (zarr.json, no .zattrs, 'c/' chunk keys, zstd) reads here, exactly;
    its missing chunk is named like a zarr 2 store's."""
    path = tmp_path / "native.zarr"
    _run_under_zarr3(
        zarr3_site,
        (
            "import numpy as np, zarr\n"
            f"g = zarr.open_group({str(path)!r}, mode='w')\n"
            "v = np.arange(6 * 10 * 12, dtype=np.float32).reshape(6, 10, 12)\n"
            "for level in range(2):\n"
            "    a = g.create_array(str(level), shape=v.shape, chunks=(4, 4, 4), dtype='float32')\n"
            "    a[...] = v\n"
            "    v = v[::2, ::2, ::2].copy()\n"
            "ms = [{'version': '0.5', 'axes': [{'name': n, 'type': 'space'} for n in 'zyx'], 'datasets': ["
            "{'path': str(k), 'coordinateTransformations': [{'type': 'scale', 'scale': [10.0 * 2**k] * 3}]}"
            " for k in range(2)]}]\n"
            f"g.attrs.update({{'ome': {{'multiscales': ms}}}} if {nest_under_ome} else {{'multiscales': ms}})\n"
        ),
    )
    assert (path / "zarr.json").is_file() and not (path / ".zattrs").exists()
    volume = np.arange(6 * 10 * 12, dtype=np.float32).reshape(6, 10, 12)
    tomogram = open_tomogram(path)
    np.testing.assert_array_equal(tomogram.read(), volume)
    np.testing.assert_array_equal(open_tomogram(path, level=1).read(), volume[::2, ::2, ::2])
    assert open_tomogram(path, level=1).voxel_spacing_angstrom_zyx.tolist() == [20.0, 20.0, 20.0]
    (path / "0" / "c" / "1" / "0" / "2").unlink()
    with pytest.raises(ValueError, match=r"native.zarr level 0: chunk c/1/0/2 \(index \(1, 0, 2\)\) is missing"):
        open_tomogram(path).read()
