#!/bin/bash
# Legacy: setup, then stay up (the real one ran the Python sleeper here).
bash /opt/lab/setup.sh
while true; do sleep 10; done
