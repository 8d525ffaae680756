#!/bin/bash
# Legacy: setup, then the command string through su and a second bash.
bash /opt/lab/setup.sh
cd "/home/$CLUSTER_USER"
su "$CLUSTER_USER" -c "source ~/.bashrc && $1"
