"""Reading PyTorch checkpoints and numpy pickles without torch, and refusing unsafe pickles."""
from __future__ import annotations

import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from helpers import run_with_peak_rss

from densehead.weights.assets import ModelFileError
from densehead.weights.checkpoint import (
    UnsafePickleError,
    load_checkpoint,
    load_pickle,
    load_torch,
    loads_pickle,
)

STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage",
                 np.dtype(np.float64): "DoubleStorage", np.dtype(np.int32): "IntStorage"}


# ----------------------------------------------------------------- a minimal torch-zip writer
# Emits the pickle opcodes torch.save writes for a dict of tensors (protocol 2, GLOBAL by
# name), because the pickle module cannot reference torch globals without torch installed.

def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _str(s: str) -> bytes:
    data = s.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _int(n: int) -> bytes:
    return pickle.BININT + struct.pack("<i", n)


def _tuple(items: list[bytes]) -> bytes:
    return pickle.MARK + b"".join(items) + pickle.TUPLE


def _tensor(key: str, storage: np.ndarray, offset: int, shape: tuple, strides: tuple) -> bytes:
    pid = _tuple([_str("storage"), _global("torch", STORAGE_NAMES[storage.dtype]), _str(key),
                  _str("cpu"), _int(storage.size)]) + pickle.BINPERSID
    args = _tuple([pid, _int(offset), _tuple([_int(n) for n in shape]),
                   _tuple([_int(n) for n in strides]), pickle.NEWFALSE,
                   _global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE])
    return _global("torch._utils", "_rebuild_tensor_v2") + args + pickle.REDUCE


