"""On a GPU: CUDA is available to torch and a matmul runs on it."""
import os
import sys

import torch

gpu_asked = os.environ.get("LAB_TEST_GPU") == "1"
if os.environ.get("LAB_TEST_KIND") != "cuda" and not gpu_asked:
    print(f"variant {os.environ.get('LAB_TEST_VARIANT')} is not a CUDA variant")
    sys.exit(77)
if not torch.cuda.is_available():
    if gpu_asked:
        sys.exit("labkit test --gpu, but torch.cuda.is_available() is False")
    print("no GPU in this container (run `labkit test --gpu` on a GPU machine)")
    sys.exit(77)
a = torch.randn(512, 512, device="cuda")
b = (a @ a.T).sum().item()
torch.cuda.synchronize()
print(f"torch {torch.__version__} CUDA {torch.version.cuda} on {torch.cuda.get_device_name(0)}; matmul ok ({b:.1f})")
