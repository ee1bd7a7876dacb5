"""A wheelhouse for an air-gapped GPU machine: Python packages downloaded where a
package index is reachable, packed into parts of a bounded size, unpacked and
used (on PYTHONPATH, or by an offline ``pip install``) where there is none.

Modules: ``spec`` (requirement lists, profiles), ``closure`` (are all
requirements met on the target), ``build`` (download, install, strip, pack),
``parts`` (pack into / unpack from ``part-NN.tar.xz``), ``envcheck`` (what a
run sees), ``cli`` (``python -m tools.wheelhouse``). Shell drivers:
``unpack.sh`` and ``run.sh``.
"""
