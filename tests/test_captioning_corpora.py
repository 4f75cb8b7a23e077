"""experiments.captioning.corpora: Flickr8k's real caption and split files (when
$RNN_JAX_DATA has them) with generated images and features, a Karpathy JSON written here,
TFDS coco_captions through tfds.testing.mock_data (no network, no files), the errors; and
experiments.captioning.attention: localisation scores on constructed maps, the figure."""

import json
import os
import types

import numpy as np
import pytest
from PIL import Image

from experiments.captioning import attention, corpora
from experiments.common import UserError

DATA = os.environ.get("RNN_JAX_DATA", "")
FLICKR = os.path.join(DATA, "flickr8k")
needs_flickr = pytest.mark.skipif(
    not os.path.exists(os.path.join(FLICKR, "Flickr8k.token.txt")),
    reason="$RNN_JAX_DATA/flickr8k is absent")

COLORS = [(255, 0, 0), (0, 128, 255), (20, 200, 40), (250, 250, 0), (90, 0, 90)]


def _write_images(folder, names, sizes=((40, 30), (17, 50), (64, 64), (33, 21), (50, 80))):
  """Solid-colour JPEGs of various sizes (the fourth grayscale)."""
  for k, name in enumerate(names):
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    w, h = sizes[k % len(sizes)]
    im = Image.new("RGB", (w, h), COLORS[k % len(COLORS)])
    if k == 3:
      im = im.convert("L")  # a grayscale JPEG comes back as RGB
    im.save(path, format="JPEG", quality=95)


def _write_features(folder, names, shape):
  os.makedirs(folder, exist_ok=True)
  for k, name in enumerate(names):
    np.save(os.path.join(folder, corpora.stem(name) + ".npy"),
            np.full(shape, k, np.float64))  # float64 on disk -> float32


@needs_flickr
def test_flickr8k_real_files_counts():
  sizes = {"train": 6000, "dev": 1000, "test": 1000}
  seen = set()
  for split, n in sizes.items():
    s = corpora.flickr8k(FLICKR, split)
    assert len(s) == len(s.names) == len(s.captions) == n
    assert all(len(c) == 5 for c in s.captions)
    assert all(isinstance(c, str) and c for caps in s.captions for c in caps)
    assert s.ids == [n[:-4] for n in s.names] and s.images is None and s.features is None
    seen |= set(s.ids)
  assert len(seen) == 8000
  val = corpora.flickr8k(FLICKR, "val", limit=3)
  assert val.names == corpora.flickr8k(FLICKR, "dev").names[:3]
  assert corpora.flickr8k(FLICKR, "valid", limit=3).names == val.names
  first = corpora.flickr8k(FLICKR, "test", limit=1)
  with open(os.path.join(FLICKR, "Flickr8k.token.txt"), encoding="utf-8") as f:
    expected = [line.rstrip("\n").split("\t", 1)[1] for line in f
                if line.startswith(first.names[0] + "#")]
  assert first.captions[0] == expected


@needs_flickr
def test_flickr8k_images_and_features(tmp_path):
  names = corpora.flickr8k(FLICKR, "train", limit=5).names
  _write_images(str(tmp_path / "images"), names)
  _write_features(str(tmp_path / "regions"), names, (6, 4))
  s = corpora.flickr8k(FLICKR, "train", limit=5, image_dir=str(tmp_path / "images"),
                       feature_dir=str(tmp_path / "regions"), image_size=24)
  assert s.images.shape == (5, 24, 24, 3) and s.images.dtype == np.uint8
  for k in (0, 1, 2, 4):  # solid colours survive JPEG and resizing
    np.testing.assert_allclose(s.images[k].reshape(-1, 3).mean(0), COLORS[k], atol=6)
  assert np.ptp(s.images[3].astype(int), axis=-1).max() <= 2  # grayscale -> R = G = B
  assert s.features.shape == (5, 6, 4) and s.features.dtype == np.float32
  np.testing.assert_array_equal(s.features[:, 0, 0], np.arange(5))
  _write_features(str(tmp_path / "pooled"), names, (7,))
  pooled = corpora.flickr8k(FLICKR, "train", limit=5, feature_dir=str(tmp_path / "pooled"))
  assert pooled.features.shape == (5, 7) and pooled.images is None
  os.remove(tmp_path / "images" / names[2])
  os.remove(tmp_path / "images" / names[4])
  with pytest.raises(UserError, match=f"2 of 5 image files are missing, the first "
                     f".*{names[2]}"):
    corpora.flickr8k(FLICKR, "train", limit=5, image_dir=str(tmp_path / "images"))


