# python and pip are the virtual environment's, first on PATH, and consistent.
set -eu
venv=/opt/venv
[ "$(command -v python)" = "$venv/bin/python" ] || { echo "python is $(command -v python), not $venv/bin/python"; exit 1; }
[ "$(command -v pip)" = "$venv/bin/pip" ] || { echo "pip is $(command -v pip), not $venv/bin/pip"; exit 1; }
prefix=$(python -c 'import sys; print(sys.prefix)')
[ "$prefix" = "$venv" ] || { echo "sys.prefix is $prefix"; exit 1; }
python -m pip check
echo "venv $venv on PATH; pip check clean"
