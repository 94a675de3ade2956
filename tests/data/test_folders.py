import json
import shutil

import numpy as np
import pytest
from PIL import Image

from mess.data.folders import (
    CITYSCAPES_CLASSES,
    VOC_CLASSES,
    DataError,
    cityscapes,
    plain_folder,
    voc,
    voc_colormap,
)
from tests.data.conftest import make_cityscapes, make_plain


def _error(excinfo: pytest.ExceptionInfo, *fragments: str) -> None:
    """The error is one line that names the file (and says what is wrong)."""
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


# ----------------------------------------------------------------------------- loading


def test_cityscapes_pairs_images_with_train_id_masks(cityscapes_root):
    root, written = cityscapes_root
    source = cityscapes(root, "val")
    assert len(source) == 3 and source.class_names == CITYSCAPES_CLASSES
    assert [s.stem for s in source.samples] == sorted(written)
    for i, sample in enumerate(source.samples):
        image, mask = source.load(i)
        assert np.array_equal(image, written[sample.stem][0])
        assert np.array_equal(mask, written[sample.stem][1])


def test_cityscapes_calibration_reads_val(cityscapes_root):
    root, _ = cityscapes_root
    assert [s.image for s in cityscapes(root, "calibration").samples] == [
        s.image for s in cityscapes(root, "val").samples
    ]


def test_voc_reads_palette_indices_as_class_ids(voc_root):
    root, written = voc_root
    source = voc(root, "train")
    assert len(source) == 2 and source.class_names == VOC_CLASSES
    for i, sample in enumerate(source.samples):
        assert Image.open(sample.mask).mode == "P"  # a real palette PNG
        image, mask = source.load(i)
        assert np.array_equal(mask, written[sample.stem][1])
        # JPEG is lossy: close to what was written, on a smooth image.
        assert np.abs(image.astype(int) - written[sample.stem][0]).mean() < 4


def test_voc_calibration_reads_val_list(voc_root):
    root, _ = voc_root
    assert [s.stem for s in voc(root, "calibration").samples] == ["2007_000033"]


def test_voc_rgb_coloured_masks_map_to_class_ids(voc_root):
    root, written = voc_root
    stem = "2007_000033"
    mask = written[stem][1]
    Image.fromarray(voc_colormap()[mask]).save(root / "SegmentationClass" / f"{stem}.png")
    assert np.array_equal(voc(root, "val").load(0)[1], mask)


def test_plain_folder_with_meta_json(plain_root):
    root, written = plain_root
    source = plain_folder(root)
    assert source.class_names == ("a", "b", "c", "d", "e")
    assert [s.stem for s in source.samples] == ["x0", "x1", "x2"]
    for i, sample in enumerate(source.samples):
        image, mask = source.load(i)
        assert np.array_equal(image, written[sample.stem][0])
        assert np.array_equal(mask, written[sample.stem][1])


def test_plain_folder_reads_jpeg_images(tmp_path):
    written = make_plain(tmp_path, ["p", "q"], suffix=".jpg", class_names=list("abcde"))
    source = plain_folder(tmp_path)
    image, mask = source.load(0)
    assert np.abs(image.astype(int) - written["p"][0]).mean() < 4
    assert np.array_equal(mask, written["p"][1])


def test_plain_folder_split_layout(tmp_path):
    make_plain(tmp_path / "train", ["t0", "t1"], class_names=list("abcde"))
    make_plain(tmp_path / "val", ["v0"], class_names=list("abcde"))
    assert [s.stem for s in plain_folder(tmp_path, "train").samples] == ["t0", "t1"]
    assert [s.stem for s in plain_folder(tmp_path, "calibration").samples] == ["v0"]


def test_plain_folder_meta_json_at_root_applies_to_splits(tmp_path):
    make_plain(tmp_path / "test", ["t0"])
    (tmp_path / "meta.json").write_text(json.dumps({"class_names": list("abcdef")}))
    assert plain_folder(tmp_path, "test").num_classes == 6


def test_plain_folder_without_meta_uses_num_classes(tmp_path):
    make_plain(tmp_path, ["a"], num_classes=3)
    assert plain_folder(tmp_path, num_classes=7).class_names[-1] == "class_6"


