//! Detection annotation readers on files the tests write: Pascal VOC XML (valid, malformed,
//! unknown class, missing image, size from the image header, skipped and clipped boxes,
//! whole folders), YOLO txt (valid, skips, bad lines) and image decoding. An ignored test
//! reads the real DeepForest 2.1.0 sample annotations.
use gqcim::data::voc::{
    load_image_rgb, read_voc_dir, read_voc_xml, read_yolo_txt, BoxAnn, SkipCounts,
    DEEPFOREST_CLASSES,
};
use gqcim::error::GqcimError;
use std::path::{Path, PathBuf};

const CLASSES: [&str; 2] = ["car", "person"];

/// A VOC file with one element per line: `<name>` of object k is on line 9 + 9k when
/// `size` is given (line 4 + 9k without it).
fn voc_xml(filename: &str, size: Option<(u32, u32)>, objects: &[(&str, bool, [f32; 4])]) -> String {
    let mut s = format!("<annotation>\n<filename>{filename}</filename>\n");
    if let Some((w, h)) = size {
        s += &format!(
            "<size>\n<width>{w}</width>\n<height>{h}</height>\n<depth>3</depth>\n</size>\n"
        );
    }
    for (name, difficult, [x1, y1, x2, y2]) in objects {
        s += &format!(
            "<object>\n<name>{name}</name>\n<difficult>{}</difficult>\n<bndbox>\n<xmin>{x1}</xmin>\n\
             <ymin>{y1}</ymin>\n<xmax>{x2}</xmax>\n<ymax>{y2}</ymax>\n</bndbox></object>\n",
            u8::from(*difficult)
        );
    }
    s + "</annotation>\n"
}

fn write_png(path: &Path, w: u32, h: u32) {
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7])).save(path).unwrap();
}

/// A temp folder with `images/` and `ann/`.
fn layout() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (images, ann) = (dir.path().join("images"), dir.path().join("ann"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&ann).unwrap();
    (dir, images, ann)
}

/// Unwraps a data error, checks the file it names, and returns its message.
fn data_error<T: std::fmt::Debug>(r: gqcim::error::Result<T>, expected_path: &Path) -> String {
    match r.unwrap_err() {
        GqcimError::Data { path, msg } => {
            assert_eq!(path, expected_path, "error names the wrong file: {msg}");
            msg
        }
        other => panic!("expected a data error, got {other}"),
    }
}

fn bx(class: usize, [x1, y1, x2, y2]: [f32; 4], difficult: bool) -> BoxAnn {
    BoxAnn { class, x1, y1, x2, y2, difficult }
}

#[test]
fn voc_valid_file_parses_to_exact_boxes() {
    let (_d, images, ann) = layout();
    write_png(&images.join("img.png"), 100, 80);
    let xml = ann.join("img.xml");
    let objects = [
        ("car", false, [10.0, 20.0, 50.0, 60.0]),
        ("person", true, [5.0, 5.0, 15.0, 25.0]),
        ("car", false, [1.0, 1.0, 100.0, 80.0]), // the whole image: not clipped
    ];
    std::fs::write(&xml, voc_xml("img.png", Some((100, 80)), &objects)).unwrap();
    let (a, counts) = read_voc_xml(&xml, &images, &CLASSES).unwrap();
    assert_eq!(a.image, images.join("img.png"));
    assert_eq!((a.width, a.height), (100, 80));
    // 1-based inclusive VOC pixels -> 0-based continuous corners.
    assert_eq!(
        a.boxes,
        vec![
            bx(0, [9.0, 19.0, 50.0, 60.0], false),
            bx(1, [4.0, 4.0, 15.0, 25.0], true),
            bx(0, [0.0, 0.0, 100.0, 80.0], false)
        ]
    );
    assert_eq!(counts, SkipCounts::default());
}

