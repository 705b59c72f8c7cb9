"""Reading PyTorch checkpoints and numpy pickles without torch, and refusing unsafe pickles."""
from __future__ import annotations

import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from densehead.checkpoint import (UnsafePickleError, load_checkpoint, load_pickle, load_torch,
                                  loads_pickle)

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
