"""The task registry: four complete specs that read the real data."""
import numpy as np
import pytest

from lifelens import data
from lifelens.tasks import DISCLAIMER, TASKS, get_task

EXPECTED = {"plant": 10, "skin": 3, "mammo": 2, "retina": 5}


def test_registry_has_the_four_tasks_with_complete_specs():
    assert set(TASKS) == set(EXPECTED)
    for task_id, spec in TASKS.items():
        assert spec.num_classes == EXPECTED[task_id]
        assert len(set(spec.class_ids)) == spec.num_classes
        assert all(c.name and c.description for c in spec.classes)
        assert spec.channels in (1, 3) and spec.input_size >= 64
        assert spec.citation and spec.licence and spec.key_metrics
        assert spec.model_path.name == f"{task_id}.keras"
    assert "not a diagnostic device" in DISCLAIMER


def test_unknown_task_is_a_clear_error():
    with pytest.raises(KeyError, match="choose one of"):
        get_task("liver")


@pytest.mark.parametrize("task_id", list(EXPECTED))
def test_labels_read_and_images_prepare(task_id, data_root):
    spec = get_task(task_id)
    samples = spec.samples()
    labels = np.array([s.label for s in samples])
    assert set(labels) == set(range(spec.num_classes))
    image = spec.load_image(spec.data_dir() / "images" / samples[0].path)
    prepared = spec.prepare_image(image)
    assert prepared.shape == (spec.input_size, spec.input_size, spec.channels)
    assert prepared.dtype == np.float32 and 0 <= prepared.min() and prepared.max() <= 255
    assert prepared.std() > 5  # an image, not a blank


def test_mammo_films_are_units_and_abnormal_if_any_row_is():
    spec = get_task("mammo")
    films = spec.samples()
    assert len(films) == len({f.path for f in films}) == 260
    by_path = {f.path: f for f in films}
    assert by_path["mdb001.png"].label == 1 and by_path["mdb001.png"].lesions[0] == (535.0, 425.0, 197.0)
    assert by_path["mdb007.png"].label == 0 and by_path["mdb007.png"].lesions == ()
    assert sum(f.label for f in films) == 93


@pytest.mark.parametrize("task_id", list(EXPECTED))
def test_splits_are_deterministic_disjoint_and_stratified(task_id):
    spec = get_task(task_id)
    a, b = data.task_splits(spec), data.task_splits(spec)
    assert {k: [s.path for s in v] for k, v in a.items()} == {k: [s.path for s in v] for k, v in b.items()}
    groups = {k: {s.group for s in v} for k, v in a.items()}
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["val"]) and not (groups["val"] & groups["test"])
    assert sum(len(v) for v in a.values()) == len(spec.samples())
    for part in ("val", "test"):
        assert set(s.label for s in a[part]) == set(range(spec.num_classes)), part


def test_mammo_split_keeps_film_pairs_of_a_patient_together():
    splits = data.task_splits(get_task("mammo"))
    where = {}
    for part, items in splits.items():
        for s in items:
            where.setdefault(s.group, set()).add(part)
    assert all(len(parts) == 1 for parts in where.values())
    assert any(len([s for s in splits["test"] if s.group == g]) == 2 for g in {s.group for s in splits["test"]})


def test_data_setting_is_one_environment_variable(monkeypatch, tmp_path):
    from lifelens import config

    monkeypatch.setenv("LIFELENS_DATA", str(tmp_path))
    assert config.data_root() == tmp_path.resolve()
    assert get_task("plant").data_dir() == tmp_path.resolve() / "plant"
    with pytest.raises(FileNotFoundError, match="LIFELENS_DATA"):
        get_task("plant").samples()
    monkeypatch.delenv("LIFELENS_DATA")
    assert config.data_root() == (config.PROJECT_ROOT / ".." / "shared" / "data").resolve()


def _detail_spread(prepared: np.ndarray) -> float:
    """Spread of a prepared fundus photo around grey, inside the fundus (the 4x-gained detail)."""
    inside = np.abs(prepared.astype(np.float32) - 128.0).sum(axis=-1) > 0
    return float((prepared.astype(np.float32)[inside] - 128.0).std())


def test_fundus_preparation_caps_the_detail_of_photos_enhanced_upstream():
    """EyePACS photos (contrast-enhanced upstream) come out of the one retina preparation
    with the spread a typical APTOS photo has, not twice it; a low-contrast APTOS photo is
    left as the plain local-average subtraction makes it."""
    from lifelens import imaging
    from lifelens.tasks import FUNDUS_MAX_DETAIL_STD

    spec = get_task("retina")
    aptos = data.task_splits(spec)["val"][:12]
    eyepacs = data.source_splits(spec, spec.extra_sources[0])["val"][:12]
    photos = {name: [imaging.resize(spec.load_image(spec.image_path(s)), spec.input_size) for s in items]
              for name, items in (("aptos", aptos), ("eyepacs", eyepacs))}
    plain = {k: [_detail_spread(imaging.local_contrast(p)) for p in v] for k, v in photos.items()}
    capped = {k: [_detail_spread(spec.prepare(p, spec.input_size)) for p in v] for k, v in photos.items()}
    # Without the cap EyePACS is far harsher than APTOS: the shift the cap is for.
    assert np.median(plain["eyepacs"]) > 1.6 * np.median(plain["aptos"])
    # With it, no photo's detail exceeds the cap's (4x gain; clipping only lowers it).
    assert max(capped["eyepacs"] + capped["aptos"]) <= 4 * FUNDUS_MAX_DETAIL_STD * 1.05
    assert np.median(capped["eyepacs"]) < 1.2 * np.median(plain["aptos"])
    # A photo already under the cap is unchanged.
    low = int(np.argmin(plain["aptos"]))
    assert plain["aptos"][low] < 4 * FUNDUS_MAX_DETAIL_STD
    np.testing.assert_allclose(spec.prepare(photos["aptos"][low], spec.input_size),
                               imaging.local_contrast(photos["aptos"][low]), atol=1e-3)


