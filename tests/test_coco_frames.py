"""Trap frames in COCO format: reading, the errors a bad file gets, the per-frame split,
box-aware augmentation, the dataset and the DataModule."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.paths import TEST_DATA
from PIL import Image
from torchvision.transforms import v2

from moths_framework.data.coco import CocoError, read_coco
from moths_framework.data.frame_datamodule import FrameDataModule, frame_labels
from moths_framework.data.frame_dataset import (
    FrameDataset,
    FrameSizeError,
    collate_frames,
)
from moths_framework.data.frame_transforms import default_frame_augmentation
from moths_framework.data.split import hash_split

FRAMES = TEST_DATA / "frames"
GREY, RED = (128, 128, 128), (220, 30, 30)


def _coco() -> dict:
    """Three frames: two boxes of two categories, none, one box with a species."""
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 100, "height": 80},
            {"id": 2, "file_name": "empty.png", "width": 60, "height": 40},
            {"id": 5, "file_name": "sub/c.png", "width": 50, "height": 50},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 20, 30, 15]},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [50.5, 0, 49.5, 80]},
            {
                "id": 3,
                "image_id": 5,
                "category_id": 3,
                "bbox": [0, 0, 10, 10],
                "attributes": {"species": "Aglais io", "occluded": False},
            },
            {"id": 4, "image_id": 5, "category_id": 7, "bbox": [5, 5, 5, 5], "iscrowd": 1},
        ],  # fmt: skip
        "categories": [{"id": 7, "name": "wasp"}, {"id": 3, "name": "moth"}],
    }


def _write(folder: Path, coco: dict, images: str = ".", name: str = "instances.json") -> Path:
    """``coco`` as ``folder/name``, its images (grey, each its declared size) under
    ``folder/images``."""
    folder.mkdir(parents=True, exist_ok=True)
    for image in coco["images"]:
        path = folder / images / image["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (image["width"], image["height"]), GREY).save(path)
    (folder / name).write_text(json.dumps(coco))
    return folder / name


def test_reading_gives_xyxy_boxes_categories_in_id_order_and_keeps_empty_frames(tmp_path):
    coco = read_coco(_write(tmp_path, _coco()))
    assert coco.class_names() == ("moth", "wasp")  # ids 3, 7: labels 1, 2
    a, empty, c = coco.frames
    assert (a.image_id, a.width, a.height) == (1, 100, 80)
    assert a.boxes == ((10, 20, 40, 35), (50.5, 0, 100, 80))
    assert a.category_ids == (3, 7)
    assert empty.boxes == () and empty.path == tmp_path / "empty.png"
    assert c.boxes == ((0, 0, 10, 10),)  # the crowd region is left out
    assert c.species == ("Aglais io",)
    assert frame_labels(coco, "category")[1] == [(1, 2), (), (1,)]
    assert coco.coco.getImgIds() == [1, 2, 5]  # the COCO API's index, for COCOeval


def test_the_dataset_yields_chw_floats_boxes_labels_and_image_id(tmp_path):
    coco = read_coco(_write(tmp_path, _coco()))
    names, labels = frame_labels(coco, "category")
    dataset = FrameDataset(coco.frames, labels)
    image, target = dataset[0]
    assert image.shape == (3, 80, 100) and image.dtype == torch.float32
    assert torch.allclose(image, torch.full_like(image, 128 / 255))
    assert torch.equal(target["boxes"], torch.tensor([[10, 20, 40, 35], [50.5, 0, 100, 80]]))
    assert target["labels"].tolist() == [1, 2] and target["labels"].dtype == torch.int64
    assert target["image_id"] == 1
    _, target = dataset[1]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    batch = collate_frames([dataset[0], None, dataset[1]])
    assert [t["image_id"] for t in batch.targets] == [1, 2] and batch.skipped == 1


def test_a_frame_that_does_not_decode_is_skipped_and_a_wrong_size_is_an_error(tmp_path):
    coco = read_coco(_write(tmp_path, _coco()))
    (tmp_path / "a.png").write_bytes(b"not an image")
    Image.new("RGB", (40, 60), GREY).save(tmp_path / "empty.png")  # rotated
    dataset = FrameDataset(coco.frames, frame_labels(coco, "category")[1])
    assert dataset[0] is None
    with pytest.raises(FrameSizeError, match=r"is 40x60 .* say 60x40"):
        dataset[1]


def _broken(mutate) -> dict:
    coco = _coco()
    mutate(coco)
    return coco


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["images"][0].update(file_name="gone.png"),
         r"1 of 3 image files are not in .*: gone.png"),
        (lambda c: c["annotations"][0].update(bbox=[90, 20, 30, 15]),
         r"annotations\[0\] \(id 1\): bbox \[90, 20, 30, 15\] reaches outside its 100x80 image"),
        (lambda c: c["annotations"][1].update(category_id=4),
         r"annotations\[1\] \(id 2\): category_id 4 is not in 'categories' \(declared: 3, 7\)"),
        (lambda c: c["images"][1].update(width=0),
         r"images\[1\] \(id 2\): width must be a positive integer, got 0"),
        (lambda c: c["annotations"][0].update(bbox=[10, 20, 0, 15]),
         r"bbox \[10, 20, 0, 15\] has a width or height that is not positive"),
        (lambda c: c["annotations"][0].update(image_id=9), r"image_id 9 is not in 'images'"),
        (lambda c: c["annotations"][0].pop("bbox"), r"annotations\[0\] \(id 1\) has no bbox"),
        (lambda c: c["images"][2].update(id=1), r"image id 1 is used twice"),
        (lambda c: c["images"][0].update(file_name="../a.png"), r"must lie inside the images"),
        (lambda c: c["categories"].clear(), r"'categories' is empty"),
        (lambda c: c.pop("images"), r"no 'images' list"),
    ],
)  # fmt: skip
def test_a_bad_instances_json_is_one_line_naming_the_entry(tmp_path, mutate, message):
    path = _write(tmp_path, _coco())
    path.write_text(json.dumps(_broken(mutate)))
    with pytest.raises(CocoError, match=message) as error:
        read_coco(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_missing_and_unparsable_files_are_one_line(tmp_path):
    with pytest.raises(CocoError, match=r"not found"):
        read_coco(tmp_path / "instances.json")
    (tmp_path / "instances.json").write_text('{"images": [}')
    with pytest.raises(CocoError, match=r"is not JSON \(Expecting value, line 1\)"):
        read_coco(tmp_path / "instances.json")


def test_a_box_a_rounding_error_past_the_edge_is_clipped(tmp_path):
    coco = _coco()
    coco["annotations"][1]["bbox"] = [50.5, -0.4, 50.3, 80.6]
    assert read_coco(_write(tmp_path, coco)).frames[0].boxes[1] == (50.5, 0, 100, 80)


@pytest.mark.parametrize(
    ("layout", "json_name", "images"),
    [("cvat", "annotations/instances_default.json", "images"), ("fiftyone", "labels.json", "data"),
     ("ours", "instances.json", "images")],
)  # fmt: skip
def test_the_images_folder_of_each_exporter_is_found(tmp_path, layout, json_name, images):
    root = tmp_path / layout
    _write(root, _coco(), images=images)
    (root / json_name).parent.mkdir(parents=True, exist_ok=True)
    (root / json_name).write_text(json.dumps(_coco()))
    coco = read_coco(root / json_name)
    assert coco.frames[0].path.resolve() == (root / images / "a.png").resolve()


def test_an_existing_frame_never_moves_from_train_to_val_or_test_when_frames_are_added():
    before = [f"night-1/{n:04d}.jpg" for n in range(40)]
    after = before + [f"night-2/{n:04d}.jpg" for n in range(60)]
    old, new = hash_split(before, 0.15, 42), hash_split(after, 0.15, 42)
    assert old.val and old.test and len(old.train) > 20
    assert set(old.train) <= set(new.train)
    assert all(new.phases()[i] == phase for i, phase in old.phases().items() if phase == "train")
    assert hash_split(after, 0.15, 42) == new and hash_split(after, 0.15, 7) != new


def test_flipping_mirrors_the_box_exactly_and_the_moth_with_it(tmp_path):
    image = Image.new("RGB", (100, 80), GREY)
    image.paste(RED, (10, 20, 40, 35))
    image.save(tmp_path / "a.png")
    coco = _coco()
    coco["annotations"] = coco["annotations"][:1]
    coco["images"] = coco["images"][:1]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    frames = read_coco(path).frames
    flipped, target = FrameDataset(frames, [(1,)], [v2.RandomHorizontalFlip(p=1.0)])[0]
    assert target["boxes"].tolist() == [[60, 20, 90, 35]]  # x -> 100 - x
    plain, _ = FrameDataset(frames, [(1,)])[0]
    assert torch.equal(flipped, plain.flip(-1))
    red = _red(flipped)
    assert red.nonzero().min(0).values.tolist() == [20, 60]  # rows 20.., columns 60..
    assert red.nonzero().max(0).values.tolist() == [34, 89]


def test_a_box_cropped_away_is_dropped_with_its_label(tmp_path):
    coco = _coco()
    coco["annotations"][1]["bbox"] = [0, 0, 8, 80]  # at the left edge
    frames = read_coco(_write(tmp_path, coco)).frames
    _, target = FrameDataset(frames, [(1, 2), (), (1,)], [v2.CenterCrop((80, 80))])[0]
    assert target["boxes"].tolist() == [[0, 20, 30, 35]]  # moved 10 left; the other gone
    assert target["labels"].tolist() == [1]


def _red(image: torch.Tensor) -> torch.Tensor:
    r, g, b = image
    return (r > 0.5) & (g < 0.3) & (b < 0.3)


def test_the_default_augmentation_keeps_every_box_on_its_moth(tmp_path):
    image = Image.new("RGB", (100, 80), GREY)
    image.paste(RED, (30, 20, 60, 44))
    image.save(tmp_path / "a.png")
    coco = _coco()
    coco["annotations"], coco["images"] = coco["annotations"][:1], coco["images"][:1]
    coco["annotations"][0]["bbox"] = [30, 20, 30, 24]
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    frames = read_coco(tmp_path / "instances.json").frames
    dataset = FrameDataset(frames, [(1,)], default_frame_augmentation(scale_p=0.7))
    torch.manual_seed(0)
    sizes = set()
    for _ in range(30):
        augmented, target = dataset[0]
        rows, cols = _red(augmented).nonzero().T
        (box,) = target["boxes"].tolist()
        moth = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        assert np.allclose(box, moth, atol=2.0), (box, moth)
        sizes.add(round(box[2] - box[0]))
    assert len(sizes) > 3  # the scale jitter did change the moth's size


def _frames_module(**options) -> FrameDataModule:
    return FrameDataModule(FRAMES / "instances.json", **options)


def test_the_datamodule_reads_test_data_frames_and_batches_them_as_lists():
    data = _frames_module(batch_size=4)
    assert data.classes == ("moth",) and data.num_classes == 2
    assert len(data.frames) == 88 and sum(not f.boxes for f in data.frames) >= 2
    data.setup("fit")
    split = data.split
    assert sorted(split.train + split.val + split.test) == list(range(88)) and split.val
    images, targets, skipped = next(iter(data.train_dataloader()))
    assert len(images) == len(targets) == 4 and skipped == 0
    assert all(i.shape == (3, 240, 320) for i in images)
    assert all(set(t) == {"boxes", "labels", "image_id"} for t in targets)
    val_ids = [t["image_id"] for _, targets, _ in data.val_dataloader() for t in targets]
    assert val_ids == [data.frames[i].image_id for i in split.val]


def test_label_by_species_names_the_species_and_max_side_shrinks_boxes_alike():
    data = _frames_module(label_by="species", max_side=160)
    assert "Aglais io" in data.classes and "moth" not in data.classes
    frame = data.frames[1]
    image, target = data.dataset("all")[1]
    assert image.shape == (3, 120, 160)
    assert torch.allclose(target["boxes"], torch.tensor(frame.boxes) / 2)
    names = [data.classes[label - 1] for label in target["labels"]]
    assert names == list(frame.species)


def test_label_by_species_needs_a_species_on_every_box(tmp_path):
    coco = read_coco(_write(tmp_path, copy.deepcopy(_coco())))
    with pytest.raises(CocoError, match=r"a box of a.png has no attributes.species"):
        frame_labels(coco, "species")
