"""精防命令 The composition package on top: the ``jingfang`` command, its shared options, the demo and
the text tables. It may use every other package; nothing imports it (docs/ARCHITECTURE.md, "Layers").
"""