def test_read_folder(tmp_path):
  names = ["b.jpg", "a.PNG", "c.jpeg"]
  _write_images(str(tmp_path / "imgs"), names)
  (tmp_path / "imgs" / "notes.txt").write_text("ignored")
  stems, inputs, is_images = corpora.read_folder(str(tmp_path / "imgs"), 8)
  assert (stems, inputs.shape, inputs.dtype, is_images) == (["a", "b", "c"], (3, 8, 8, 3),
                                                            np.uint8, True)
  np.testing.assert_allclose(inputs[1].reshape(-1, 3).mean(0), COLORS[0], atol=6)  # b.jpg
  _write_features(str(tmp_path / "feats"), ["y.jpg", "x.jpg"], (4, 2))
  stems, inputs, is_images = corpora.read_folder(str(tmp_path / "feats"))
  assert (stems, inputs.shape, is_images) == (["x", "y"], (2, 4, 2), False)
  assert inputs[0, 0, 0] == 1  # x.npy was written second
  _write_features(str(tmp_path / "imgs"), ["z.jpg"], (3,))
  _fails(lambda: corpora.read_folder(str(tmp_path / "imgs")), "both images .* and .npy")
  (tmp_path / "empty").mkdir()
  _fails(lambda: corpora.read_folder(str(tmp_path / "empty")), "holds no images")
  _write_images(str(tmp_path / "twins"), ["a.jpg", "a.png"])
  _fails(lambda: corpora.read_folder(str(tmp_path / "twins")), "two files are named 'a'")


def _karpathy(tmp_path):
  images = []
  splits = ["train", "restval", "val", "test", "train", "restval", "test"]
  for k, split in enumerate(splits):
    folder = "train2014" if split == "train" else "val2014"
    images.append({"filepath": folder, "filename": f"COCO_{folder}_{k:012d}.jpg",
                   "imgid": k, "cocoid": 1000 + k, "split": split,
                   "sentences": [{"raw": f"Image {k} caption {j}.", "tokens": [],
                                  "imgid": k, "sentid": 10 * k + j} for j in range(k % 3 + 1)]})
  path = tmp_path / "dataset_coco.json"
  path.write_text(json.dumps({"images": images, "dataset": "coco"}))
  return str(path), images


def test_karpathy_json(tmp_path):
  path, images = _karpathy(tmp_path)
  train = corpora.karpathy_json(path, "train")
  assert train.ids == [1000, 1001, 1004, 1005]  # restval joins train by default
  assert corpora.karpathy_json(path, "train", restval=False).ids == [1000, 1004]
  assert corpora.karpathy_json(path, "restval").ids == [1001, 1005]
  test = corpora.karpathy_json(path, "test")
  assert test.ids == [1003, 1006] and test.names == [images[3]["filename"],
                                                     images[6]["filename"]]
  assert test.captions == [["Image 3 caption 0."], ["Image 6 caption 0."]]
  assert corpora.karpathy_json(path, "val").captions == [[f"Image 2 caption {j}." for j in
                                                         range(3)]]
  assert corpora.karpathy_json(path, "train", limit=3).ids == [1000, 1001, 1004]
  assert corpora.karpathy_json(path, "valid").ids == [1002]
  files = [os.path.join(i["filepath"], i["filename"]) for i in images]
  _write_images(str(tmp_path / "coco"), files)
  _write_features(str(tmp_path / "feats"), [i["filename"] for i in images], (3, 2))
  val = corpora.karpathy_json(path, "val", image_dir=str(tmp_path / "coco"),
                              feature_dir=str(tmp_path / "feats"), image_size=8)
  assert val.images.shape == (1, 8, 8, 3) and val.features.shape == (1, 3, 2)
  np.testing.assert_allclose(val.images[0].reshape(-1, 3).mean(0), COLORS[2], atol=6)
  assert val.features[0, 0, 0] == 2
  # Flickr's files have no cocoid and no filepath: ids are imgid, images image_dir/filename.
  flickr = tmp_path / "dataset_flickr8k.json"
  flickr.write_text(json.dumps({"images": [
      {"filename": "1_a.jpg", "imgid": 0, "split": "test", "sentences": [{"raw": "A dog."}]},
      {"filename": "2_b.jpg", "imgid": 1, "split": "train", "sentences": [{"raw": "A cat."}]}]}))
  _write_images(str(tmp_path / "flickr"), ["1_a.jpg"])
  s = corpora.karpathy_json(str(flickr), "test", image_dir=str(tmp_path / "flickr"),
                            image_size=4)
  assert (s.ids, s.names, s.captions, s.images.shape) == ([0], ["1_a.jpg"], [["A dog."]],
                                                         (1, 4, 4, 3))