def write_torch_zip(path: Path, tensors: dict[str, np.ndarray], epoch: int = 7,
                    transposed: tuple[str, ...] = ()) -> None:
    """{'epoch': epoch, 'state_dict': OrderedDict(tensors)} in torch's zip layout; tensors
    named in ``transposed`` are stored as a strided (non-contiguous) view of their transpose."""
    items, storages = [], {}
    for i, (name, array) in enumerate(tensors.items()):
        key = str(i)
        if name in transposed:  # storage holds array.T contiguous; the tensor views it
            storages[key] = np.ascontiguousarray(array.T)
            strides = tuple(s // array.itemsize for s in storages[key].T.strides)
        else:
            storages[key] = np.array(array, order="C")  # ascontiguousarray makes 0-d 1-d
            strides = tuple(s // array.itemsize for s in storages[key].strides)
        items.append(_str(name) + _tensor(key, storages[key].ravel(), 0, array.shape, strides))
    state = (_global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE
             + pickle.MARK + b"".join(items) + pickle.SETITEMS)
    top = (pickle.EMPTY_DICT + pickle.MARK + _str("epoch") + _int(epoch)
           + _str("state_dict") + state + pickle.SETITEMS)
    data_pkl = pickle.PROTO + b"\x02" + top + pickle.STOP
    root = path.stem
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{root}/data.pkl", data_pkl)
        z.writestr(f"{root}/byteorder", "little")
        for key, storage in storages.items():
            z.writestr(f"{root}/data/{key}", storage.astype(storage.dtype.newbyteorder("<")).tobytes())
        z.writestr(f"{root}/version", "3\n")


# a pickle that would call os.system("echo pwned") if loaded by a plain unpickler; built
# by hand and only ever fed to the restricted one
EVIL = pickle.PROTO + b"\x02" + _global("os", "system") + _tuple([_str("echo pwned")]) \
    + pickle.REDUCE + pickle.STOP


# ----------------------------------------------------------------- tests

def test_legacy_mb05_checkpoint(assets_dir: Path):
    state = load_checkpoint(assets_dir / "mb05_120x120.pth")
    blocks = ["dw2_1", "dw2_2", "dw3_1", "dw3_2", "dw4_1", "dw4_2", "dw5_1", "dw5_2",
              "dw5_3", "dw5_4", "dw5_5", "dw5_6", "dw6"]
    assert len(state) == 6 + 12 * len(blocks) + 4
    assert not any(k.startswith("module.") for k in state)
    assert state["conv1.weight"].shape == (16, 3, 3, 3)
    assert state["dw2_1.conv_dw.weight"].shape == (16, 1, 3, 3)
    assert state["dw5_6.conv_sep.weight"].shape == (512, 256, 1, 1)
    assert state["dw6.bn_sep.running_var"].shape == (512,)
    assert state["fc_param.weight"].shape == (62, 512)
    assert state["fc_param.bias"].shape == (62,)
    assert state["fc_lm.weight"].shape == (136, 512)
    assert state["bn1.num_batches_tracked"].shape == ()
    assert state["bn1.num_batches_tracked"].dtype == np.int64
    assert all(v.dtype == np.float32 for k, v in state.items() if "num_batches" not in k)
    assert all(np.isfinite(v).all() for v in state.values())
    assert (state["dw6.bn_sep.running_var"] > 0).all()
    raw = load_torch(assets_dir / "mb05_120x120.pth")
    assert set(raw) == {"epoch", "state_dict"}
    assert all(k.startswith("module.") for k in raw["state_dict"])


def test_zip_checkpoint_round_trips(tmp_path: Path):
    rng = np.random.default_rng(0)
    tensors = OrderedDict([
        ("module.conv.weight", rng.standard_normal((8, 3, 3, 3)).astype(np.float32)),
        ("module.fc.weight", rng.standard_normal((5, 7)).astype(np.float32)),
        ("module.fc.bias", rng.standard_normal(5).astype(np.float64)),
        ("module.bn.num_batches_tracked", np.array(42, np.int64)),
        ("module.index", np.arange(6, dtype=np.int32).reshape(2, 3)),
    ])
    path = tmp_path / "tiny.pth"
    write_torch_zip(path, tensors, transposed=("module.fc.weight",))
    assert zipfile.is_zipfile(path)
    state = load_checkpoint(path)
    assert list(state) == [k[len("module."):] for k in tensors]
    for key, expected in tensors.items():
        got = state[key[len("module."):]]
        if np.issubdtype(expected.dtype, np.floating):
            expected = expected.astype(np.float32)
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    assert state["fc.bias"].dtype == np.float32  # floating tensors come back as float32
    assert state["index"].dtype == np.int32
    assert state["bn.num_batches_tracked"] == 42
    assert load_torch(path)["epoch"] == 7


def test_numpy_pickles(assets_dir: Path):
    stats = load_pickle(assets_dir / "param_mean_std_62d_120x120.pkl")
    assert stats["mean"].shape == (62,) and stats["std"].shape == (62,)
    assert (stats["std"] > 0).all()
    tri = load_pickle(assets_dir / "tri.pkl")
    assert tri.shape == (3, 76073) and tri.dtype == np.int32
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    for protocol in (2, 4, 5):  # numpy pickles its arrays differently per protocol
        back = loads_pickle(pickle.dumps({"a": array}, protocol=protocol))
        np.testing.assert_array_equal(back["a"], array)


def test_restricted_unpickler_refuses_os_system(tmp_path: Path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(EVIL)
    with pytest.raises(UnsafePickleError, match=r"'os\.system'"):
        load_pickle(path)

    zipped = tmp_path / "evil.pth"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("evil/data.pkl", EVIL)
    with pytest.raises(UnsafePickleError, match=r"'os\.system'"):
        load_checkpoint(zipped)

    legacy = tmp_path / "evil_legacy.pth"
    header = b"".join(pickle.dumps(x, protocol=2) for x in
                      (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    legacy.write_bytes(header + EVIL)
    with pytest.raises(UnsafePickleError, match=r"'os\.system'"):
        load_checkpoint(legacy)


def test_unpickler_refuses_torch_globals_in_data_files(tmp_path: Path):
    """The numpy allow-list does not include the torch rebuilders, and vice versa."""
    path = tmp_path / "tensor.pkl"
    path.write_bytes(pickle.PROTO + b"\x02" + _global("torch._utils", "_rebuild_tensor_v2")
                     + pickle.STOP)
    with pytest.raises(UnsafePickleError, match="torch._utils._rebuild_tensor_v2"):
        load_pickle(path)


# ----------------------------------------------------------------- hostile checkpoints
# Each is a few hundred bytes; a loader that trusts them segfaults, hands out heap bytes as
# weights, or allocates gigabytes. They are loaded in a child process, so that a crash fails
# the test instead of killing the test run.

LOAD_IN_CHILD = """
import sys
from densehead.weights.assets import ModelFileError
from densehead.weights.checkpoint import load_checkpoint
try:
    load_checkpoint(sys.argv[1])
    print("loaded")
except ModelFileError as e:
    print("refused:", e)
"""


def _hostile_tensor(numel: int, offset: int, shape: tuple, strides: tuple) -> bytes:
    """{'state_dict': {'w': tensor}} whose one float storage (key '0') claims `numel`."""
    pid = _tuple([_str("storage"), _global("torch", "FloatStorage"), _str("0"), _str("cpu"),
                  _int(numel)]) + pickle.BINPERSID
    args = _tuple([pid, _int(offset), _tuple([_int(n) for n in shape]),
                   _tuple([pickle.LONG1 + bytes([8]) + struct.pack("<q", n) for n in strides]),
                   pickle.NEWFALSE,
                   _global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE])
    tensor = _global("torch._utils", "_rebuild_tensor_v2") + args + pickle.REDUCE
    top = (pickle.EMPTY_DICT + pickle.MARK + _str("state_dict") + pickle.EMPTY_DICT
           + pickle.MARK + _str("w") + tensor + pickle.SETITEMS + pickle.SETITEMS)
    return pickle.PROTO + b"\x02" + top + pickle.STOP


def write_hostile(path: Path, layout: str, obj: bytes, storage: bytes, count: int) -> Path:
    """A checkpoint holding the object pickle `obj` and the bytes of storage '0'; `count` is
    the element count the legacy layout writes before those bytes."""
    if layout == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            z.writestr("h/data.pkl", obj)
            z.writestr("h/byteorder", "little")
            z.writestr("h/data/0", storage)
    else:
        header = b"".join(pickle.dumps(x, protocol=2) for x in
                          (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
        path.write_bytes(header + obj + pickle.dumps(["0"], protocol=2)
                         + struct.pack("<q", count) + storage)
    return path


def load_in_child(path: Path) -> tuple[str, int]:
    return run_with_peak_rss(LOAD_IN_CHILD, str(path))


FOUR_FLOATS = np.arange(4, dtype="<f4").tobytes()
HOSTILE_TENSORS = {  # name: (offset, shape, strides, what the refusal says)
    "huge-stride": (0, (2, 2), (1 << 40, 1), "does not fit in its storage of 4 elements"),
    "negative-offset": (-1, (4,), (1,), "storage offset -1"),
    "oversized-shape": (0, (1 << 20,), (1,), "does not fit in its storage of 4 elements"),
    "zero-stride-blowup": (0, (1 << 15, 1 << 15), (0, 0), "does not fit in its storage"),
}


@pytest.mark.parametrize("layout", ["legacy", "zip"])
@pytest.mark.parametrize("case", sorted(HOSTILE_TENSORS))
def test_crafted_tensor_views_are_refused(tmp_path: Path, layout: str, case: str):
    offset, shape, strides, says = HOSTILE_TENSORS[case]
    path = write_hostile(tmp_path / f"{case}.pth", layout,
                         _hostile_tensor(4, offset, shape, strides), FOUR_FLOATS, 4)
    outcome, _ = load_in_child(path)
    assert outcome.startswith("refused:"), outcome
    assert str(path) in outcome and says in outcome


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_storage_claiming_4_gb_is_refused_before_allocating(tmp_path: Path, layout: str):
    numel = 1 << 30  # 4 GB of float32 claimed by a file of a few hundred bytes
    path = write_hostile(tmp_path / "claims.pth", layout,
                         _hostile_tensor(numel, 0, (4,), (1,)), FOUR_FLOATS, numel)
    outcome, peak_mb = load_in_child(path)
    assert outcome.startswith("refused:") and str(path) in outcome, outcome
    assert "bytes" in outcome and peak_mb < 200


def test_zip_bomb_storage_is_not_unpacked(tmp_path: Path):
    """256 MB of zeros deflate to about 1 MB: the storage may not cost more than the file."""
    numel = 64 << 20
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("h/data.pkl", _hostile_tensor(numel, 0, (numel,), (1,)))
        with z.open("h/data/0", "w") as member:
            block = bytes(16 << 20)
            for _ in range(numel * 4 // len(block)):
                member.write(block)
    assert path.stat().st_size < 4 << 20
    outcome, peak_mb = load_in_child(path)
    assert outcome.startswith("refused:") and "more than a file of" in outcome, outcome
    assert peak_mb < 150  # unpacking it would take 256 MB at least


def test_truncated_checkpoints_are_one_model_file_error(tmp_path: Path, assets_dir: Path):
    data = (assets_dir / "mb05_120x120.pth").read_bytes()
    zipped = tmp_path / "whole.pth"
    write_torch_zip(zipped, {"w": np.arange(1000, dtype=np.float32)})
    for name, cut in (("legacy", data[: len(data) // 2]), ("header", data[:40]),
                      ("zip", zipped.read_bytes()[:-200]), ("empty", b"")):
        path = tmp_path / f"{name}.pth"
        path.write_bytes(cut)
        with pytest.raises(ModelFileError) as info:
            load_checkpoint(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message


def test_numpy_pickle_cannot_hand_out_uninitialised_memory(tmp_path: Path):
    """numpy.ndarray((n,)) is allowed as a name (numpy's pickles mention it) but not as a call:
    it would return whatever the heap held as data."""
    path = tmp_path / "heap.pkl"
    path.write_bytes(pickle.PROTO + b"\x02" + _global("numpy", "ndarray")
                     + _tuple([_tuple([_int(4096)])]) + pickle.REDUCE + pickle.STOP)
    with pytest.raises(ModelFileError, match="uninitialised memory"):
        load_pickle(path)
    # and numpy's own way of pickling still loads
    array = np.arange(5.0)
    for protocol in (2, 4):
        path.write_bytes(pickle.dumps(array, protocol=protocol))
        np.testing.assert_array_equal(load_pickle(path), array)
