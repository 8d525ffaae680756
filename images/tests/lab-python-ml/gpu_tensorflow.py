"""On a GPU: TensorFlow lists it and runs an op on it."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
gpu_asked = os.environ.get("LAB_TEST_GPU") == "1"
if os.environ.get("LAB_TEST_KIND") != "cuda" and not gpu_asked:
    print(f"variant {os.environ.get('LAB_TEST_VARIANT')} is not a CUDA variant")
    sys.exit(77)
import tensorflow as tf

gpus = tf.config.list_physical_devices("GPU")
if not gpus:
    if gpu_asked:
        sys.exit("labkit test --gpu, but TensorFlow lists no GPU")
    print("no GPU in this container (run `labkit test --gpu` on a GPU machine)")
    sys.exit(77)
with tf.device("/GPU:0"):
    s = float(tf.reduce_sum(tf.ones((256, 256)) @ tf.ones((256, 256))).numpy())
assert s == 256.0 ** 3, s
print(f"tensorflow {tf.__version__} sees {len(gpus)} GPU(s); op ok")
