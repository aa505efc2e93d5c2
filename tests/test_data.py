"""hgzoo.data: PaddleClas's preprocessing (against the real ppcls ops), decoding, datasets, loaders."""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import reference_python
from image_samples import photos, write_photo_jpegs, write_special_images
from torchvision.transforms import v2

from hgzoo.data import (
    FASHION_MNIST_DIR,
    FashionMNIST,
    ImageDecodeError,
    ImageFolder,
    LabelListDataset,
    LabelListError,
    Normalizer,
    PaddleCenterCrop,
    ResizeShort,
    create_eval_loader,
    create_transform,
    imagenet_class_names,
    iterate_batches,
    read_image,
    resolve_data_config,
)
from hgzoo.pretrained import PretrainedCfg

REF_SCRIPT = Path(__file__).resolve().parent / "reference" / "paddle_preprocess.py"
# PaddleClas's evaluation pipelines: (resize_short, interpolation, backend). The first is every non-HGNet
# config (ResizeImage with cv2's default interpolation, bilinear); the others are PP-HGNet's.
PIPELINES = {"cv2_bilinear_256": (256, "bilinear", "cv2"), "pil_bicubic_236": (236, "bicubic", "pil"),
             "pil_bicubic_232": (232, "bicubic", "pil")}
MEAN_TOL, MAX_TOL = 0.01, 0.1  # normalized units (1/255 of a channel is about 0.017)


# --------------------------------------------------------------------------- parity with PaddleClas

@pytest.fixture(scope="module")
def sample_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("samples")
    files = {p.stem: p for p in write_photo_jpegs(root / "photos")}
    files.update({f"special_{k}": v for k, v in write_special_images(root / "special").items()})
    return files


