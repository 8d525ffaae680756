#!/bin/bash
# Legacy user step: only acts when the name is unknown, whatever its uid.
if ! id "$CLUSTER_USER" >/dev/null 2>&1; then
    groupadd -g "$CLUSTER_GROUP_ID" "$CLUSTER_GROUP_NAME"
    useradd -u "$CLUSTER_USER_ID" -g "$CLUSTER_GROUP_ID" -s /bin/bash -m -d "/home/$CLUSTER_USER" "$CLUSTER_USER"
    echo "$CLUSTER_USER:$CLUSTER_USER" | chpasswd
    usermod -aG sudo,adm,root "$CLUSTER_USER"
    echo "$CLUSTER_USER ALL=(ALL) NOPASSWD: ALL" > /etc/sudoers
    touch "/home/$CLUSTER_USER/.bashrc"
fi
