//! Regression over the fuzz corpus (not the fuzzer itself): every committed seed
//! (`fuzz/seeds/<target>/`) and every minimized input of a fixed fuzz finding
//! (`fuzz/regressions/<target>/`) goes through the same entry points as the cargo-fuzz
//! targets (`gqcim::fuzzing`). Nothing may panic; every error must name the input; `ok-*`
//! seeds must parse, `bad-*` seeds and regressions must fail; the seeds listed below must
//! parse to the stated shapes or fail with the stated problem.
use gqcim::fuzzing::{Outcome, ORIGIN, TARGETS};
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> = rd.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    v.sort();
    v
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn run(target: &str, path: &Path) -> Vec<Outcome> {
    let entry = TARGETS.iter().find(|(n, _)| *n == target).unwrap().1;
    let data = std::fs::read(path).unwrap();
    std::panic::catch_unwind(|| entry(&data))
        .unwrap_or_else(|_| panic!("{target}: {} panicked", path.display()))
}

fn describe(outs: &[Outcome]) -> Vec<String> {
    outs.iter()
        .map(|o| match o {
            Ok(s) => format!("ok: {s}"),
            Err(e) => format!("err: {e}"),
        })
        .collect()
}

#[test]
fn every_seed_and_regression_input_is_handled_without_panic() {
    let mut seen = 0;
    for (target, _) in TARGETS {
        let seeds = files(&root().join("seeds").join(target));
        assert!(seeds.len() >= 4, "{target}: only {} seeds", seeds.len());
        let regressions = files(&root().join("regressions").join(target));
        for path in seeds.iter().chain(&regressions) {
            let outs = run(target, path);
            let shown = describe(&outs);
            for o in &outs {
                if let Err(e) = o {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(ORIGIN),
                        "{target} {}: error without origin: {msg}",
                        path.display()
                    );
                    assert!(msg.len() > ORIGIN.len() + 10, "{}: terse error {msg}", path.display());
                }
            }
            let name = path.file_name().unwrap().to_string_lossy();
            if name.starts_with("ok-") {
                assert!(outs.iter().any(Result::is_ok), "{}: {shown:?}", path.display());
            } else {
                // bad-* seeds and every fixed finding: an error, never a silent result.
                assert!(outs.iter().all(Result::is_err), "{}: {shown:?}", path.display());
            }
            seen += 1;
        }
    }
    assert!(seen >= 6 * 4);
}