#[test]
fn voc_size_missing_or_zero_comes_from_the_image_header() {
    let (_d, images, ann) = layout();
    image::RgbImage::new(64, 48).save(images.join("a.jpg")).unwrap();
    let xml = ann.join("a.xml");
    std::fs::write(&xml, voc_xml("a.jpg", None, &[("person", false, [2.0, 2.0, 10.0, 10.0])]))
        .unwrap();
    let (a, _) = read_voc_xml(&xml, &images, &CLASSES).unwrap();
    assert_eq!((a.width, a.height, a.boxes.len()), (64, 48, 1));
    std::fs::write(&xml, voc_xml("a.jpg", Some((0, 0)), &[])).unwrap();
    let (a, _) = read_voc_xml(&xml, &images, &CLASSES).unwrap();
    assert_eq!((a.width, a.height), (64, 48));
}

#[test]
fn voc_malformed_xml_is_an_error_naming_the_file() {
    let (_d, images, ann) = layout();
    write_png(&images.join("img.png"), 10, 10);
    let xml = ann.join("broken.xml");
    std::fs::write(&xml, "<annotation>\n<filename>img.png</filename>\n<object>\n</annotation>\n")
        .unwrap();
    let msg = data_error(read_voc_xml(&xml, &images, &CLASSES), &xml);
    assert!(msg.contains("malformed XML"), "{msg}");
    // roxmltree reports the position as line:column.
    assert!(msg.contains("4:"), "no position in `{msg}`");
    // Well-formed XML that lacks a required element names the element and line.
    std::fs::write(&xml, "<annotation>\n<object>\n<name>car</name>\n</object>\n</annotation>\n")
        .unwrap();
    let msg = data_error(read_voc_xml(&xml, &images, &CLASSES), &xml);
    assert!(msg.contains("<filename>") && msg.contains("line 1"), "{msg}");
    let text = voc_xml("img.png", Some((10, 10)), &[("car", false, [1.0, 1.0, 5.0, 5.0])]);
    std::fs::write(&xml, text.replace("<xmax>5</xmax>", "<xmax>five</xmax>")).unwrap();
    let msg = data_error(read_voc_xml(&xml, &images, &CLASSES), &xml);
    assert!(msg.contains("line 14") && msg.contains("five"), "{msg}");
}

#[test]
fn voc_unknown_class_is_an_error_naming_class_and_file() {
    let (_d, images, ann) = layout();
    write_png(&images.join("img.png"), 10, 10);
    let xml = ann.join("img.xml");
    let objects = [("car", false, [1.0, 1.0, 5.0, 5.0]), ("dog", false, [1.0, 1.0, 5.0, 5.0])];
    std::fs::write(&xml, voc_xml("img.png", Some((10, 10)), &objects)).unwrap();
    let r = read_voc_xml(&xml, &images, &CLASSES);
    let shown = format!("{}", r.as_ref().unwrap_err());
    assert!(shown.contains("img.xml"), "{shown}");
    let msg = data_error(r, &xml);
    assert!(msg.contains("`dog`") && msg.contains("line 18"), "{msg}");
}

#[test]
fn voc_missing_image_is_an_error_naming_the_image() {
    let (_d, images, ann) = layout();
    let xml = ann.join("img.xml");
    std::fs::write(&xml, voc_xml("nope.png", Some((10, 10)), &[])).unwrap();
    let msg = data_error(read_voc_xml(&xml, &images, &CLASSES), &images.join("nope.png"));
    assert!(msg.contains("does not exist") && msg.contains("img.xml"), "{msg}");
}

#[test]
fn voc_degenerate_boxes_are_counted_skips_and_partial_boxes_are_clipped() {
    let (_d, images, ann) = layout();
    write_png(&images.join("img.png"), 100, 80);
    let xml = ann.join("img.xml");
    let objects = [
        ("car", false, [30.0, 30.0, 29.0, 40.0]), // x1 = 29 = x2: zero area
        ("car", false, [150.0, 10.0, 170.0, 20.0]), // entirely right of the image
        ("person", false, [90.0, 70.0, 120.0, 95.0]), // partly outside: clipped
        ("car", false, [10.0, 10.0, 20.0, 20.0]),
    ];
    std::fs::write(&xml, voc_xml("img.png", Some((100, 80)), &objects)).unwrap();
    let (a, counts) = read_voc_xml(&xml, &images, &CLASSES).unwrap();
    assert_eq!(counts, SkipCounts { zero_area: 1, outside: 1, clipped: 1 });
    assert_eq!(counts.skipped(), 2);
    assert_eq!(
        a.boxes,
        vec![bx(1, [89.0, 69.0, 100.0, 80.0], false), bx(0, [9.0, 9.0, 20.0, 20.0], false)]
    );
}

