#!/usr/bin/env python3
"""Writes the committed seed corpus of the cargo-fuzz targets (fuzz/seeds/<target>/).

Small valid and near-valid inputs for each reader; `tests/fuzz_corpus.rs` checks what each
`ok-*` seed parses to and that each `bad-*` seed is a named error. Deterministic: running
it again rewrites identical files (gzip mtime 0). Usage: python3 scripts/make_fuzz_seeds.py
"""
import gzip
import io
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "seeds")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


def gz(data):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
        f.write(data)
    return buf.getvalue()


# --- idx -------------------------------------------------------------------------------
write("idx", "ok-labels-3", idx([3], [1, 2, 9]))
write("idx", "ok-images-2x3x4", idx([2, 3, 4], range(24)))
write("idx", "ok-images-2x3x4.gz", gz(idx([2, 3, 4], range(24))))
write("idx", "ok-labels-0", idx([0], []))
write("idx", "bad-truncated-images", idx([2, 3, 4], range(20)))
write("idx", "bad-too-long-labels", idx([3], [1, 2, 3, 4]))
write("idx", "bad-magic", b"\x00\x00\x09\x03" + b"\x00" * 12)
write("idx", "bad-header-cut", b"\x00\x00\x08\x03\x00\x00")
write("idx", "bad-overflow-images", idx([0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF], []))
write("idx", "bad-huge-labels.gz", gz(idx([0xFFFFFFFF], [])))
write("idx", "bad-gz-longer-labels.gz", gz(idx([4], [0] * 4000)))
write("idx", "bad-gz-shorter-images.gz", gz(idx([2, 3, 4], range(10))))

# --- cifar -----------------------------------------------------------------------------
write("cifar", "ok-cifar10-2", bytes([3] + [7] * 3072 + [9] + [200] * 3072))
write("cifar", "ok-cifar100-1", bytes([1, 42] + [5] * 3072))
write("cifar", "bad-cifar10-label", bytes([12] + [0] * 3072))
write("cifar", "bad-partial", bytes([1] * 100))

# --- voc_xml ---------------------------------------------------------------------------
write("voc_xml", "ok-two-boxes.xml", """<annotation>
  <filename>a.png</filename>
  <size><width>64</width><height>48</height><depth>3</depth></size>
  <object><name>cat</name><difficult>0</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object>
  <object><name>dog</name><difficult>1</difficult>
    <bndbox><xmin>30.5</xmin><ymin>20</ymin><xmax>70</xmax><ymax>40</ymax></bndbox></object>
</annotation>
""")
write("voc_xml", "ok-nosize-deepforest.xml", """<annotation><folder>x</folder>
<filename>t.tif</filename><size><width></width><height>0</height></size>
<object><name>Tree</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>5</xmax><ymax>9</ymax></bndbox></object>
<object><name>Tree</name><bndbox><xmin>100</xmin><ymin>100</ymin><xmax>120</xmax><ymax>120</ymax></bndbox></object>
</annotation>""")
write("voc_xml", "bad-unknown-class.xml",
      "<annotation><filename>a.png</filename><object><name>horse</name>"
      "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>")
write("voc_xml", "bad-nan-coord.xml",
      "<annotation><filename>a.png</filename><object><name>cat</name>"
      "<bndbox><xmin>NaN</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>")
write("voc_xml", "bad-malformed.xml", "<annotation><filename>a.png</filename><object>")
write("voc_xml", "bad-root.xml", "<?xml version='1.0'?>\n<!-- c --><voc><filename>a</filename></voc>")

# --- yolo_txt --------------------------------------------------------------------------
write("yolo_txt", "ok-three.txt", "0 0.5 0.5 0.25 0.25\n2 0.1 0.1 0.3 0.3\n\n1 1.2 0.5 0.1 0.1\n")
write("yolo_txt", "ok-empty.txt", "")
write("yolo_txt", "bad-class.txt", "3 0.5 0.5 0.1 0.1\n")
write("yolo_txt", "bad-fields.txt", "0 0.5 0.5 0.1\n")
write("yolo_txt", "bad-inf.txt", "0 inf 0.5 0.1 0.1\n")

# --- coco_json -------------------------------------------------------------------------
GT = ('{"images":[{"id":1},{"id":2}],"categories":[{"id":3,"name":"cat"},{"id":7}],'
      '"annotations":[{"id":1,"image_id":1,"category_id":3,"bbox":[10,10,20,20],"area":400,"iscrowd":0},'
      '{"id":2,"image_id":2,"category_id":7,"bbox":[0,0,5.5,5],"iscrowd":true}]}')
DETS = ('[{"image_id":1,"category_id":3,"bbox":[10,10,20,20],"score":0.9},'
        '{"image_id":1,"category_id":3,"bbox":[40,40,5,5],"score":0.8},'
        '{"image_id":2,"category_id":7,"bbox":[0,0,5,5],"score":1e-300}]')
write("coco_json", "ok-gt-dets.json", GT + "\0" + DETS)
write("coco_json", "ok-gt-only.json", GT)
write("coco_json", "bad-unknown-category.json",
      GT + "\0" + '[{"image_id":1,"category_id":8,"bbox":[0,0,1,1],"score":0.5}]')
write("coco_json", "bad-negative-width.json",
      '{"images":[{"id":1}],"categories":[{"id":1}],"annotations":[{"image_id":1,"category_id":1,"bbox":[0,0,-1,1]}]}')
write("coco_json", "bad-duplicate-category.json",
      '{"images":[],"categories":[{"id":1},{"id":1}],"annotations":[]}')
write("coco_json", "bad-invalid-json.json", '{"images":[')

# --- config ----------------------------------------------------------------------------
configs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")
for name in ["classify_fmnist.yaml", "detect_scenes.yaml", "segment_scenes.yaml"]:
    with open(os.path.join(configs, name), "rb") as f:
        write("config", "ok-" + name, f.read())
write("config", "ok-empty-with-sets.yaml", "\0train.lr=0.05\0model.arch=resnet32\0analog.trials=2")
write("config", "bad-unknown-key.yaml", "train:\n  lrr: 0.1\n")
write("config", "bad-set-not-section.yaml", "seed: 3\n\0seed.x=1")
write("config", "bad-not-yaml.yaml", "train: [1, 2\n")
write("config", "bad-anchors.yaml", "a: &a [1, 2]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n")
