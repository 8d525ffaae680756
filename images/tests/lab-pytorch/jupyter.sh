# Jupyter Lab is there and starts far enough to print its version.
set -eu
v=$(jupyter lab --version)
echo "jupyter lab $v"
python -c 'import ipykernel, notebook, ipywidgets'
