//! IDX and CIFAR readers on small files written by the test: valid (raw and gzip),
//! truncated, wrong magic, label/image count mismatch, bad labels.
mod common;
use flate2::{write::GzEncoder, Compression};
use gqcim::data::cifar::{read_cifar_file, CIFAR_PIXELS};
use gqcim::data::idx::{read_idx, write_idx};
use gqcim::data::load_idx_pair;
use std::io::Write;

fn img_bytes(n: usize) -> Vec<u8> {
    (0..n * 4 * 5).map(|i| (i % 251) as u8).collect()
}

#[test]
fn idx_raw_and_gzip_read_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("img");
    write_idx(&raw, &[3, 4, 5], &img_bytes(3)).unwrap();
    let a = read_idx(&raw, 3).unwrap();
    assert_eq!(a.dims, vec![3, 4, 5]);
    assert_eq!(a.data, img_bytes(3));
    let gz = dir.path().join("img.gz");
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(&std::fs::read(&raw).unwrap()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let b = read_idx(&gz, 3).unwrap();
    assert_eq!(b.dims, a.dims);
    assert_eq!(b.data, a.data);
}

#[test]
fn truncated_idx_names_file_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("trunc-images");
    write_idx(&p, &[3, 4, 5], &img_bytes(3)[..50]).unwrap();
    let msg = read_idx(&p, 3).unwrap_err().to_string();
    assert!(msg.contains("trunc-images"), "{msg}");
    assert!(msg.contains("truncated") && msg.contains("60") && msg.contains("50"), "{msg}");
}

#[test]
fn truncated_gzip_stream_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.gz");
    // An IDX file whose data does not compress, so half the gzip file is half the data.
    let dims = [100, 10, 10];
    let data: Vec<u8> =
        (0..10_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let idx = dir.path().join("idx");
    write_idx(&idx, &dims, &data).unwrap();
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(&std::fs::read(&idx).unwrap()).unwrap();
    let bytes = enc.finish().unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let msg = read_idx(&p, 3).unwrap_err().to_string();
    assert!(msg.contains("cut.gz") && msg.contains("gzip"), "{msg}");
}

#[test]
fn wrong_magic_is_reported_with_expected_value() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("labels-as-images");
    write_idx(&p, &[3], &[1, 2, 3]).unwrap(); // a 1-d label file where images are expected
    let msg = read_idx(&p, 3).unwrap_err().to_string();
    assert!(msg.contains("wrong magic number 0x00000801"), "{msg}");
    assert!(msg.contains("0x00000803"), "{msg}");
    let q = dir.path().join("garbage");
    std::fs::write(&q, b"PK\x03\x04 not an idx file").unwrap();
    assert!(read_idx(&q, 1).unwrap_err().to_string().contains("wrong magic"));
}

#[test]
fn label_count_mismatch_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (im, lb) = (dir.path().join("images"), dir.path().join("labels"));
    write_idx(&im, &[3, 4, 5], &img_bytes(3)).unwrap();
    write_idx(&lb, &[2], &[0, 1]).unwrap();
    let msg = load_idx_pair(&im, &lb, 10).unwrap_err().to_string();
    assert!(msg.contains("label count 2 does not match the image count 3"), "{msg}");
}

#[test]
fn idx_pair_loads_into_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let (im, lb) = (dir.path().join("images"), dir.path().join("labels"));
    write_idx(&im, &[3, 4, 5], &img_bytes(3)).unwrap();
    write_idx(&lb, &[3], &[0, 9, 4]).unwrap();
    let ds = load_idx_pair(&im, &lb, 10).unwrap();
    assert_eq!(ds.images.size(), vec![3, 1, 4, 5]);
    assert_eq!(Vec::<i64>::try_from(&ds.labels).unwrap(), vec![0, 9, 4]);
    assert_eq!(ds.images.int64_value(&[1, 0, 0, 1]), 21);
    write_idx(&lb, &[3], &[0, 10, 4]).unwrap();
    assert!(load_idx_pair(&im, &lb, 10).unwrap_err().to_string().contains("label 10 out of range"));
}

#[test]
fn cifar10_and_100_records_parse_and_bad_files_fail() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("data_batch_1.bin");
    let mut bytes = Vec::new();
    for label in [3u8, 7] {
        bytes.push(label);
        bytes.extend((0..CIFAR_PIXELS).map(|i| (i as u8).wrapping_add(label)));
    }
    std::fs::write(&p, &bytes).unwrap();
    let (px, lb) = read_cifar_file(&p, 1, 10).unwrap();
    assert_eq!(lb, vec![3, 7]);
    assert_eq!(px.len(), 2 * CIFAR_PIXELS);
    assert_eq!(px[CIFAR_PIXELS], 7);
    // CIFAR-100: coarse, fine; the fine label is used.
    let q = dir.path().join("train.bin");
    let mut b100 = vec![1u8, 42];
    b100.extend(vec![0u8; CIFAR_PIXELS]);
    std::fs::write(&q, &b100).unwrap();
    assert_eq!(read_cifar_file(&q, 2, 100).unwrap().1, vec![42]);
    // truncated
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    let msg = read_cifar_file(&p, 1, 10).unwrap_err().to_string();
    assert!(msg.contains("data_batch_1.bin") && msg.contains("whole number"), "{msg}");
    // label out of range
    bytes[0] = 12;
    std::fs::write(&p, &bytes).unwrap();
    assert!(read_cifar_file(&p, 1, 10).unwrap_err().to_string().contains("label 12 out of range"));
}

#[test]
fn random_crop_shifts_whole_images_and_flip_mirrors() {
    tch::manual_seed(0);
    // One image whose pixel value encodes its column: a crop shifts columns by a constant.
    let w = 8i64;
    let img = tch::Tensor::arange(w, (tch::Kind::Float, tch::Device::Cpu))
        .view([1, 1, 1, w])
        .expand([16, 1, w, w], false)
        + 1.0;
    let out = gqcim::data::augment::random_crop(&img, 2);
    assert_eq!(out.size(), vec![16, 1, w, w]);
    let mut shifts = std::collections::HashSet::new();
    for b in 0..16 {
        // Inside the image, value(col) - col is the shift; zero padding shows as 0.
        let row: Vec<f32> = Vec::try_from(out.get(b).get(0).get(4)).unwrap();
        let inside: Vec<i64> = row
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0.0)
            .map(|(c, v)| *v as i64 - 1 - c as i64)
            .collect();
        assert!(inside.windows(2).all(|p| p[0] == p[1]), "row is not a shifted copy: {row:?}");
        assert!(inside[0].abs() <= 2);
        shifts.insert(inside[0]);
    }
    assert!(shifts.len() > 1, "16 crops all used the same offset");
    let flipped = gqcim::data::augment::random_hflip(&img);
    for b in 0..16 {
        let first = flipped.double_value(&[b, 0, 0, 0]);
        assert!(first == 1.0 || first == w as f64);
    }
}
