"""PCD ascii/binary/binary_compressed: the real office scan, round trips, PCL conventions, bad files."""
import struct
from pathlib import Path

import lzf
import numpy as np
import pytest

from ssen_ros.io import Cloud, CloudFormatError, read_cloud
from ssen_ros.io.pcd import DATA_FORMATS, read_pcd, write_pcd

OFFICE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "pcl_office1.pcd"


def _office_columns():
    """x, y, z, rgb columns of the office file, decoded here without ssen_ros (header, LZF, SoA)."""
    raw = OFFICE.read_bytes()
    start = raw.index(b"DATA binary_compressed\n") + len(b"DATA binary_compressed\n")
    compressed, uncompressed = struct.unpack_from("<II", raw, start)
    data = lzf.decompress(raw[start + 8:start + 8 + compressed], uncompressed)
    n = 640 * 480
    assert uncompressed == n * 16
    return [np.frombuffer(data, dtype=dt, count=n, offset=i * n * 4) for i, dt in enumerate(["<f4"] * 3 + ["<u4"])]


@pytest.mark.skipif(not OFFICE.is_file(), reason="shared/data/real/pcl_office1.pcd not present")
def test_real_office_scan():
    x, y, z, rgb = _office_columns()
    finite = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    cloud = read_cloud(OFFICE)
    assert (cloud.width, cloud.height) == (640, 480)
    assert len(cloud) == finite.sum() and 250_000 < len(cloud) < 258_000
    assert cloud.dropped_nonfinite == 640 * 480 - finite.sum()
    np.testing.assert_array_equal(cloud.finite_mask, finite)
    np.testing.assert_array_equal(cloud.points, np.stack([x, y, z], axis=1)[finite])
    expected = np.stack([(rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255], axis=1)[finite]
    np.testing.assert_array_equal(cloud.colors, expected)
    # sane colours: an indoor scene, not black, many distinct colours, every channel varies
    assert cloud.colors.mean() > 40 and len(np.unique(cloud.colors, axis=0)) > 5000
    assert (cloud.colors.astype(float).std(axis=0) > 10).all()
    # depth of a Kinect view: z in front of the camera, within a few metres
    assert 0.3 < cloud.points[:, 2].min() and cloud.points[:, 2].max() < 10


@pytest.mark.parametrize("data", DATA_FORMATS)
def test_round_trip_each_format(tmp_path, data):
    rng = np.random.default_rng(0)
    n = 300
    cloud = Cloud(rng.normal(size=(n, 3)).astype(np.float32) * 100, rng.integers(0, 256, (n, 3), dtype=np.uint8),
                  {"alpha": rng.integers(0, 256, n).astype(np.uint8), "intensity": rng.random(n),
                   "label": rng.integers(-1, 20, n).astype(np.int16), "count": rng.integers(0, 2**40, n).astype(np.uint64),
                   "normal": rng.normal(size=(n, 3)).astype(np.float32)})
    cloud.colors[0] = 255  # alpha 255 + white: packed bits are a float NaN pattern
    cloud.fields["alpha"][0] = 255
    path = write_pcd(tmp_path / f"c_{data}.pcd", cloud, data)
    back = read_pcd(path)
    assert (back.height, back.width, back.dropped_nonfinite) == (1, n, 0)
    np.testing.assert_array_equal(back.points, cloud.points)
    np.testing.assert_array_equal(back.colors, cloud.colors)
    assert back.fields.keys() == cloud.fields.keys()
    for name, values in cloud.fields.items():
        assert back.fields[name].dtype == values.dtype
        np.testing.assert_array_equal(back.fields[name], values)


@pytest.mark.parametrize("data", DATA_FORMATS)
def test_float64_organised_and_empty(tmp_path, data):
    cloud = Cloud(np.arange(18, dtype=np.float64).reshape(6, 3) * 1000.123456789, height=2, width=3)
    back = read_pcd(write_pcd(tmp_path / "o.pcd", cloud, data))
    assert (back.height, back.width) == (2, 3) and back.points.dtype == np.float64
    np.testing.assert_array_equal(back.points, cloud.points)
    empty = read_pcd(write_pcd(tmp_path / "e.pcd", Cloud(np.zeros((0, 3), np.float32)), data))
    assert len(empty) == 0


HEADER = ("# .PCD v0.7\nVERSION 0.7\nFIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F {t}\nCOUNT 1 1 1 1\n"
          "WIDTH 2\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 2\nDATA ascii\n")


def test_pcl_ascii_packed_colour_as_integer_or_float(tmp_path):
    # PCL >= 1.8 writes an F rgb field as its uint32 value; older files wrote the float
    (tmp_path / "new.pcd").write_text(HEADER.format(t="F") + f"1 2 3 {0xFF0A141E}\nnan 0 0 0\n")
    cloud = read_pcd(tmp_path / "new.pcd")
    np.testing.assert_array_equal(cloud.colors, [[10, 20, 30]])
    assert cloud.dropped_nonfinite == 1
    as_float = struct.unpack("<f", struct.pack("<I", 0x000A141E))[0]
    (tmp_path / "old.pcd").write_text(HEADER.format(t="F") + f"1 2 3 {as_float!r}\n4 5 6 0\n")
    np.testing.assert_array_equal(read_pcd(tmp_path / "old.pcd").colors, [[10, 20, 30], [0, 0, 0]])
    (tmp_path / "u.pcd").write_text(HEADER.format(t="U") + f"1 2 3 {0x0A141E}\n4 5 6 255\n")
    np.testing.assert_array_equal(read_pcd(tmp_path / "u.pcd").colors, [[10, 20, 30], [0, 0, 255]])


@pytest.mark.parametrize("value, kind", [("-5", "U 1"), ("99999999999999999999999", "I 4")])
def test_an_ascii_value_out_of_its_fields_range_names_the_field(tmp_path, value, kind):
    size, type_ = kind.split()[1], kind.split()[0]
    path = tmp_path / "range.pcd"
    path.write_text(f"FIELDS x y z i\nSIZE 4 4 4 {size}\nTYPE F F F {type_}\nWIDTH 1\nDATA ascii\n0 0 0 {value}\n")
    with pytest.raises(CloudFormatError, match=f"range.pcd: field 'i': bad ascii value for "):
        read_pcd(path)


def test_binary_with_padding_field_and_organised_nan(tmp_path):
    header = ("VERSION .7\nFIELDS x y z _ intensity\nSIZE 4 4 4 1 4\nTYPE F F F U F\nCOUNT 1 1 1 4 1\n"
              "WIDTH 2\nHEIGHT 2\nPOINTS 4\nDATA binary\n").encode()
    rows = [(0, 0, 1, 0.5), (float("nan"),) * 3 + (0.6,), (1, 0, 1, 0.7), (1, 1, 1, 0.8)]
    body = b"".join(struct.pack("<fff4xf", *r) for r in rows)
    (tmp_path / "p.pcd").write_bytes(header + body)
    cloud = read_pcd(tmp_path / "p.pcd")
    assert (cloud.height, cloud.width, len(cloud), cloud.dropped_nonfinite) == (2, 2, 3, 1)
    assert list(cloud.fields) == ["intensity"]
    np.testing.assert_allclose(cloud.fields["intensity"], [0.5, 0.7, 0.8])
    np.testing.assert_array_equal(cloud.finite_mask, [True, False, True, True])


def _written(tmp_path, data, n=1000):
    rng = np.random.default_rng(0)
    path = write_pcd(tmp_path / f"{data}.pcd", Cloud(rng.normal(size=(n, 3)).astype(np.float32)), data)
    return path, path.read_bytes()


@pytest.mark.parametrize("data, cut, message", [
    ("binary", 100, r"truncated: DATA binary \(1000 points x 12 bytes\) needs 12000 bytes after the header, the file has 11900"),
    ("binary_compressed", 100, r"truncated: DATA binary_compressed \(\d+ compressed bytes \+ 8\) needs \d+ bytes"),
    ("binary_compressed", None, r"truncated: DATA binary_compressed size words needs 8 bytes"),
    ("ascii", 200, r"truncated: DATA ascii needs 1000 points x 3 values = 3000, the file has 29\d\d values"),
])
def test_truncated_files_name_file_and_bytes(tmp_path, data, cut, message):
    path, raw = _written(tmp_path, data)
    end = len(raw) - cut if cut else raw.index(b"DATA") + len(f"DATA {data}\n") + 3
    path.write_bytes(raw[:end])
    with pytest.raises(CloudFormatError, match=f"{path.name}: {message}"):
        read_pcd(path)


def test_corrupt_lzf_and_size_mismatch(tmp_path):
    path, raw = _written(tmp_path, "binary_compressed")
    start = raw.index(b"DATA binary_compressed\n") + len(b"DATA binary_compressed\n")
    path.write_bytes(raw[:start + 8] + b"\xff" * (len(raw) - start - 8))
    with pytest.raises(CloudFormatError, match="does not decompress to the 12000 bytes"):
        read_pcd(path)
    path.write_bytes(raw[:start + 4] + struct.pack("<I", 999) + raw[start + 8:])
    with pytest.raises(CloudFormatError, match=r"holds 999 bytes, expected 1000 points x 12 bytes = 12000"):
        read_pcd(path)


@pytest.mark.parametrize("header, message", [
    ("FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 1\nHEIGHT 1\n", "no DATA line"),
    ("FIELDS x y z\nSIZE 4 4\nTYPE F F F\nWIDTH 1\nDATA binary\n", "FIELDS/SIZE/TYPE/COUNT have 3/2/3/3 entries"),
    ("FIELDS x y z\nSIZE 4 4 3\nTYPE F F F\nWIDTH 1\nDATA binary\n", "field 'z' has unsupported TYPE F SIZE 3"),
    ("FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 2\nHEIGHT 2\nPOINTS 3\nDATA binary\n", r"POINTS 3 != WIDTH 2 \* HEIGHT 2"),
    ("FIELDS a y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 1\nDATA binary\n", r"no 'x' field; fields are \['a', 'y', 'z'\]"),
    ("FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH 1\nDATA zip\n", "unknown DATA 'zip'"),
    ("FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nDATA binary\n", "no WIDTH line"),
    ("FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH -1\nHEIGHT 1\nPOINTS -1\nDATA binary\n",
     "negative WIDTH, HEIGHT, POINTS or SIZE"),
    ("FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 0\nWIDTH 1\nDATA binary\n", "COUNT below 1"),
])
def test_bad_headers(tmp_path, header, message):
    path = tmp_path / "bad.pcd"
    path.write_bytes(header.encode() + bytes(48))
    with pytest.raises(CloudFormatError, match=message):
        read_pcd(path)