def _fails(fn, message):
  with pytest.raises(UserError, match=message) as e:
    fn()
  assert "\n" not in str(e.value)


def test_corpora_errors(tmp_path):
  path, _ = _karpathy(tmp_path)
  _fails(lambda: corpora.karpathy_json(path, "dev"), "Karpathy split 'dev'")
  _fails(lambda: corpora.karpathy_json(str(tmp_path / "none.json"), "val"), "none.json")
  _fails(lambda: corpora.karpathy_json(path, "val", limit=0), "limit=0")
  _fails(lambda: corpora.karpathy_json(path, "val", image_dir=str(tmp_path / "nope")),
         "image folder .*nope does not exist")
  _fails(lambda: corpora.karpathy_json(path, "train", feature_dir=str(tmp_path)),
         "4 of 4 feature files are missing, the first .*000000000000.npy")
  _fails(lambda: corpora.flickr8k(str(tmp_path), "train"), "Flickr_8k.trainImages.txt")
  _fails(lambda: corpora.flickr8k(str(tmp_path), "validation"), "flickr8k split 'validation'")
  _fails(lambda: corpora.tfds_coco("dev"), "coco_captions split 'dev'")
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps({"images": [{"filename": "x.jpg", "split": "val"}]}))
  _fails(lambda: corpora.karpathy_json(str(bad), "val"), "images\\[0\\] lacks")
  bad.write_text("[1, 2]")
  _fails(lambda: corpora.karpathy_json(str(bad), "val"), "expected Karpathy's format")
  (tmp_path / "Flickr_8k.trainImages.txt").write_text("a.jpg\nb.jpg\n")
  (tmp_path / "Flickr8k.token.txt").write_text("a.jpg#0\tA dog .\n")
  _fails(lambda: corpora.flickr8k(str(tmp_path), "train"),
         "1 of the train images have no captions.*b.jpg")
  (tmp_path / "Flickr8k.token.txt").write_text("a.jpg A dog .\n")
  _fails(lambda: corpora.flickr8k(str(tmp_path), "train"), "Flickr8k.token.txt:1: expected")
  feats = tmp_path / "mixed"
  _write_features(str(feats), ["a.jpg"], (2, 3))
  np.save(feats / "b.npy", np.zeros(3))
  _fails(lambda: corpora.feature_folder(str(feats), ["a.jpg", "b.jpg"]),
         "b.npy has shape \\(3,\\).*all must agree")
  (tmp_path / "broken").mkdir()
  (tmp_path / "broken" / "a.jpg").write_bytes(b"not a jpeg")
  _fails(lambda: corpora.image_folder(str(tmp_path / "broken"), ["a.jpg"], 8),
         "image .*a.jpg is unreadable")