#[test]
fn voc_dir_reads_sorted_files_and_sums_counts() {
    let (_d, images, ann) = layout();
    write_png(&images.join("a.png"), 50, 50);
    write_png(&images.join("b.png"), 40, 30);
    let clipped = [("car", false, [45.0, 45.0, 60.0, 60.0])];
    std::fs::write(
        ann.join("b.xml"),
        voc_xml("b.png", Some((40, 30)), &[("car", false, [5.0, 5.0, 4.0, 9.0])]),
    )
    .unwrap();
    std::fs::write(ann.join("a.xml"), voc_xml("a.png", Some((50, 50)), &clipped)).unwrap();
    std::fs::write(ann.join("notes.txt"), "not an annotation").unwrap();
    let (anns, counts) = read_voc_dir(&ann, &images, &CLASSES).unwrap();
    let names: Vec<_> =
        anns.iter().map(|a| a.image.file_name().unwrap().to_str().unwrap()).collect();
    assert_eq!(names, ["a.png", "b.png"]);
    assert_eq!(counts, SkipCounts { zero_area: 1, outside: 0, clipped: 1 });
    let empty = ann.join("empty");
    std::fs::create_dir(&empty).unwrap();
    data_error(read_voc_dir(&empty, &images, &CLASSES), &empty);
}

fn yolo_setup(lines: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (img, txt) = (dir.path().join("img.png"), dir.path().join("img.txt"));
    write_png(&img, 200, 100);
    std::fs::write(&txt, lines).unwrap();
    (dir, img, txt)
}

fn assert_box_near(b: &BoxAnn, class: usize, c: [f32; 4]) {
    let got = [b.x1, b.y1, b.x2, b.y2];
    assert_eq!(b.class, class);
    assert!(got.iter().zip(c).all(|(g, e)| (g - e).abs() < 1e-4), "{got:?} != {c:?}");
}

#[test]
fn yolo_valid_file_with_skips_and_clips() {
    let lines = "0 0.5 0.5 0.2 0.4\n\n1 0.1 0.1 0.2 0.2\n0 0.5 0.5 0 0.3\n1 1.5 0.5 0.2 0.2\n0 0.95 0.5 0.2 0.2\n";
    let (_d, img, txt) = yolo_setup(lines);
    let (a, counts) = read_yolo_txt(&txt, &img, 2).unwrap();
    assert_eq!((a.width, a.height), (200, 100));
    assert_eq!(a.boxes.len(), 3);
    assert_box_near(&a.boxes[0], 0, [80.0, 30.0, 120.0, 70.0]);
    assert_box_near(&a.boxes[1], 1, [0.0, 0.0, 40.0, 20.0]);
    assert_box_near(&a.boxes[2], 0, [170.0, 40.0, 200.0, 60.0]);
    assert_eq!(counts, SkipCounts { zero_area: 1, outside: 1, clipped: 1 });
    // An empty label file is an image without objects.
    std::fs::write(&txt, "").unwrap();
    assert!(read_yolo_txt(&txt, &img, 2).unwrap().0.boxes.is_empty());
}

