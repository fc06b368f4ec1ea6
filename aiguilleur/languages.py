"""Language names from file names, for prompts."""

from __future__ import annotations


def language_of(path: str) -> str:
    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    return {
        "py": "Python",
        "rs": "Rust",
        "go": "Go",
        "js": "JavaScript",
        "mjs": "JavaScript",
        "cjs": "JavaScript",
        "jsx": "JavaScript",
        "ts": "TypeScript",
        "mts": "TypeScript",
        "tsx": "TypeScript",
        "java": "Java",
        "c": "C",
        "h": "C",
        "cpp": "C++",
        "rb": "Ruby",
        "lua": "Lua",
        "sh": "shell",
    }.get(ext, "")