/// (target, seed file, outcome index, expected `Ok` text or a needle of the error).
const EXPECTED: &[(&str, &str, usize, &str)] = &[
    ("idx", "ok-labels-3", 0, "ok: dims [3], 3 bytes"),
    ("idx", "ok-labels-3", 1, "wrong magic number 0x00000801: expected 0x00000803"),
    ("idx", "ok-images-2x3x4", 1, "ok: dims [2, 3, 4], 24 bytes"),
    ("idx", "ok-images-2x3x4.gz", 1, "ok: dims [2, 3, 4], 24 bytes"),
    ("idx", "ok-labels-0", 0, "ok: dims [0], 0 bytes"),
    (
        "idx",
        "bad-truncated-images",
        1,
        "truncated: header [2, 3, 4] needs 24 data bytes, the file has 20",
    ),
    ("idx", "bad-too-long-labels", 0, "too long: header [3] needs 3 data bytes, the file has 4"),
    ("idx", "bad-magic", 1, "wrong magic number 0x00000903"),
    ("idx", "bad-header-cut", 1, "the header ends before its dimension sizes"),
    ("idx", "bad-overflow-images", 1, "overflows or exceeds the limit"),
    (
        "idx",
        "bad-huge-labels.gz",
        0,
        "header [4294967295] promises more than 1073741824 data bytes",
    ),
    (
        "idx",
        "bad-gz-longer-labels.gz",
        0,
        "too long: header [4] needs 4 data bytes, the gzip stream holds more",
    ),
    (
        "idx",
        "bad-gz-shorter-images.gz",
        1,
        "truncated: header [2, 3, 4] needs 24 data bytes, the gzip stream holds 10",
    ),
    ("cifar", "ok-cifar10-2", 0, "ok: 2 records, 6144 pixel bytes"),
    ("cifar", "ok-cifar10-2", 1, "6146 bytes is not a whole number of 3074-byte records"),
    ("cifar", "ok-cifar100-1", 1, "ok: 1 records, 3072 pixel bytes"),
    ("cifar", "bad-cifar10-label", 0, "record 0: label 12 out of range (expected < 10)"),
    ("cifar", "bad-partial", 0, "size 100 bytes is not a whole number of 3073-byte records"),
    ("voc_xml", "ok-two-boxes.xml", 0, "ok: 64x48, 2 boxes, 0 skipped"),
    ("voc_xml", "ok-nosize-deepforest.xml", 0, "ok: 64x48, 1 boxes, 1 skipped"),
    ("voc_xml", "bad-unknown-class.xml", 0, "unknown class name `horse` (known: Tree, cat, dog)"),
    ("voc_xml", "bad-nan-coord.xml", 0, "<xmin> is not finite"),
    ("voc_xml", "bad-malformed.xml", 0, "malformed XML"),
    ("voc_xml", "bad-root.xml", 0, "root element is <voc>, expected <annotation>"),
    // The third box (centre x = 1.2) lies wholly outside the image: dropped and counted.
    ("yolo_txt", "ok-three.txt", 0, "ok: 64x48, 2 boxes, 1 skipped"),
    ("yolo_txt", "ok-three.txt", 1, "ok: 0x0, 0 boxes, 3 skipped"),
    ("yolo_txt", "ok-empty.txt", 0, "ok: 64x48, 0 boxes, 0 skipped"),
    ("yolo_txt", "bad-class.txt", 0, "line 1: class id 3 out of range (num_classes = 3)"),
    ("yolo_txt", "bad-fields.txt", 0, "line 1: expected 5 fields `class cx cy w h`, found 4"),
    ("yolo_txt", "bad-inf.txt", 0, "line 1: cx `inf` is not a finite number"),
    ("coco_json", "ok-gt-dets.json", 0, "ok: 2 images, 2 gt, 3 dets, map "),
    ("coco_json", "ok-gt-only.json", 0, "ok: 2 images, 2 gt, 0 dets, map 0.0"),
    (
        "coco_json",
        "bad-unknown-category.json",
        0,
        "entry [0]: category_id 8 is not a category of the ground truth",
    ),
    ("coco_json", "bad-negative-width.json", 0, "annotations[0]: `bbox` is [0,0,-1,1]"),
    ("coco_json", "bad-duplicate-category.json", 0, "category id 1 is listed twice"),
    ("coco_json", "bad-invalid-json.json", 0, "invalid JSON"),
    ("config", "ok-classify_fmnist.yaml", 0, "ok: classify, seed 1"),
    ("config", "ok-detect_scenes.yaml", 1, "ok: detect, seed 0"),
    ("config", "ok-segment_scenes.yaml", 2, "ok: segment, seed 1"),
    ("config", "ok-empty-with-sets.yaml", 0, "ok: classify, seed "),
    (
        "config",
        "bad-unknown-key.yaml",
        0,
        "unknown key `lrr` in section `train`; did you mean `lr`?",
    ),
    ("config", "bad-set-not-section.yaml", 0, "--set seed.x=1: `seed` is not a section"),
    ("config", "bad-not-yaml.yaml", 0, "not valid YAML"),
];

#[test]
fn seeds_parse_to_the_expected_shapes_and_errors() {
    for &(target, file, i, want) in EXPECTED {
        let path = root().join("seeds").join(target).join(file);
        let got = describe(&run(target, &path));
        let g = &got[i];
        let ok = if let Some(w) = want.strip_prefix("ok: ") {
            g.starts_with(&format!("ok: {w}"))
        } else {
            g.starts_with("err: ") && g.contains(want)
        };
        assert!(ok, "{target}/{file}[{i}]: expected `{want}`, got `{g}`");
    }
}
