"""OpenCV (headless) works on numpy arrays."""
import cv2
import numpy as np

img = np.zeros((32, 32, 3), dtype=np.uint8)
img[:, :, 2] = 255
gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
assert gray.shape == (32, 32) and int(gray[0, 0]) == 76, (gray.shape, gray[0, 0])
print(f"cv2 {cv2.__version__}, numpy {np.__version__}")
