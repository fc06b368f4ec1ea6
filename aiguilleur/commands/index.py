"""`aiguilleur index [DIR]`: build or bring up to date the repository index of a
workspace, with a progress bar, and say what it holds."""

from __future__ import annotations

import sys
from pathlib import Path

from aiguilleur.config.loading import ConfigLayers, cache_dir
from aiguilleur.context.index import RepositoryIndex, store_dir


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def run_index(directory: str | None) -> int:
    root = Path(directory or ".").resolve()
    if not root.is_dir():
        print(f"aiguilleur index: {root} is not a directory", file=sys.stderr)
        return 2
    config = ConfigLayers(root).load().config
    store = store_dir(cache_dir(config), root)
    index = RepositoryIndex(root, store, private_globs=tuple(config.privacy.private))
    try:
        from tqdm import tqdm

        bar = tqdm(unit="file", desc="indexing", file=sys.stderr)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        stats = index.refresh(progress)
        bar.close()
    except ImportError:  # tqdm comes with the [local] extra
        stats = index.refresh()
    finally:
        index.close()
    print(
        f"{root}: {stats.files} files, {stats.definitions} definitions "
        f"({stats.parsed} read now, {stats.skipped} left out: private, too big or binary) "
        f"in {stats.seconds:.2f} s; stored in {store} ({_size(store) / 1e6:.1f} MB)"
    )
    return 0