#[test]
fn yolo_bad_lines_are_errors_naming_the_line() {
    let cases = [
        ("0 0.5 0.5 0.2 0.4\n1 0.5 0.5 0.2\n", 2, vec!["line 2", "5 fields", "found 4"]),
        (
            "0 0.5 0.5 0.2 0.4\n\n5 0.5 0.5 0.1 0.1\n",
            2,
            vec!["line 3", "class id 5", "out of range"],
        ),
        ("0 0.5 abc 0.1 0.1\n", 2, vec!["line 1", "`abc`"]),
        ("-1 0.5 0.5 0.1 0.1\n", 2, vec!["line 1", "`-1`"]),
    ];
    for (text, k, needles) in cases {
        let (_d, img, txt) = yolo_setup(text);
        let msg = data_error(read_yolo_txt(&txt, &img, k), &txt);
        for n in needles {
            assert!(msg.contains(n), "`{msg}` lacks `{n}`");
        }
    }
    let (d, _img, txt) = yolo_setup("0 0.5 0.5 0.2 0.4\n");
    let missing = d.path().join("missing.png");
    data_error(read_yolo_txt(&txt, &missing, 2), &missing);
}

#[test]
fn load_image_rgb_gives_uint8_chw() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("x.png");
    write_png(&png, 5, 3);
    let t = load_image_rgb(&png).unwrap();
    assert_eq!(t.size(), [3, 3, 5]);
    assert_eq!(t.kind(), tch::Kind::Uint8);
    for (y, x) in [(0, 0), (2, 4), (1, 3)] {
        assert_eq!(t.int64_value(&[0, y, x]), x);
        assert_eq!(t.int64_value(&[1, y, x]), y);
        assert_eq!(t.int64_value(&[2, y, x]), 7);
    }
    let missing = dir.path().join("missing.png");
    data_error(load_image_rgb(&missing), &missing);
    std::fs::write(dir.path().join("junk.png"), b"not a png").unwrap();
    data_error(load_image_rgb(&dir.path().join("junk.png")), &dir.path().join("junk.png"));
}

/// The real DeepForest 2.1.0 sample data: set GQCIM_DEEPFOREST_DATA to the `deepforest/data`
/// folder of the wheel (`pip download deepforest==2.1.0 --no-deps`, then unzip), and run
/// `cargo test --release --test detect_data -- --ignored`.
#[test]
#[ignore = "needs GQCIM_DEEPFOREST_DATA (the deepforest 2.1.0 wheel's deepforest/data folder)"]
fn deepforest_sample_annotations() {
    let dir =
        PathBuf::from(std::env::var("GQCIM_DEEPFOREST_DATA").expect("set GQCIM_DEEPFOREST_DATA"));
    // OSBS_029.csv lists the same boxes as OSBS_029.xml (image_path,xmin,ymin,xmax,ymax,label).
    let (a, counts) = read_voc_xml(&dir.join("OSBS_029.xml"), &dir, &DEEPFOREST_CLASSES).unwrap();
    let csv = std::fs::read_to_string(dir.join("OSBS_029.csv")).unwrap();
    let expected: Vec<BoxAnn> = csv
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let v: Vec<f32> = f[1..5].iter().map(|x| x.trim().parse().unwrap()).collect();
            assert_eq!(f[5].trim(), "Tree");
            bx(0, [v[0] - 1.0, v[1] - 1.0, v[2], v[3]], false)
        })
        .collect();
    assert_eq!(counts.skipped(), 0);
    assert_eq!(a.boxes, expected);
    assert_eq!((a.width, a.height), (400, 400));
    for name in ["2019_YELL_2_541000_4977000_image_crop", "2019_YELL_2_528000_4978000_image_crop2"]
    {
        let (a, counts) =
            read_voc_xml(&dir.join(format!("{name}.xml")), &dir, &DEEPFOREST_CLASSES).unwrap();
        assert!(!a.boxes.is_empty());
        let t = load_image_rgb(&a.image).unwrap();
        assert_eq!(t.size(), [3, i64::from(a.height), i64::from(a.width)], "{name}");
        eprintln!("{name}: {} boxes, {counts:?}", a.boxes.len());
    }
    // SOAP_061 labels Dead/Alive trees, not "Tree": an error with DEEPFOREST_CLASSES.
    let soap = dir.join("SOAP_061.xml");
    assert!(data_error(read_voc_xml(&soap, &dir, &DEEPFOREST_CLASSES), &soap).contains("`Dead`"));
    let (a, _) = read_voc_xml(&soap, &dir, &["Dead", "Alive"]).unwrap();
    assert_eq!(a.boxes.len(), 37);
}
