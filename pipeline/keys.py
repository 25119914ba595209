"""Content keys: hashes of bytes and of canonical JSON (design.md, "Stages keyed by content")."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from data.cache import sha256_file as hash_file
from data.decode import frame_folder_files


def canonical_json(obj) -> str:
    """Sorted keys, no whitespace: the same object always gives the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def hash_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_json(obj) -> str:
    return hash_text(canonical_json(obj))


def hash_video(path: Path) -> str:
    """Key of a video's content: its bytes for a file; the ordered frames' bytes for a frame folder.

    Names do not enter, so a renamed file or folder keeps its key.
    """
    if path.is_dir():
        return hash_text("frames\n" + "".join(hash_file(f) + "\n" for f in frame_folder_files(path)))
    return hash_file(path)


def feature_key(video_key: str, fingerprint: str) -> str:
    """Key of one backbone's features of one video."""
    return hash_json({"video": video_key, "extractor": fingerprint})
