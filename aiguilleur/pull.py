"""`aiguilleur pull`: download a recommended GGUF code model from Hugging Face."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from aiguilleur.backends.models import ALIASES, DEFAULT_ALIAS, find_alias
from aiguilleur.config import ConfigLayers, models_dir

log = logging.getLogger(__name__)


class PullError(Exception):
    pass


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def download(name: str | None, directory: Path, quiet_fail: bool = False) -> Path:
    """Download (resuming a partial download) and verify against the hub's SHA-256.

    Honours HF_ENDPOINT (a mirror) and HF_TOKEN like every huggingface_hub tool."""
    alias = find_alias(name) if name else DEFAULT_ALIAS
    if alias is None:
        known = ", ".join(a.alias for a in ALIASES)
        raise PullError(f"unknown model {name!r}; known: {known} (or 0.5b, 1.5b, 3b, 7b)")
    try:
        from huggingface_hub import HfApi, hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError as error:
        raise PullError("huggingface_hub is missing: pip install 'aiguilleur[local]'") from error
    import httpx

    directory.mkdir(parents=True, exist_ok=True)
    try:
        info = HfApi().get_paths_info(alias.repo, [alias.filename])
        lfs = getattr(info[0], "lfs", None) if info else None
        expected = lfs.sha256 if lfs is not None else None
        path = Path(hf_hub_download(alias.repo, alias.filename, local_dir=directory))
    except (HfHubHTTPError, httpx.HTTPError, OSError) as error:
        raise PullError(f"cannot download {alias.repo}/{alias.filename}: {error}") from error
    except Exception as error:  # offline mode, DNS failures and the like, all worded apart
        raise PullError(f"cannot download {alias.repo}/{alias.filename}: {error}") from error
    if expected and _sha256(path) != expected:
        path.unlink(missing_ok=True)
        raise PullError(f"{path.name} failed its SHA-256 check and was deleted; run pull again")
    return path


def pull(name: str | None) -> int:
    config = ConfigLayers(Path.cwd()).load().config
    try:
        path = download(name, models_dir(config))
    except PullError as error:
        print(f"aiguilleur pull: {error}")
        return 1
    print(f"downloaded {path}")
    print("aiguilleur finds it there by itself; or set it explicitly:")
    print(f'  [local]\n  model = "{path}"')
    return 0