def test_prepared_images_are_cached_by_what_the_preparation_does_not_by_its_name():
    """Two preparations with one function name (an edited contrast rule) never share a cache:
    the second gets its own images, not the first's read back from disk."""
    import dataclasses

    from lifelens import imaging

    spec = get_task("retina")
    items = data.task_splits(spec)["val"][:3]

    def _prepare_fundus(image, size):  # the same name as the shipped preparation, no cap
        return imaging.local_contrast(imaging.resize(image, size))

    uncapped = dataclasses.replace(spec, prepare=_prepare_fundus)
    assert data.preparation_key(uncapped) != data.preparation_key(spec)
    shipped, plain = data.load_prepared(spec, items), data.load_prepared(uncapped, items)
    expected = [np.clip(_prepare_fundus(spec.framed(spec.load_image(spec.image_path(s))), spec.input_size) + 0.5, 0, 255).astype(np.uint8)
                for s in items]
    np.testing.assert_array_equal(plain, np.stack(expected))
    assert np.abs(shipped.astype(int) - plain.astype(int)).max() > 10


def _fundus_photos(n: int = 6) -> list[np.ndarray]:
    """n validation photos from each retina source (APTOS full circles, EyePACS clipped ones)."""
    spec = get_task("retina")
    items = data.task_splits(spec)["val"][:n] + data.source_splits(spec, spec.extra_sources[0])["val"][:n]
    return [spec.load_image(spec.image_path(s)) for s in items]


def test_fundus_framing_leaves_our_photos_and_undoes_a_wider_black_surround():
    """Photos framed as the training photos are come back almost the same; the same photo
    inside a wide black surround (another camera) comes back framed like the original; an
    image with no fundus, or a caption burnt into the surround, changes nothing."""
    import cv2

    from lifelens import imaging

    def extent(image):
        y0, y1, x0, x1 = imaging.fundus_box(image)
        return np.array([y1 - y0, x1 - x0])

    for photo in _fundus_photos():
        framed = imaging.frame_fundus(photo)
        size = photo.shape[0]
        # Our photos' fundus fills the frame one way at least: at most re-centred, never rescaled.
        assert framed.shape == photo.shape
        assert np.abs(extent(framed) - extent(photo)).max() <= 2
        wide = imaging.shrink_into_frame(photo, 0.7, 0.7)
        wide[2:14, 2:60] = 255  # a caption burnt into a corner of the black surround
        reframed = imaging.resize(imaging.frame_fundus(wide), size)
        assert np.abs(extent(reframed) - extent(framed)).max() <= 0.03 * size
        unframed_gap = np.abs(wide.astype(int) - framed.astype(int)).mean()
        assert np.abs(reframed.astype(int) - framed.astype(int)).mean() < min(0.25 * unframed_gap, 10)
    black = np.zeros((300, 400, 3), np.uint8)
    assert imaging.frame_fundus(black) is black
    speck = black.copy()
    cv2.circle(speck, (200, 150), 30, (200, 100, 50), -1)  # under a tenth of the image: no clear fundus
    assert imaging.frame_fundus(speck) is speck
    leaf = data.task_splits(get_task("plant"))["val"][0]
    leaf_photo = get_task("plant").load_image(get_task("plant").image_path(leaf))
    assert imaging.frame_fundus(leaf_photo).shape[:2] == leaf_photo.shape[:2]  # fills its frame: kept


def test_the_retina_ensemble_reads_a_photo_in_a_wide_surround_as_it_reads_the_photo():
    """Through the task's preparation (framed first), a photo shrunk to 70 % inside a black
    surround gets the grades the photo gets; prepared without the framing step, the shipped
    ensemble reads it very differently (the failure the framing is for)."""
    from conftest import shipped_model
    from lifelens import imaging
    from lifelens.models import ensemble_proba

    spec = get_task("retina")
    model = shipped_model("retina")
    photos = _fundus_photos()
    wide = [imaging.shrink_into_frame(p, 0.7, 0.7) for p in photos]

    def read(images, prepare):
        return ensemble_proba(model, np.stack([prepare(im) for im in images]).astype(np.float32))

    def not_framed(image):
        return spec.prepare(imaging.to_channels(image, spec.channels), spec.input_size)

    photo_probs = read(photos, spec.prepare_image)
    # Total variation distance between the two grade distributions, per photo.
    framed_gap = 0.5 * np.abs(read(wide, spec.prepare_image) - photo_probs).sum(axis=1)
    unframed_gap = 0.5 * np.abs(read(wide, not_framed) - photo_probs).sum(axis=1)
    assert framed_gap.mean() < 0.1
    assert unframed_gap.mean() > 2 * framed_gap.mean()
    # The display is framed the same way, so maps drawn on it sit on the eye the network saw.
    from lifelens import cases

    display, _ = cases.display_image(spec, spec.framed(wide[0]))
    expected = imaging.as_rgb_uint8(imaging.resize(imaging.frame_fundus(wide[0]), cases.DISPLAY_SIZE))
    np.testing.assert_array_equal(display, expected)