def test_plain_folder_without_meta_infers_classes_from_masks(tmp_path):
    written = make_plain(tmp_path, ["a", "b"], num_classes=4)
    largest = max(int(m[m != 255].max()) for _, m in written.values())
    assert plain_folder(tmp_path).num_classes == largest + 1


def test_check_reads_every_sample(plain_root):
    root, _ = plain_root
    plain_folder(root).check()


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("loader", [cityscapes, voc, plain_folder])
def test_missing_root_is_an_error(tmp_path, loader):
    with pytest.raises(DataError) as excinfo:
        loader(tmp_path / "nowhere", "train")
    _error(excinfo, "data root not found", str(tmp_path / "nowhere"))


def test_missing_split_is_an_error_cityscapes(cityscapes_root):
    root, _ = cityscapes_root
    with pytest.raises(DataError) as excinfo:
        cityscapes(root, "train")
    _error(excinfo, "split 'train' not found", str(root / "leftImg8bit" / "train"))


def test_missing_split_is_an_error_voc(voc_root):
    root, _ = voc_root
    with pytest.raises(DataError) as excinfo:
        voc(root, "test")
    _error(excinfo, "split 'test' not found", "test.txt")


def test_missing_split_is_an_error_plain_folder(tmp_path):
    make_plain(tmp_path / "train", ["t0"])
    with pytest.raises(DataError) as excinfo:
        plain_folder(tmp_path, "test")
    _error(excinfo, "split 'test' not found", str(tmp_path / "test"))


def test_cityscapes_without_annotations_is_an_error(cityscapes_root):
    root, _ = cityscapes_root
    shutil.rmtree(root / "gtFine")
    with pytest.raises(DataError) as excinfo:
        cityscapes(root, "val")
    _error(excinfo, "no annotations", str(root / "gtFine" / "val"))


def test_image_without_mask_is_an_error_cityscapes(cityscapes_root):
    root, _ = cityscapes_root
    mask = root / "gtFine/val/aachen/aachen_000000_000001_gtFine_labelTrainIds.png"
    mask.unlink()
    with pytest.raises(DataError) as excinfo:
        cityscapes(root, "val")
    _error(excinfo, "image without mask", "aachen_000000_000001_leftImg8bit.png", str(mask))


def test_cityscapes_with_only_label_ids_says_how_to_fix(tmp_path):
    make_cityscapes(tmp_path)
    for path in (tmp_path / "gtFine").rglob("*_labelTrainIds.png"):
        path.rename(path.with_name(path.name.replace("labelTrainIds", "labelIds")))
    with pytest.raises(DataError) as excinfo:
        cityscapes(tmp_path, "val")
    _error(excinfo, "createTrainIdLabelImgs", str(tmp_path / "gtFine" / "val"))


def test_image_without_mask_is_an_error_voc(voc_root):
    root, _ = voc_root
    (root / "SegmentationClass" / "2007_000039.png").unlink()
    with pytest.raises(DataError) as excinfo:
        voc(root, "train")
    _error(excinfo, "image without mask", "2007_000039.jpg")


def test_image_without_mask_is_an_error_plain_folder(plain_root):
    root, _ = plain_root
    (root / "masks" / "x1.png").unlink()
    with pytest.raises(DataError) as excinfo:
        plain_folder(root)
    _error(excinfo, "image without mask", str(root / "images" / "x1.png"))


def test_mask_without_image_is_an_error_cityscapes(cityscapes_root):
    root, _ = cityscapes_root
    (root / "leftImg8bit/val/bochum/bochum_000000_000000_leftImg8bit.png").unlink()
    with pytest.raises(DataError) as excinfo:
        cityscapes(root, "val")
    _error(excinfo, "mask without image", "bochum_000000_000000_gtFine_labelTrainIds.png")


def test_mask_without_image_is_an_error_voc(voc_root):
    root, _ = voc_root
    (root / "JPEGImages" / "2007_000033.jpg").unlink()
    with pytest.raises(DataError) as excinfo:
        voc(root, "val")
    _error(excinfo, "mask without image", "2007_000033.png")


def test_mask_without_image_is_an_error_plain_folder(plain_root):
    root, _ = plain_root
    (root / "images" / "x2.png").unlink()
    with pytest.raises(DataError) as excinfo:
        plain_folder(root)
    _error(excinfo, "mask without image", str(root / "masks" / "x2.png"))


