#!/usr/bin/env python3
"""Writes data/trees: the NEON aerial RGB tree-crown examples shipped in the `deepforest`
wheel (PyPI deepforest==2.1.0, `deepforest/data/*.xml` + images) as a Pascal VOC folder of
400x400 tiles, split into train and test by source image.

Tiling rule: tiles of 400x400 start every 400 px; where an image side is not a multiple of
400 the last tile is aligned to the far edge (it overlaps its neighbour), so every pixel is
in a tile and every tile is full size. A crown box (VOC 1-based inclusive corners) belongs to
a tile when at least 50% of its area lies inside the tile; it is then clipped to the tile.
Boxes with less than half their area inside are dropped from that tile (they are kept in the
neighbouring tile that holds their larger part, or, straddling a corner, may be lost: the
count is printed). SOAP_061's `Alive` / `Dead` labels are both written as `Tree`.

Split by source image, so that no tile of a test image is trained on:
  train: 2019_YELL_2_528000_4978000 (2299x2472, 574 crowns), SOAP_061 (400x400, 37)
  test:  2019_YELL_2_541000_4977000 (1249x1035, 279 crowns), OSBS_029 (400x400, 61)

Usage: python scripts/make_trees.py OUT_DIR   (the deepforest package must be importable)
"""
import os
import sys
import xml.etree.ElementTree as ET

from PIL import Image

TILE = 400
KEEP_FRACTION = 0.5
SPLITS = {
    "train": ["2019_YELL_2_528000_4978000_image_crop2", "SOAP_061"],
    "test": ["2019_YELL_2_541000_4977000_image_crop", "OSBS_029"],
}


def data_dir():
    import importlib.util

    spec = importlib.util.find_spec("deepforest")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("deepforest is not installed: pip install --no-deps deepforest==2.1.0")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def starts(size):
    """Tile origins along one side: every TILE px, the last one flush with the far edge."""
    if size <= TILE:
        return [0]
    s = list(range(0, size - TILE + 1, TILE))
    if s[-1] + TILE < size:
        s.append(size - TILE)
    return s


def read_boxes(xml_path):
    """(x1, y1, x2, y2) in 0-based continuous pixels (VOC: x1 = xmin - 1, x2 = xmax)."""
    out = []
    for obj in ET.parse(xml_path).getroot().iter("object"):
        bb = obj.find("bndbox")
        v = [float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
        out.append((v[0] - 1, v[1] - 1, v[2], v[3]))
    return out


def voc_xml(name, boxes):
    objs = "".join(
        "<object><name>Tree</name><difficult>0</difficult><bndbox>"
        f"<xmin>{x1 + 1:g}</xmin><ymin>{y1 + 1:g}</ymin><xmax>{x2:g}</xmax><ymax>{y2:g}</ymax>"
        "</bndbox></object>"
        for x1, y1, x2, y2 in boxes
    )
    return (
        f"<annotation><filename>{name}.png</filename><size><width>{TILE}</width>"
        f"<height>{TILE}</height><depth>3</depth></size>{objs}</annotation>\n"
    )


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    src = data_dir()
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    for split, stems in SPLITS.items():
        ids, kept_total, source_total = [], 0, 0
        for stem in stems:
            img = Image.open(os.path.join(src, stem + ".png")).convert("RGB")
            boxes = read_boxes(os.path.join(src, stem + ".xml"))
            source_total += len(boxes)
            w, h = img.size
            placed = set()
            for ty in starts(h):
                for tx in starts(w):
                    name = f"{stem}_{tx}_{ty}"
                    tile_boxes = []
                    for i, (x1, y1, x2, y2) in enumerate(boxes):
                        cx1, cy1 = max(x1, tx), max(y1, ty)
                        cx2, cy2 = min(x2, tx + TILE), min(y2, ty + TILE)
                        area = (x2 - x1) * (y2 - y1)
                        inside = max(0.0, cx2 - cx1) * max(0.0, cy2 - cy1)
                        if area > 0 and inside >= KEEP_FRACTION * area:
                            tile_boxes.append((cx1 - tx, cy1 - ty, cx2 - tx, cy2 - ty))
                            placed.add(i)
                    img.crop((tx, ty, tx + TILE, ty + TILE)).save(
                        os.path.join(out, "JPEGImages", name + ".png")
                    )
                    with open(os.path.join(out, "Annotations", name + ".xml"), "w") as f:
                        f.write(voc_xml(name, tile_boxes))
                    ids.append(name)
                    kept_total += len(tile_boxes)
            lost = len(boxes) - len(placed)
            print(f"{split}: {stem} {w}x{h} -> {len(starts(w)) * len(starts(h))} tiles, "
                  f"{len(boxes)} crowns, {lost} in no tile by the 50% rule")
        with open(os.path.join(out, "ImageSets/Main", split + ".txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
        print(f"{split}: {len(ids)} tiles, {kept_total} boxes (from {source_total} crowns; "
              "edge tiles overlap, so a crown can count twice)")


if __name__ == "__main__":
    main()
