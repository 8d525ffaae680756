"""The scientific stack imports, at the locked versions of numpy and torch."""
import importlib

mods = ["torch", "torchvision", "torchaudio", "numpy", "scipy", "pandas", "sklearn", "matplotlib",
        "skimage", "h5py", "seaborn", "PIL", "tqdm"]
versions = {}
for m in mods:
    versions[m] = getattr(importlib.import_module(m), "__version__", "?")
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig = plt.figure()
plt.plot([0, 1], [1, 0])
fig.canvas.draw()
print(", ".join(f"{m} {versions[m]}" for m in ("torch", "torchvision", "numpy", "scipy", "pandas", "sklearn")))
