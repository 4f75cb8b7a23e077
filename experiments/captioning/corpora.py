"""Real caption corpora, each read into one `CaptionSplit`.

    split = corpora.flickr8k(data_dir, "train", image_dir=..., image_size=224)
    split.ids, split.names, split.captions   # [N] ids, [N] file names, [N][K] raw captions
    split.images                             # [N, S, S, 3] uint8 (S = image_size) or None
    split.features                           # [N, R, D] or [N, D] float32, or None

What each loader reads:

- `flickr8k(data_dir, split)`: the Flickr8k text release, `data_dir/Flickr8k.token.txt`
  (`<name>.jpg#k<TAB>caption`, 5 per image) and `data_dir/Flickr_8k.{train,dev,test}Images.txt`
  (6000 / 1000 / 1000 file names; "val" and "valid" mean "dev"). Ids are the file stems.
  $RNN_JAX_DATA/flickr8k holds these text files (not the images).
- `karpathy_json(path, split)`: Karpathy's `dataset_{coco,flickr8k,flickr30k}.json`
  (`{"images": [{"filename", "filepath" (COCO), "imgid", "cocoid" (COCO), "split",
  "sentences": [{"raw", "tokens"}]}]}`); ids are the `cocoid`s when present, else `imgid`.
  COCO's train split takes "restval" too unless `restval=False`.
- `tfds_coco(split)`: TFDS `coco_captions` (the Karpathy splits train / val / test /
  restval, COCO 2014 images); ids are COCO's image ids. TFDS downloads and prepares it
  (about 38 GB) on first use unless `download=False`.

`read_folder(folder)`: everything in one folder to caption (`--mode=caption`), its images
or its `.npy` features, with the file stems as ids.

Images (`image_dir=`): `image_folder` opens each file with Pillow, converts it to RGB and
resizes it to `image_size` x `image_size` (bilinear; the aspect ratio is not kept). Features
(`feature_dir=`): `feature_folder` reads `<feature_dir>/<stem>.npy` per image, `[R, D]`
(regions, e.g. VGG's 14 x 14 x 512 conv5 map as [196, 512]) or `[D]` (one vector). A
missing file is a one-line `UserError` naming the first missing path and the count.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Any, Sequence

import numpy as np

from experiments.common import UserError

DEFAULT_IMAGE_SIZE = 224
"""Show, Attend and Tell's input size (224 x 224, VGG's)."""

FLICKR8K_SPLITS = {"train": "Flickr_8k.trainImages.txt", "dev": "Flickr_8k.devImages.txt",
                   "val": "Flickr_8k.devImages.txt", "valid": "Flickr_8k.devImages.txt",
                   "test": "Flickr_8k.testImages.txt"}
KARPATHY_SPLITS = ("train", "val", "test", "restval")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _karpathy_split(split, what):
  split = "val" if split == "valid" else split
  if split not in KARPATHY_SPLITS:
    raise UserError(f"{what} split {split!r}: choose among {', '.join(KARPATHY_SPLITS)}")
  return split


@dataclasses.dataclass
class CaptionSplit:
  """One split of a caption corpus, images in the corpus' order.

  Attributes:
    ids: image ids (int or str): what COCO-format references and results key on.
    names: the images' file names (relative to the image folder).
    captions: the raw reference captions of each image, `[N][K]` (K may vary).
    images: `[N, S, S, 3]` uint8, resized to S = image_size, or None.
    features: precomputed CNN features, `[N, R, D]` or `[N, D]` float32, or None.
  """
  ids: list
  names: list[str]
  captions: list[list[str]]
  images: np.ndarray | None = None
  features: np.ndarray | None = None

  def __len__(self) -> int:
    return len(self.ids)


def stem(name: str) -> str:
  """A file name without its folder and extension: the key of its feature file."""
  return os.path.splitext(os.path.basename(name))[0]


def _check_limit(limit):
  if limit is not None and (not isinstance(limit, int) or limit < 1):
    raise UserError(f"limit={limit!r}: expected a positive number of images or None")


def _check_size(image_size):
  if not isinstance(image_size, int) or image_size < 1:
    raise UserError(f"image_size={image_size!r}: expected a positive number of pixels")


def _missing(paths, what):
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise UserError(f"{len(missing)} of {len(paths)} {what} missing, the first {missing[0]}")


def feature_folder(feature_dir: str, names: Sequence[str]) -> np.ndarray:
  """Precomputed features, one `<stem>.npy` per image: `[N, R, D]` or `[N, D]` float32.

  Args:
    feature_dir: the folder of `.npy` files.
    names: the images' file names (or stems); `a/b/123.jpg` reads `feature_dir/123.npy`.

  Raises:
    UserError: the folder or a file is missing (the first one and the count), or the files'
      shapes differ.
  """
  if not os.path.isdir(feature_dir):
    raise UserError(f"feature folder {feature_dir} does not exist")
  paths = [os.path.join(feature_dir, stem(n) + ".npy") for n in names]
  _missing(paths, "feature files are")
  out, shape = None, None
  for k, path in enumerate(paths):
    try:
      x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
      raise UserError(f"feature file {path} is unreadable: {e}") from None
    if x.ndim not in (1, 2):
      raise UserError(f"feature file {path} has shape {x.shape}: expected [R, D] or [D]")
    if out is None:
      shape = x.shape
      out = np.empty((len(paths), *shape), np.float32)  # [N, R, D] or [N, D]
    elif x.shape != shape:
      raise UserError(f"feature file {path} has shape {x.shape}, {paths[0]} {shape}: all "
                      "must agree")
    out[k] = x
  if out is None:
    return np.zeros((0, 0), np.float32)
  return out


def image_folder(image_dir: str, names: Sequence[str],
                 image_size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
  """Images read with Pillow, as RGB, resized to a square: `[N, S, S, 3]` uint8.

  Args:
    image_dir: the folder the names are relative to.
    names: file names (or relative paths, e.g. COCO's `val2014/COCO_val2014_...jpg`).
    image_size: S, the side of the resized square (bilinear, aspect ratio not kept).

  Raises:
    UserError: the folder or a file is missing (the first one and the count), or an image
      is unreadable.
  """
  _check_size(image_size)
  if not os.path.isdir(image_dir):
    raise UserError(f"image folder {image_dir} does not exist")
  paths = [os.path.join(image_dir, n) for n in names]
  _missing(paths, "image files are")
  out = np.empty((len(paths), image_size, image_size, 3), np.uint8)  # [N, S, S, 3]
  for k, path in enumerate(paths):
    out[k] = _read_image(path, image_size)
  return out


def read_folder(folder: str, image_size: int = DEFAULT_IMAGE_SIZE
                ) -> tuple[list[str], np.ndarray, bool]:
  """Everything to caption in a folder: its images, or its `.npy` feature files.

  Args:
    folder: holds images (`IMAGE_EXTENSIONS`, any case) or `.npy` features, not both.
    image_size: the side of the resized images.

  Returns:
    (stems, inputs, is_images), sorted by file name: the file stems (the image ids of the
    results), then `[N, S, S, 3]` uint8 images (is_images True) or `[N, R, D]` / `[N, D]`
    float32 features (False).

  Raises:
    UserError: the folder is missing, holds neither or both kinds, or two files share a stem.
  """
  if not os.path.isdir(folder):
    raise UserError(f"folder {folder} does not exist")
  files = sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)))
  images = [f for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
  features = [f for f in files if f.endswith(".npy")]
  if images and features:
    raise UserError(f"{folder} holds both images ({images[0]}) and .npy features "
                    f"({features[0]}): keep one kind")
  chosen = images or features
  if not chosen:
    raise UserError(f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}) and no .npy "
                    "features")
  stems = [stem(f) for f in chosen]
  _check_distinct_stems(stems, folder)
  if images:
    return stems, image_folder(folder, images, image_size), True
  return stems, feature_folder(folder, features), False


def _check_distinct_stems(stems, folder):
  seen = set()
  for s in stems:
    if s in seen:
      raise UserError(f"{folder}: two files are named {s!r} (their stem is the image id)")
    seen.add(s)


def _read_image(path, image_size):
  from PIL import Image  # noqa: PLC0415
  try:
    with Image.open(path) as im:
      return np.asarray(_square(im, image_size))
  except OSError as e:
    raise UserError(f"image {path} is unreadable: {e}") from None


def _square(im, image_size):
  from PIL import Image  # noqa: PLC0415
  return im.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)


def _attach(split: CaptionSplit, image_dir, feature_dir, image_size, files=None):
  files = split.names if files is None else files
  if image_dir is not None:
    split.images = image_folder(image_dir, files, image_size)
  if feature_dir is not None:
    split.features = feature_folder(feature_dir, files)
  return split


def _read_lines(path):
  try:
    with open(path, encoding="utf-8") as f:
      return f.read().splitlines()
  except OSError as e:
    raise UserError(f"{path}: {e.strerror or e}") from None


def flickr8k(data_dir: str, split: str, *, image_dir: str | None = None,
             feature_dir: str | None = None, image_size: int = DEFAULT_IMAGE_SIZE,
             limit: int | None = None) -> CaptionSplit:
  """Flickr8k from its text release (see the module docstring).

  Args:
    data_dir: the folder of `Flickr8k.token.txt` and `Flickr_8k.*Images.txt`.
    split: "train" (6000 images), "dev" ("val", "valid") (1000), "test" (1000).
    image_dir: the folder of the JPEGs (`Flicker8k_Dataset/`), or None for no images.
    feature_dir: the folder of `<stem>.npy` features, or None.
    image_size: the side of the resized images.
    limit: the first this many images of the split, or None for all.

  Returns:
    A `CaptionSplit` in the split file's order; ids are the file stems, names the file
    names, five captions each (in the order #0 .. #4).
  """
  if split not in FLICKR8K_SPLITS:
    raise UserError(f"flickr8k split {split!r}: choose among train, dev (val, valid), test")
  _check_limit(limit)
  names = [n.strip() for n in _read_lines(os.path.join(data_dir, FLICKR8K_SPLITS[split]))
           if n.strip()][:limit]
  captions: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
  token_file = os.path.join(data_dir, "Flickr8k.token.txt")
  for k, line in enumerate(_read_lines(token_file)):
    if not line.strip():
      continue
    key, sep, caption = line.partition("\t")
    name, hash_, number = key.rpartition("#")
    if not sep or not hash_ or not number.isdigit():
      raise UserError(f"{token_file}:{k + 1}: expected '<name>.jpg#<k><TAB><caption>', got "
                      f"{line[:60]!r}")
    captions[name].append((int(number), caption))
  missing = [n for n in names if n not in captions]
  if missing:
    raise UserError(f"{len(missing)} of the {split} images have no captions in {token_file}, "
                    f"the first {missing[0]}")
  out = CaptionSplit(ids=[stem(n) for n in names], names=names,
                     captions=[[c for _, c in sorted(captions[n])] for n in names])
  return _attach(out, image_dir, feature_dir, image_size)


def karpathy_json(path: str, split: str, *, image_dir: str | None = None,
                  feature_dir: str | None = None, image_size: int = DEFAULT_IMAGE_SIZE,
                  limit: int | None = None, restval: bool = True) -> CaptionSplit:
  """A split of Karpathy's `dataset_{coco,flickr8k,flickr30k}.json`.

  Args:
    path: the JSON file.
    split: "train", "val" ("valid"), "test" or "restval".
    image_dir: the folder images are under (COCO: `image_dir/<filepath>/<filename>`, e.g.
      `val2014/COCO_val2014_000000391895.jpg`; Flickr: `image_dir/<filename>`), or None.
    feature_dir: the folder of `<stem>.npy` features (the stem of `filename`), or None.
    image_size: the side of the resized images.
    limit: the first this many images of the split, or None for all.
    restval: the train split takes the "restval" images too (COCO's convention: 113287
      training images); no effect on Flickr, which has none.

  Returns:
    A `CaptionSplit` in the file's order: ids `cocoid` (COCO) or `imgid`, names the
    `filename`s, captions the sentences' "raw" text.
  """
  split = _karpathy_split(split, "Karpathy")
  _check_limit(limit)
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except OSError as e:
    raise UserError(f"{path}: {e.strerror or e}") from None
  except ValueError as e:
    raise UserError(f"{path} is not JSON: {e}") from None
  if not isinstance(data, dict) or not isinstance(data.get("images"), list):
    raise UserError(f"{path}: expected Karpathy's format, {{'images': [...]}}")
  wanted = {split, "restval"} if split == "train" and restval else {split}
  ids, names, files, captions = [], [], [], []
  for k, img in enumerate(data["images"]):
    try:
      if img["split"] not in wanted:
        continue
      image_id = img["cocoid"] if "cocoid" in img else img["imgid"]
      sentences = [s["raw"] for s in img["sentences"]]
      name = img["filename"]
    except (KeyError, TypeError) as e:
      raise UserError(f"{path}: images[{k}] lacks {e} (Karpathy's format: filename, imgid, "
                      "split, sentences with raw)") from None
    ids.append(image_id)
    names.append(name)
    files.append(os.path.join(img.get("filepath", ""), name))
    captions.append(sentences)
    if limit is not None and len(ids) == limit:
      break
  out = CaptionSplit(ids=ids, names=names, captions=captions)
  return _attach(out, image_dir, feature_dir, image_size, files)


def _text(x) -> str:
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def tfds_coco(split: str, *, data_dir: str | None = None,
              image_size: int = DEFAULT_IMAGE_SIZE, limit: int | None = None,
              restval: bool = True, download: bool = True) -> CaptionSplit:
  """TFDS `coco_captions` (COCO 2014 in the Karpathy splits), images resized.

  Args:
    split: "train", "val" ("valid"), "test" or "restval".
    data_dir: TFDS's data dir, or None for its default (`~/tensorflow_datasets`).
    image_size: the side of the resized images.
    limit: the first this many images of the split, or None for all.
    restval: the train split takes "restval" too, as `karpathy_json`.
    download: let TFDS download and prepare the dataset when it is not there.

  Returns:
    A `CaptionSplit` with ids COCO's image ids, names the file names, the captions, images.
  """
  split = _karpathy_split(split, "coco_captions")
  _check_limit(limit)
  _check_size(image_size)
  import tensorflow_datasets as tfds  # noqa: PLC0415 - a slow import
  import tensorflow_datasets.object_detection.coco_captions  # noqa: F401,PLC0415

  parts = ["train", "restval"] if split == "train" and restval else [split]
  ids: list[Any] = []
  names, captions, images = [], [], []
  for part in parts:
    try:
      source = tfds.data_source("coco_captions", split=part, data_dir=data_dir,
                                download=download)
    except Exception as e:  # noqa: BLE001 - TFDS raises several kinds for a missing dataset
      first = (str(e).strip().splitlines() or [type(e).__name__])[0]
      raise UserError(f"coco_captions ({part}) is not available under "
                      f"{data_dir or 'the TFDS default data dir'}: {first}") from None
    for k in range(len(source)):
      if limit is not None and len(ids) == limit:
        break
      ex = source[k]
      ids.append(int(ex["image/id"]))
      names.append(_text(ex["image/filename"]))
      captions.append([_text(t) for t in ex["captions"]["text"]])
      images.append(_resize_array(np.asarray(ex["image"]), image_size))
  stacked = (np.stack(images) if images else
             np.zeros((0, image_size, image_size, 3), np.uint8))  # [N, S, S, 3]
  return CaptionSplit(ids=ids, names=names, captions=captions, images=stacked)


def _resize_array(image: np.ndarray, image_size: int) -> np.ndarray:
  from PIL import Image  # noqa: PLC0415
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  return np.asarray(_square(Image.fromarray(image), image_size))