def test_voc_listed_id_with_no_files_is_an_error(voc_root):
    root, _ = voc_root
    listing = root / "ImageSets" / "Segmentation" / "val.txt"
    listing.write_text("2007_000033\nghost\n")
    with pytest.raises(DataError) as excinfo:
        voc(root, "val")
    _error(excinfo, "'ghost'", "ghost.jpg")


def test_size_mismatch_is_an_error(plain_root):
    root, _ = plain_root
    Image.fromarray(np.zeros((5, 7), np.uint8), "L").save(root / "masks" / "x0.png")
    source = plain_folder(root)
    with pytest.raises(DataError) as excinfo:
        source.load(0)
    _error(excinfo, "sizes differ", str(root / "masks" / "x0.png"), "7x5", "16x12")


def test_labels_out_of_range_are_an_error_plain_folder(plain_root):
    root, _ = plain_root
    mask = np.zeros((12, 16), np.uint8)
    mask[3, 3] = 5  # 5 classes: ids 0..4
    Image.fromarray(mask, "L").save(root / "masks" / "x0.png")
    with pytest.raises(DataError) as excinfo:
        plain_folder(root).load(0)
    _error(excinfo, "labels out of range", str(root / "masks" / "x0.png"), "[5]")


def test_labels_out_of_range_are_an_error_voc(voc_root):
    from tests.data.conftest import save_palette_png

    root, _ = voc_root
    mask = np.full((12, 16), 21, np.uint8)
    save_palette_png(root / "SegmentationClass" / "2007_000033.png", mask)
    with pytest.raises(DataError) as excinfo:
        voc(root, "val").load(0)
    _error(excinfo, "labels out of range", "2007_000033.png")


@pytest.mark.parametrize("kind", ["cityscapes", "voc", "plain"])
def test_empty_data_set_is_an_error(tmp_path, kind):
    if kind == "cityscapes":
        (tmp_path / "leftImg8bit" / "val").mkdir(parents=True)
        (tmp_path / "gtFine" / "val").mkdir(parents=True)
        call = lambda: cityscapes(tmp_path, "val")  # noqa: E731
    elif kind == "voc":
        (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
        (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("\n")
        call = lambda: voc(tmp_path, "val")  # noqa: E731
    else:
        (tmp_path / "images").mkdir()
        (tmp_path / "masks").mkdir()
        call = lambda: plain_folder(tmp_path)  # noqa: E731
    with pytest.raises(DataError) as excinfo:
        call()
    _error(excinfo, "empty data set", str(tmp_path))


def test_unreadable_image_is_an_error(plain_root):
    root, _ = plain_root
    (root / "images" / "x0.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError) as excinfo:
        plain_folder(root).load(0)
    _error(excinfo, "cannot read", str(root / "images" / "x0.png"))


def test_unreadable_mask_is_an_error(voc_root):
    root, _ = voc_root
    (root / "SegmentationClass" / "2007_000033.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    with pytest.raises(DataError) as excinfo:
        voc(root, "val").load(0)
    _error(excinfo, "cannot read", "2007_000033.png")


def test_rgb_mask_in_plain_folder_is_an_error(plain_root):
    root, _ = plain_root
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(root / "masks" / "x0.png")
    with pytest.raises(DataError) as excinfo:
        plain_folder(root).load(0)
    _error(excinfo, "single-channel", str(root / "masks" / "x0.png"))


def test_two_images_with_one_stem_are_an_error(plain_root):
    root, _ = plain_root
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(root / "images" / "x0.jpg")
    with pytest.raises(DataError) as excinfo:
        plain_folder(root)
    _error(excinfo, "two images with stem 'x0'")


def test_meta_json_disagreeing_with_num_classes_is_an_error(plain_root):
    root, _ = plain_root
    with pytest.raises(DataError) as excinfo:
        plain_folder(root, num_classes=9)
    _error(excinfo, str(root / "meta.json"), "num_classes=9")


def test_invalid_meta_json_is_an_error(plain_root):
    root, _ = plain_root
    (root / "meta.json").write_text("{not json")
    with pytest.raises(DataError) as excinfo:
        plain_folder(root)
    _error(excinfo, "invalid meta.json", str(root / "meta.json"))


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)