def test_tfds_coco_through_mock_data(tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  from tensorflow_datasets.object_detection import coco
  try:
    import tensorflow  # noqa: F401
  except ImportError:  # the builder names tf.int64 in its features; the mock needs no more
    monkeypatch.setattr(coco, "tf", types.SimpleNamespace(int64=np.int64))
  with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
    val = corpora.tfds_coco("val", data_dir=str(tmp_path), image_size=16)
    train = corpora.tfds_coco("train", data_dir=str(tmp_path), image_size=16, limit=4)
    only = corpora.tfds_coco("train", data_dir=str(tmp_path), image_size=16, restval=False)
  assert len(val) == 3 and val.images.shape == (3, 16, 16, 3) and val.images.dtype == np.uint8
  assert all(isinstance(i, int) for i in val.ids) and val.features is None
  assert all(isinstance(n, str) for n in val.names)
  assert all(isinstance(c, str) for caps in val.captions for c in caps)
  assert len(train) == 4 and len(only) == 3  # train + restval, limited; train alone
  assert train.ids[:3] == only.ids


# ------------------------------------------------------------------------------------------
# attention.py


def test_localisation_score_constructed_maps():
  s = 32  # a 4 x 4 grid of 8-pixel cells
  inside = np.zeros((4, 4))
  inside[1, 2] = 0.7  # rows 8..16, columns 16..24
  inside[1, 3] = 0.3  # rows 8..16, columns 24..32
  box = (16, 8, 32, 16)  # x0, y0, x1, y1: exactly those two cells
  assert attention.localisation_score(inside, box, s) == pytest.approx(1.0)
  assert attention.localisation_score(inside.T, box, s) == pytest.approx(0.0)  # x, y swapped
  assert attention.localisation_score(inside.reshape(-1), box, s) == pytest.approx(1.0)
  uniform = np.full((4, 4), 1 / 16)
  assert attention.localisation_score(uniform, (3, 5, 13, 30), s) == pytest.approx(
      10 * 25 / s ** 2)
  assert attention.localisation_score(uniform * 7, (0, 0, 100, 100), s) == pytest.approx(1)
  # A box over half of cell (0, 1) (columns 8..12 of 8..16) and all of cell (0, 0):
  alpha = np.zeros((4, 4))
  alpha[0, 1], alpha[0, 0], alpha[3, 3] = 0.5, 0.25, 0.25
  assert attention.localisation_score(alpha, (0, 0, 12, 8), s) == pytest.approx(
      0.25 + 0.5 * 0.5)
  # Two overlapping boxes: the pixels they share count once.
  a, b = (0, 0, 12, 8), (4, 0, 16, 4)  # union: cell (0,0) whole, cell (0,1) 4x8 + 4x4
  covered_01 = (4 * 8 + 4 * 4) / 64
  assert attention.localisation_score(alpha, [a, b], s) == pytest.approx(
      0.25 + 0.5 * covered_01)
  np.testing.assert_allclose(attention.region_coverage([a, b], (4, 4), s)[0, :2],
                             [1.0, covered_01])
  # A grid that does not divide the image: 3 cells of 10/3 pixels; cell 0 covers [0, 3.33).
  assert attention.localisation_score(np.eye(3)[0].reshape(1, 3), (0, 0, 2, 10), 10,
                                      grid=(1, 3)) == pytest.approx(2 / (10 / 3))


def test_localisation_scores_batched():
  rng = np.random.default_rng(0)
  alphas = rng.random((5, 3, 4))  # [U, h, w], a grid that is not square
  boxes = [(0, 0, 12, 12), None, [(0, 0, 6, 6), (3, 3, 12, 9)], [], (6, 0, 12, 12)]
  got = attention.localisation_scores(alphas, boxes, 12)
  assert got.shape == (5,) and np.isnan(got[1]) and np.isnan(got[3])
  for u in (0, 2, 4):
    assert got[u] == pytest.approx(attention.localisation_score(alphas[u], boxes[u], 12))
  flat = attention.localisation_scores(alphas.reshape(5, 12), boxes, 12, grid=(3, 4))
  np.testing.assert_allclose(flat, got)
  with pytest.raises(ValueError, match="not a square grid"):
    attention.localisation_scores(alphas.reshape(5, 12), boxes, 12)
  with pytest.raises(ValueError, match="5 attention maps but 2"):
    attention.localisation_scores(alphas, boxes[:2], 12)


def test_upsample_is_bilinear_and_keeps_the_range():
  alpha = np.array([[0.0, 1.0], [1.0, 0.0]])
  up = attention.upsample(alpha, (4, 4))
  assert up.shape == (4, 4) and up.min() >= 0 and up.max() <= 1
  assert up[0, 0] == 0 and up[0, 3] == 1  # corner cells keep their values (clamped edges)
  # pixel 1's centre sits a quarter of the way from cell 0's centre to cell 1's
  assert up[1, 1] == pytest.approx(0.25 * 0.75 + 0.75 * 0.25)
  blurred = attention.upsample(np.eye(4), (32, 32), sigma=2.0)
  assert blurred.max() < 1 and blurred.min() >= 0


def test_attention_grid_writes_a_png(tmp_path):
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, (48, 64, 3), np.uint8)
  words = ["a", "dog", "on", "grass", "<eos>", "x", "y"]
  alphas = rng.random((9, 14 * 14))  # [U, R], more steps than words
  path = attention.attention_grid(image, words, alphas, str(tmp_path / "fig" / "att.png"),
                                  title="a dog on grass", columns=4)
  with Image.open(path) as im:
    assert im.format == "PNG" and im.size[0] > im.size[1] > 0
    pixels = np.asarray(im.convert("RGB"))
  # 8 panels in 2 rows of 4: both rows hold drawn (non-white) pixels in each column band.
  h, w = pixels.shape[:2]
  drawn = (pixels < 250).any(-1)
  for r in range(2):
    for c in range(4):
      band = drawn[int(h * (0.1 + 0.45 * r)):int(h * (0.45 + 0.45 * r)),
                   int(w * c / 4):int(w * (c + 1) / 4)]
      assert band.mean() > 0.1, (r, c)
  with pytest.raises(ValueError, match="for 7 words"):
    attention.attention_grid(image, words, alphas[:3], str(tmp_path / "x.png"))