@pytest.fixture(scope="module")
def paddle_outputs(sample_files, tmp_path_factory) -> tuple[list[str], dict[str, np.ndarray]]:
    """PaddleClas's ops (decode, resize, crop, normalize, CHW) on every sample, for every pipeline."""
    python = reference_python()
    if python is None:
        msg = "the PaddleClas reference environment is missing: run tests/reference/setup.sh (or set HGZOO_REF_PYTHON)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    names = list(sample_files)
    out = tmp_path_factory.mktemp("paddle_pre") / "out.npz"
    configs = sum((["--config", f"{r},{i},{b}"] for r, i, b in PIPELINES.values()), [])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([python, str(REF_SCRIPT), "--out", str(out), *configs, *map(str, sample_files.values())],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"PaddleClas's preprocessing failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    data = np.load(out)
    return names, {k: data[k] for k in data.files}


@pytest.mark.parity
@pytest.mark.parametrize("pipeline", list(PIPELINES))
def test_preprocessing_matches_paddleclas_on_photos(pipeline, sample_files, paddle_outputs):
    names, ref = paddle_outputs
    c = list(PIPELINES).index(pipeline)
    resize_short, interpolation, backend = PIPELINES[pipeline]
    transform = create_transform(resize_short=resize_short, interpolation=interpolation, resize_backend=backend)
    report = []
    for i, name in enumerate(names):
        ours = transform(read_image(sample_files[name])).numpy()
        theirs = ref[f"x{c}_{i}"]
        assert ours.shape == theirs.shape == (3, 224, 224), name
        diff = np.abs(ours - theirs)
        report.append(f"{name}: mean {diff.mean():.4f} max {diff.max():.4f}")
        assert diff.mean() <= MEAN_TOL and diff.max() <= MAX_TOL, "\n".join(report)
    print(f"\n{pipeline}:\n  " + "\n  ".join(report))


@pytest.mark.parity
def test_decoding_matches_paddleclas(sample_files, paddle_outputs):
    """Gray, RGBA, CMYK, 16-bit and EXIF-rotated files decode to exactly the pixels cv2.imdecode gives."""
    names, ref = paddle_outputs
    for i, name in enumerate(names):
        ours = read_image(sample_files[name]).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(ours, ref[f"decoded{i}"], err_msg=name)


def test_parity_test_can_fail(sample_files):
    """The tolerance is tight enough to catch a wrong interpolation or a wrong crop offset."""
    img = read_image(sample_files["astronaut"])
    good = create_transform(resize_short=236, interpolation="bicubic", resize_backend="pil")(img)
    wrong_kernel = create_transform(resize_short=236, interpolation="bilinear", resize_backend="cv2")(img)
    assert (good - wrong_kernel).abs().mean() > MEAN_TOL
    shifted = v2.Compose([ResizeShort(236, "bicubic", "pil"), v2.CenterCrop(223), v2.Resize(224)])(img)
    norm = v2.Compose([v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    assert (good - norm(shifted)).abs().max() > MAX_TOL


# --------------------------------------------------------------------------- decoding

def test_special_formats_decode_upright_rgb(sample_files):
    cat = torch.from_numpy(photos(("chelsea",))["chelsea"]).permute(2, 0, 1).int()
    for key in ("jpeg", "png", "gray", "rgba", "cmyk", "png16", "exif6"):
        img = read_image(sample_files[f"special_{key}"])
        assert img.dtype == torch.uint8 and img.shape == cat.shape, key  # EXIF orientation 6 applied
        err = (img.int() - cat).abs().float().mean()
        if key == "gray":
            assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
        else:
            assert err < (0.5 if key in ("png", "rgba", "png16") else 4), f"{key}: mean error {err}"
    exact = read_image(sample_files["special_png"])
    assert torch.equal(read_image(sample_files["special_rgba"]), exact)  # alpha dropped, not composited
    assert torch.equal(read_image(sample_files["special_png16"]), exact)  # the high byte of each sample
    assert torch.equal(read_image(sample_files["special_jpeg"].read_bytes()), read_image(sample_files["special_jpeg"]))


@pytest.mark.parametrize("content,reason", [
    (b"", "empty"), (b"this is not an image at all", "not a known image format"), ("truncated", "truncated"),
])
def test_corrupt_image_error_names_the_file(tmp_path, sample_files, content, reason):
    path = tmp_path / "broken image.jpg"
    if content == "truncated":
        data = sample_files["chelsea"].read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=reason) as info:
        read_image(path)
    assert str(path) in str(info.value) and info.value.path == str(path)


def test_unreadable_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageDecodeError, match="directory"):
        read_image(tmp_path)


def test_pil_fallback_for_other_formats(tmp_path):
    from PIL import Image

    cat = photos(("chelsea",))["chelsea"]
    Image.fromarray(cat).save(tmp_path / "cat.bmp")
    Image.fromarray(cat).convert("L").save(tmp_path / "cat.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "cat.bmp").permute(1, 2, 0).numpy(), cat)
    gray = read_image(tmp_path / "cat.tif")
    assert gray.shape == (3, *cat.shape[:2]) and torch.equal(gray[0], gray[2])
    wide = cat[..., 0].astype(np.uint16) * 256 + 255
    Image.fromarray(wide).save(tmp_path / "wide.tif")  # 16-bit grayscale
    np.testing.assert_array_equal(read_image(tmp_path / "wide.tif")[1].numpy(), cat[..., 0])
    frames = [Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert read_image(tmp_path / "anim.gif").shape == (3, 20, 30)  # the first frame, as cv2.imdecode gives


# --------------------------------------------------------------------------- transforms

def test_resize_and_crop_arithmetic():
    """PaddleClas: long side round(long * short / min), crop offset (dim - crop) // 2."""
    assert ResizeShort(256).output_size(300, 451) == (256, 385)  # 384.85 → 385 (torchvision's Resize: 384)
    assert ResizeShort(232).output_size(375, 500) == (232, 309)  # 309.33
    assert ResizeShort(236).output_size(427, 640) == (236, 354)  # 353.72
    img = torch.arange(257 * 385, dtype=torch.int32).view(1, 257, 385)
    crop = PaddleCenterCrop(224)(img)
    assert crop[0, 0, 0].item() == (257 - 224) // 2 * 385 + (385 - 224) // 2  # (16, 80); torchvision: (16, 80)/(17, 80)
    with pytest.raises(ValueError, match="cannot crop"):
        PaddleCenterCrop(224)(torch.zeros(3, 200, 300))


def test_create_transform_follows_the_pretrained_cfg():
    cfg = PretrainedCfg("x", "t", resize_short=236, interpolation="bicubic", resize_backend="pil")
    ops = create_transform(cfg).transforms
    assert (ops[1].size, ops[1].interpolation, ops[1].backend) == (236, "bicubic", "pil")
    assert ops[2].size == (224, 224)
    assert resolve_data_config(cfg, crop_size=192)["resize_short"] == round(192 * 236 / 224)
    assert resolve_data_config(cfg, crop_size=192, crop_pct=0.875)["resize_short"] == round(192 / 0.875)
    assert resolve_data_config(None)["resize_short"] == 256
    with pytest.raises(ValueError, match="unsupported interpolation"):
        create_transform(cfg, interpolation="lanczos", resize_backend="cv2")
    with pytest.raises(ValueError, match="smaller than crop_size"):
        resolve_data_config(cfg, resize_short=200)


def test_transform_accepts_pil_arrays_and_tensors(sample_files):
    from PIL import Image

    t = create_transform()
    img = read_image(sample_files["coffee"])
    x = t(img)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert torch.equal(t(Image.open(sample_files["special_png"])), t(read_image(sample_files["special_png"])))
    assert torch.equal(t(img.permute(1, 2, 0).numpy()), x)
    u8 = create_transform(normalize=False)(img)
    assert u8.dtype == torch.uint8 and torch.allclose(Normalizer()(u8[None])[0], x, atol=1e-5)


def test_training_transform(sample_files):
    torch.manual_seed(0)
    t = create_transform(None, training=True, crop_size=160)
    outs = [t(read_image(sample_files["rocket"])) for _ in range(3)]
    assert all(o.shape == (3, 160, 160) for o in outs) and not torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("scale", [(0.08, 1.0), (0.85, 1.0), (1.0, 1.0)])
@pytest.mark.parametrize("hw", [(28, 28), (224, 300), (40, 100), (100, 40)])
def test_timm_rand_crop_draws_timms_boxes(hw, scale):
    """train_crop: timm. The same seed gives timm's own crop boxes, fallback included (scale 1 on 40 x 100 never
    fits an aspect within 3/4..4/3)."""
    import random

    from PIL import Image
    from timm.data.transforms import RandomResizedCropAndInterpolation

    from hgzoo.data import TimmRandCrop

    h, w = hw
    ratio = (3 / 4, 4 / 3)
    ours = TimmRandCrop(28, scale=scale, ratio=ratio)
    random.seed(hash(hw + scale) % 1000)
    mine = [ours.get_params(h, w) for _ in range(300)]
    random.seed(hash(hw + scale) % 1000)
    theirs = [RandomResizedCropAndInterpolation.get_params(Image.new("L", (w, h)), scale, ratio) for _ in range(300)]
    assert mine == theirs
    if scale == (1.0, 1.0) and h == w:
        assert set(mine) == {(0, 0, h, w)}  # the whole image: PaddleClas's crop never takes it


def test_timm_rand_crop_takes_more_of_a_small_image_than_paddles():
    """The reason the option exists: on 28 x 28 with areas 0.85-1, PaddleClas's truncating crop averages ~82% of
    the image and never all of it; timm's ~90%, sometimes all of it."""
    import random

    from hgzoo.data import PaddleRandCrop, TimmRandCrop

    random.seed(0)
    areas = {}
    for crop in (PaddleRandCrop, TimmRandCrop):
        boxes = [crop(28, scale=(0.85, 1.0)).get_params(28, 28) for _ in range(3000)]
        areas[crop] = [bh * bw / 28**2 for _, _, bh, bw in boxes]
    assert max(areas[PaddleRandCrop]) < 1.0 < max(areas[TimmRandCrop]) + 1e-9
    assert np.mean(areas[PaddleRandCrop]) < 0.84 < 0.88 < np.mean(areas[TimmRandCrop])
    img = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    random.seed(1)
    assert torch.equal(TimmRandCrop(28, scale=(1.0, 1.0))(img), img)  # whole image, resized to itself


# --------------------------------------------------------------------------- datasets and loaders

@pytest.fixture(scope="module")
def folder_tree(sample_files, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    for cls, names in (("cat", ["chelsea"]), ("stuff", ["coffee", "rocket"]), ("people", ["astronaut"])):
        (root / cls).mkdir()
        for n in names:
            shutil.copy(sample_files[n], root / cls / f"{n}.JPEG")
    (root / "stuff" / "notes.txt").write_text("not an image")
    return root


def test_image_folder(folder_tree):
    ds = ImageFolder(folder_tree, transform=create_transform())
    assert ds.classes == ["cat", "people", "stuff"]
    assert [Path(p).name for p, _ in ds.samples] == ["chelsea.JPEG", "astronaut.JPEG", "coffee.JPEG", "rocket.JPEG"]
    assert ds.targets == [0, 1, 2, 2]
    x, y = ds[2]
    assert x.shape == (3, 224, 224) and y == 2


def test_image_folder_integer_class_names(tmp_path, sample_files):
    for cls in ("0", "2", "10"):
        (tmp_path / cls).mkdir()
        shutil.copy(sample_files["chelsea"], tmp_path / cls / "a.jpg")
    ds = ImageFolder(tmp_path)
    assert ds.class_to_idx == {"0": 0, "2": 2, "10": 10} and ds.classes == ["0", "2", "10"]
    assert sorted(ds.targets) == [0, 2, 10] and all(int(Path(p).parent.name) == t for p, t in ds.samples)


def test_label_list(tmp_path, sample_files):
    (tmp_path / "imgs" / "sub dir").mkdir(parents=True)
    shutil.copy(sample_files["chelsea"], tmp_path / "imgs" / "sub dir" / "cat 1.jpg")
    shutil.copy(sample_files["coffee"], tmp_path / "imgs" / "coffee.jpg")
    lst = tmp_path / "val_list.txt"
    lst.write_text("imgs/sub dir/cat 1.jpg 281\n\nimgs/coffee.jpg 967\n")
    ds = LabelListDataset(lst, transform=create_transform())
    assert ds.targets == [281, 967] and len(ds) == 2
    assert ds[0][0].shape == (3, 224, 224) and ds[1][1] == 967
    other_root = LabelListDataset(lst, root=tmp_path / "elsewhere")
    assert other_root.samples[1][0] == str(tmp_path / "elsewhere" / "imgs" / "coffee.jpg")


@pytest.mark.parametrize("bad_line", ["imgs/coffee.jpg", "imgs/coffee.jpg seven", "imgs/coffee.jpg -1", " 3"])
def test_label_list_bad_line_names_its_number(tmp_path, bad_line):
    lst = tmp_path / "list.txt"
    lst.write_text(f"a.jpg 0\nb.jpg 1\n{bad_line}\nc.jpg 2\n")
    with pytest.raises(LabelListError, match=r"list\.txt:3: expected") as info:
        LabelListDataset(lst)
    assert repr(bad_line.strip()) in str(info.value)


def test_loader_reports_bad_images_and_normalizes(tmp_path, folder_tree):
    root = tmp_path / "tree"
    shutil.copytree(folder_tree, root)
    (root / "cat" / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    ds = ImageFolder(root, transform=create_transform(normalize=False))
    batches = list(iterate_batches(create_eval_loader(ds, batch_size=3, workers=1), Normalizer()))
    errors = [e for b in batches for e in b.errors]
    assert len(errors) == 1 and str(root / "cat" / "zz_broken.jpg") in errors[0]
    images = torch.cat([b.images for b in batches if b.images is not None])
    targets = torch.cat([b.targets for b in batches])
    assert images.dtype == torch.float32 and images.shape == (4, 3, 224, 224)
    assert targets.tolist() == [0, 1, 2, 2]
    direct = create_transform()(read_image(root / "people" / "astronaut.JPEG"))
    torch.testing.assert_close(images[1], direct, atol=1e-5, rtol=0)


def test_imagenet_class_names_ship_with_the_package():
    names = imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench, Tinca tinca" and names[281] == "tabby, tabby cat"
    from torchvision.models import ResNet50_Weights

    tv = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    short = imagenet_class_names(short=True)
    assert sum(a.lower() != b.lower() for a, b in zip(short, tv)) == 2  # torchvision renamed two duplicates


# --------------------------------------------------------------------------- Fashion-MNIST

@pytest.fixture(scope="module")
def fashion_dir() -> Path:
    root = Path(FASHION_MNIST_DIR)
    if not (root / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST is not installed in {root}: `apt-get install -y dataset-fashion-mnist`")
    return root


def test_fashion_mnist(fashion_dir, tmp_path):
    test = FashionMNIST(train=False)
    assert len(test) == 10_000 and test.classes[0] == "T-shirt/top"
    img, label = test[0]
    assert img.shape == (1, 28, 28) and img.dtype == torch.uint8 and label == 9
    assert torch.bincount(test.targets).tolist() == [1000] * 10
    # torchvision's own reader, on uncompressed copies laid out as it expects, agrees.
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(fashion_dir / f"{name}.gz") as f:
            (raw / name).write_bytes(f.read())
    from torchvision.datasets.mnist import read_image_file, read_label_file

    assert torch.equal(read_image_file(str(raw / "t10k-images-idx3-ubyte")), test.data)
    assert torch.equal(read_label_file(str(raw / "t10k-labels-idx1-ubyte")), test.targets)
    assert torch.equal(FashionMNIST(raw, train=False).data, test.data)  # uncompressed files are read too
    to_float = v2.Compose([v2.Resize(32), v2.ToDtype(torch.float32, scale=True)])
    rgb = FashionMNIST(train=False, rgb=True, transform=to_float)
    assert rgb[0][0].shape == (3, 32, 32)
    assert len(FashionMNIST(train=True)) == 60_000


def test_fashion_mnist_missing_files_say_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        FashionMNIST(tmp_path)
