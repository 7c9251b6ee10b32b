"""Image-folder corpora: the classes and files keras.utils.image_dataset_from_directory finds.

A corpus is a folder with one sub-folder per class. The walk, the extensions and the
hidden-file rules are Keras's, so the job reads exactly the images Keras would, and
every other file is listed to be rejected with its reason, not dropped unseen.
"""

from __future__ import annotations

import os

import numpy as np

from transforms import storage
from transforms.sources import open_file

# What keras.utils.image_dataset_from_directory indexes (ALLOWLIST_FORMATS in
# keras/src/utils/image_dataset_utils.py), compared in lower case. Other files in the class
# folders (README.txt, .webp, .tiff, ...) are rejected with the reason, so the images read
# are the ones Keras reads and nothing is dropped unseen; hidden ones (.DS_Store) are skipped.
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def is_image_name(path: str) -> bool:
    return path.rsplit("/", 1)[-1].lower().endswith(IMAGE_SUFFIXES)


def class_folders(root: str) -> list[tuple[str, str]]:
    """(label, folder) for each class of an image-folder corpus, as Keras finds them.

    The classes are root's sub-folders whose names do not start with "."; files directly
    in root belong to no class.
    """
    root = root.rstrip("/")
    if os.path.isdir(root):
        names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
        return [(d, os.path.join(root, d)) for d in names]
    # Object stores have no folders to list: this one listing walks every object.
    found = storage.match(storage.join(root, "**"))
    rel = (p[len(root) + 1 :] for p in found)
    labels = sorted({r.split("/", 1)[0] for r in rel if "/" in r and not r.startswith(".")})
    return [(label, storage.join(root, label)) for label in labels]


def empty_class_folders(root: str) -> list[str]:
    """Labels of class folders with no file in them (local disk; object stores have no empty folders).

    Keras lists such a folder as a class with no images; the job has no record of it, so
    it is not a class of the output.
    """
    return [label for label, folder in class_folders(root) if os.path.isdir(folder)
            and not any(not name.startswith(".") for _top, _dirs, files in os.walk(folder) for name in files)]


def class_images(label: str, folder: str) -> list[tuple[str, str]]:
    """(label, path) of each file under a class folder, nested ones included, sorted.

    A walk of the folder as Keras's index_directory walks it: symlinked sub-folders are
    not followed, hidden sub-folders are. Of the files whose names do not end in one of
    IMAGE_SUFFIXES (any letter case), which Keras drops, hidden ones are skipped and the
    rest listed, for `read_image_files` to reject with the reason.
    """
    if os.path.isdir(folder):
        found = [os.path.join(top, name) for top, _dirs, files in os.walk(folder) for name in files]
    else:
        found = storage.match(storage.join(folder, "**"))
    return [(label, p) for p in sorted(found) if is_image_name(p) or not p.rsplit("/", 1)[-1].startswith(".")]


def _not_listed(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    ext = os.path.splitext(name)[1] or "no extension"
    return (f"not read: {ext} is not one of the image extensions keras.utils.image_dataset_from_directory "
            f"reads ({' '.join(IMAGE_SUFFIXES)})")


def read_image_files(files: list[tuple[str, str]]) -> dict:
    """Raw image batch from (label, path) files of an image-folder corpus (bytes unchanged)."""
    blobs = []
    errors = np.full(len(files), None, dtype=object)
    for i, (_, path) in enumerate(files):
        if not is_image_name(path):
            blobs.append(b"")
            errors[i] = _not_listed(path)
            continue
        try:
            with open_file(path) as f:
                blobs.append(f.read())
        except OSError as e:
            blobs.append(b"")
            errors[i] = f"cannot read the file ({type(e).__name__}: {e})"
    return {
        "source": np.asarray([p for _, p in files], dtype=object),
        "row": np.full(len(files), -1, np.int64),
        "id": None,
        "label": np.asarray([label for label, _ in files], dtype=object),
        "image": np.asarray(blobs + [None], dtype=object)[:-1],
        "errors": errors,
    }


