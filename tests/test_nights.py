"""Frames to nights: timestamps from EXIF and from names, deployments, noon-to-noon nights.

The oracle for every time is written here by hand (the EXIF tag, the file name) and
for every night by the rule itself (the date of the noon at or before the time).
"""

from __future__ import annotations

from datetime import date, datetime

import pytest
from PIL import Image

from moths_framework.nights.deployments import DeploymentError, Deployments, read_deployments
from moths_framework.nights.frame_times import night_of, time_frames
from moths_framework.nights.timestamps import NamePattern, exif_time, frame_time

EXIF_IFD, DATE_TIME_ORIGINAL = 0x8769, 0x9003


def jpeg(path, taken: str | None = None):
    """A small JPEG; ``taken``: its EXIF DateTimeOriginal (``2024:07:01 23:15:02``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if taken is not None:
        exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = taken
    Image.new("RGB", (16, 12), (200, 190, 170)).save(path, exif=exif)
    return path


def test_exif_date_time_original_wins_over_the_name(tmp_path) -> None:
    frame = jpeg(tmp_path / "20240101000000.jpg", "2024:07:01 23:15:02")
    assert exif_time(frame) == datetime(2024, 7, 1, 23, 15, 2)
    assert frame_time(frame, NamePattern()) == (datetime(2024, 7, 1, 23, 15, 2), "exif")


def test_a_frame_without_exif_takes_the_time_in_its_name(tmp_path) -> None:
    frame = jpeg(tmp_path / "trap3-20240702031502-00-07.jpg")  # AMI's naming
    assert exif_time(frame) is None
    assert frame_time(frame, NamePattern()) == (datetime(2024, 7, 2, 3, 15, 2), "name")
    png = tmp_path / "IMG_2024-07-02_0315.png"
    Image.new("RGB", (8, 8)).save(png)
    assert frame_time(png, NamePattern("IMG_%Y-%m-%d_%H%M")) == (
        datetime(2024, 7, 2, 3, 15),
        "name",
    )


def test_digits_that_are_no_date_are_passed_over() -> None:
    # '99999999999999' fits %Y%m%d%H%M%S's digits but is no date; the real one follows
    assert NamePattern().time_in("99999999999999_20240701231502.jpg") == datetime(
        2024, 7, 1, 23, 15, 2
    )
    assert NamePattern().time_in("120240701231502.jpg") == datetime(2024, 7, 1, 23, 15, 2)
    assert NamePattern().time_in("IMG_0001.jpg") is None


def test_a_frame_with_no_time_is_reported_not_guessed(tmp_path) -> None:
    frame = jpeg(tmp_path / "IMG_0001.jpg")
    taken, why = frame_time(frame, NamePattern())
    assert taken is None and "no EXIF DateTimeOriginal" in why and "%Y%m%d%H%M%S" in why
    timed, untimed = time_frames([str(frame)], Deployments(), NamePattern())
    assert timed == {} and [u.path for u in untimed] == [str(frame)]


@pytest.mark.parametrize(
    ("taken", "night"),
    [
        (datetime(2024, 7, 1, 11, 59, 59), date(2024, 6, 30)),
        (datetime(2024, 7, 1, 12, 0, 0), date(2024, 7, 1)),
        (datetime(2024, 7, 1, 23, 59, 59), date(2024, 7, 1)),
        (datetime(2024, 7, 2, 0, 0, 0), date(2024, 7, 1)),
        (datetime(2024, 7, 2, 11, 59, 59), date(2024, 7, 1)),
        (datetime(2024, 1, 1, 3, 0, 0), date(2023, 12, 31)),  # New Year's night
    ],
)
def test_a_night_runs_noon_to_noon(taken, night) -> None:
    assert night_of(taken) == night


def test_bad_name_patterns_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="%Q is not one of"):
        NamePattern("%Y%Q")
    with pytest.raises(ValueError, match="no day"):
        NamePattern("%Y%m")


def test_deployments_by_folder_name_without_a_csv() -> None:
    deployments = Deployments()
    assert deployments.of("frames/trap-north/20240701230000.jpg").id == "trap-north"


def test_deployments_csv_by_folder_and_by_id(tmp_path) -> None:
    (tmp_path / "deployments.csv").write_text(
        "deployment,latitude,longitude,trap_type,timezone,folder\n"
        "garden,52.09,5.12,LepiLED,Europe/Amsterdam,frames/2024/garden\n"
        "dunes,52.40,4.60,Robinson,,\n"
    )
    deployments = read_deployments(tmp_path / "deployments.csv")
    garden = deployments.of(tmp_path / "frames/2024/garden/sub/x.jpg")
    assert (garden.id, garden.latitude, garden.longitude, garden.trap_type) == (
        "garden",
        52.09,
        5.12,
        "LepiLED",
    )
    assert deployments.of(tmp_path / "elsewhere/dunes/x.jpg").id == "dunes"
    assert deployments.of(tmp_path / "elsewhere/x.jpg") is None  # claimed by none
    # the zone gives the local time its offset (summer time in Amsterdam: +02:00)
    frame = jpeg(tmp_path / "frames/2024/garden/a.jpg", "2024:07:01 23:15:02")
    timed, untimed = time_frames([str(frame)], deployments, NamePattern())
    assert untimed == [] and timed[str(frame)].iso_time() == "2024-07-01T23:15:02+02:00"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deployment,latitude\ngarden,95\n", "latitude 95.0 is outside"),
        ("deployment,timezone\ngarden,Mars/Olympus\n", "unknown time zone"),
        ("deployment\ngarden\ngarden\n", "listed twice"),
        ("site,latitude\ngarden,52\n", r"lacks column\(s\) deployment \(expected a deployments\."),
    ],
)
def test_bad_deployments_csv_is_one_line(tmp_path, text, message) -> None:
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(DeploymentError, match=message) as error:
        read_deployments(tmp_path / "d.csv")
    assert "\n" not in str(error.value)
