"""The judge: a slow, obviously-correct numpy forward pass of 3DDFA_V2's MobileNetV1.

Written to mirror the PyTorch module literally (NCHW, explicit symmetric zero padding,
im2col convolution, batch norm applied as its own step in eval mode) and to share nothing
with densehead.weights.compile. Computes in float64 and returns the *normalised* 62 parameters.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-5

# (name, stride) in forward order, as in 3DDFA_V2 models/mobilenet_v1.py
BLOCKS = [
    ("dw2_1", 1), ("dw2_2", 2),
    ("dw3_1", 1), ("dw3_2", 2),
    ("dw4_1", 1), ("dw4_2", 2),
    ("dw5_1", 1), ("dw5_2", 1), ("dw5_3", 1), ("dw5_4", 1), ("dw5_5", 1), ("dw5_6", 2),
    ("dw6", 1),
]


def conv2d(x: np.ndarray, w: np.ndarray, stride: int, padding: int, groups: int = 1) -> np.ndarray:
    """torch.nn.functional.conv2d for one image: x (C, H, W), w (O, C // groups, kh, kw)."""
    c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.zeros((c, h + 2 * padding, wd + 2 * padding))
    xp[:, padding:padding + h, padding:padding + wd] = x
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (wd + 2 * padding - kw) // stride + 1
    # patches[c, i, j, y, x] = xp[c, y*stride + i, x*stride + j]
    patches = np.empty((c, kh, kw, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patches[:, i, j] = xp[:, i:i + stride * oh:stride, j:j + stride * ow:stride]
    out = np.empty((o, oh, ow))
    og = o // groups
    for g in range(groups):
        cols = patches[g * cg:(g + 1) * cg].reshape(cg * kh * kw, oh * ow)
        kernels = w[g * og:(g + 1) * og].reshape(og, cg * kh * kw)
        out[g * og:(g + 1) * og] = (kernels @ cols).reshape(og, oh, ow)
    return out


def batch_norm(x: np.ndarray, sd: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    mean = sd[prefix + ".running_mean"].astype(np.float64)[:, None, None]
    var = sd[prefix + ".running_var"].astype(np.float64)[:, None, None]
    gamma = sd[prefix + ".weight"].astype(np.float64)[:, None, None]
    beta = sd[prefix + ".bias"].astype(np.float64)[:, None, None]
    return (x - mean) / np.sqrt(var + EPS) * gamma + beta


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def forward(sd: dict[str, np.ndarray], image_hwc: np.ndarray) -> np.ndarray:
    """image_hwc: (120, 120, 3) already normalised; returns the 62 normalised params."""
    x = np.asarray(image_hwc, np.float64).transpose(2, 0, 1)
    w = lambda k: sd[k].astype(np.float64)  # noqa: E731
    x = relu(batch_norm(conv2d(x, w("conv1.weight"), 2, 1), sd, "bn1"))
    for name, stride in BLOCKS:
        x = conv2d(x, w(f"{name}.conv_dw.weight"), stride, 1, groups=x.shape[0])
        x = relu(batch_norm(x, sd, f"{name}.bn_dw"))
        x = conv2d(x, w(f"{name}.conv_sep.weight"), 1, 0)
        x = relu(batch_norm(x, sd, f"{name}.bn_sep"))
    pooled = x.mean(axis=(1, 2))
    return w("fc_param.weight") @ pooled + w("fc_param.bias")


def random_state_dict(widen: float, seed: int = 0) -> dict[str, np.ndarray]:
    """A state dict of MobileNetV1 at ``widen`` with random weights and BN statistics
    (scaled so that activations stay O(1) through the depth)."""
    rng = np.random.default_rng(seed)
    sd: dict[str, np.ndarray] = {}

    def conv(key: str, o: int, i: int, k: int) -> None:
        sd[key] = (rng.standard_normal((o, i, k, k)) * np.sqrt(2.0 / (i * k * k))).astype(np.float32)

    def bn(prefix: str, c: int) -> None:
        sd[prefix + ".weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        sd[prefix + ".bias"] = rng.uniform(-0.2, 0.2, c).astype(np.float32)
        sd[prefix + ".running_mean"] = rng.uniform(-0.2, 0.2, c).astype(np.float32)
        sd[prefix + ".running_var"] = rng.uniform(0.5, 2.0, c).astype(np.float32)
        sd[prefix + ".num_batches_tracked"] = np.array(1000, np.int64)

    channels = [int(c * widen) for c in
                (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)]
    conv("conv1.weight", channels[0], 3, 3)
    bn("bn1", channels[0])
    for (name, _), cin, cout in zip(BLOCKS, channels[:-1], channels[1:]):
        conv(f"{name}.conv_dw.weight", cin, 1, 3)
        bn(f"{name}.bn_dw", cin)
        conv(f"{name}.conv_sep.weight", cout, cin, 1)
        bn(f"{name}.bn_sep", cout)
    last = channels[-1]
    sd["fc_param.weight"] = (rng.standard_normal((62, last)) / np.sqrt(last)).astype(np.float32)
    sd["fc_param.bias"] = rng.uniform(-0.1, 0.1, 62).astype(np.float32)
    sd["fc_lm.weight"] = (rng.standard_normal((136, last)) / np.sqrt(last)).astype(np.float32)
    sd["fc_lm.bias"] = np.zeros(136, np.float32)
    return sd
