"""排版服务进程 Imported by the fork server of the render processes (``registry.pdf.render_pool``,
multiprocessing's ``forkserver`` preload): WeasyPrint imported once there, every render process
forked from it with WeasyPrint in memory (and nothing of the caller's)."""

import gc

from registry.pdf import preload

preload()
gc.freeze()
