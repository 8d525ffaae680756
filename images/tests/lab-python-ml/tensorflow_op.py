"""TensorFlow imports and computes a tiny op correctly."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf

a = tf.constant([[1.0, 2.0], [3.0, 4.0]])
s = float(tf.reduce_sum(tf.matmul(a, a)).numpy())
assert s == 54.0, s
print(f"tensorflow {tf.__version__}: sum(a @ a) = {s}")
