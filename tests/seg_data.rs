//! Pascal VOC segmentation masks on PNGs written here: genuine palette (indexed) PNGs with
//! the VOC palette, 8-bit grayscale id masks, range and size errors, and the colour map.
use gqcim::data::voc_seg::{colorize, read_mask, read_voc_seg_pair, voc_colormap};
use std::io::Write;
use std::path::Path;
use tch::Tensor;

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let mut typed = kind.to_vec();
    typed.extend(data);
    out.extend(&typed);
    out.extend(crc32(&typed).to_be_bytes());
}

/// An 8-bit indexed PNG (colour type 3) with the VOC palette, as the devkit's masks are
/// (the `image` crate cannot write one).
fn write_palette_png(path: &Path, ids: &[Vec<u8>]) {
    let (h, w) = (ids.len() as u32, ids[0].len() as u32);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 3, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    let palette: Vec<u8> = voc_colormap().iter().flatten().copied().collect();
    chunk(&mut png, b"PLTE", &palette);
    let mut raw = Vec::new();
    for row in ids {
        raw.push(0); // filter type None
        raw.extend(row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).unwrap();
    chunk(&mut png, b"IDAT", &z.finish().unwrap());
    chunk(&mut png, b"IEND", &[]);
    std::fs::write(path, png).unwrap();
}

fn write_gray_png(path: &Path, ids: &[Vec<u8>]) {
    let (h, w) = (ids.len() as u32, ids[0].len() as u32);
    let flat: Vec<u8> = ids.iter().flatten().copied().collect();
    image::GrayImage::from_raw(w, h, flat).unwrap().save(path).unwrap();
}

fn ids_tensor(ids: &[Vec<u8>]) -> Tensor {
    let flat: Vec<i64> = ids.iter().flatten().map(|&v| i64::from(v)).collect();
    Tensor::from_slice(&flat).view([ids.len() as i64, ids[0].len() as i64])
}

fn sample_ids() -> Vec<Vec<u8>> {
    vec![vec![0, 1, 15, 20, 255], vec![255, 3, 3, 0, 7], vec![9, 9, 0, 1, 2]]
}

#[test]
fn palette_and_gray_masks_round_trip_with_255_kept() {
    let dir = tempfile::tempdir().unwrap();
    let ids = sample_ids();
    for (name, write) in
        [("palette.png", write_palette_png as fn(&Path, &[Vec<u8>])), ("gray.png", write_gray_png)]
    {
        let path = dir.path().join(name);
        write(&path, &ids);
        let mask = read_mask(&path, 21).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(mask.kind(), tch::Kind::Int64);
        assert_eq!(mask.size(), vec![3, 5]);
        assert!(mask.equal(&ids_tensor(&ids)), "{name}: {mask}");
        assert_eq!(mask.int64_value(&[0, 4]), 255);
    }
}

#[test]
fn out_of_range_class_is_named_with_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = sample_ids();
    ids[2][3] = 30;
    for (name, write) in [
        ("bad_palette.png", write_palette_png as fn(&Path, &[Vec<u8>])),
        ("bad_gray.png", write_gray_png),
    ] {
        let path = dir.path().join(name);
        write(&path, &ids);
        let err = read_mask(&path, 21).unwrap_err().to_string();
        assert!(err.contains(name), "{err}");
        assert!(err.contains("class id 30") && err.contains("row 2, column 3"), "{err}");
    }
}

/// Every one of the 256 VOC colours maps back to its index (the colour map is a bijection).
#[test]
fn every_voc_colour_maps_back_to_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.png");
    let map = voc_colormap();
    let img = image::RgbImage::from_fn(16, 16, |x, y| image::Rgb(map[(y * 16 + x) as usize]));
    img.save(&path).unwrap();
    let mask = read_mask(&path, 255).unwrap();
    assert!(mask.equal(&Tensor::arange(256, (tch::Kind::Int64, tch::Device::Cpu)).view([16, 16])));
}

#[test]
fn colour_outside_the_voc_map_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rgb.png");
    let mut img = image::RgbImage::new(4, 2);
    img.put_pixel(1, 0, image::Rgb([128, 0, 0])); // class 1: fine
    img.put_pixel(2, 1, image::Rgb([127, 0, 0])); // not a VOC colour
    img.save(&path).unwrap();
    let err = read_mask(&path, 21).unwrap_err().to_string();
    assert!(err.contains("(127, 0, 0)") && err.contains("row 1, column 2"), "{err}");
}

#[test]
fn image_and_mask_pair_and_size_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let image_path = dir.path().join("2007_000032.png");
    let mut img = image::RgbImage::new(5, 3);
    img.put_pixel(4, 2, image::Rgb([10, 20, 30]));
    img.save(&image_path).unwrap();
    let mask_path = dir.path().join("2007_000032_mask.png");
    write_palette_png(&mask_path, &sample_ids());
    let (pixels, mask) = read_voc_seg_pair(&image_path, &mask_path, 21).unwrap();
    assert_eq!(pixels.kind(), tch::Kind::Uint8);
    assert_eq!(pixels.size(), vec![3, 3, 5]);
    assert_eq!(mask.size(), vec![3, 5]);
    let px: Vec<i64> = (0..3).map(|c| pixels.int64_value(&[c, 2, 4])).collect();
    assert_eq!(px, vec![10, 20, 30]);

    let wide = dir.path().join("wide_mask.png");
    write_gray_png(&wide, &vec![vec![0u8; 6]; 3]);
    let err = read_voc_seg_pair(&image_path, &wide, 21).unwrap_err().to_string();
    assert!(err.contains("wide_mask.png") && err.contains("2007_000032.png"), "{err}");
    assert!(err.contains("6x3") && err.contains("5x3"), "{err}");
}

#[test]
fn colorize_uses_the_voc_colours() {
    let map = voc_colormap();
    assert_eq!(map[0], [0, 0, 0]);
    assert_eq!(map[1], [128, 0, 0]);
    assert_eq!(map[15], [192, 128, 128]);
    assert_eq!(map[255], [224, 224, 192]);
    let mask = Tensor::from_slice(&[0i64, 1, 15, 255]).view([2, 2]);
    let rgb = colorize(&mask);
    assert_eq!(rgb.kind(), tch::Kind::Uint8);
    assert_eq!(rgb.size(), vec![3, 2, 2]);
    let at =
        |r: i64, c: i64| -> Vec<i64> { (0..3).map(|ch| rgb.int64_value(&[ch, r, c])).collect() };
    assert_eq!(at(0, 0), vec![0, 0, 0]);
    assert_eq!(at(0, 1), vec![128, 0, 0]);
    assert_eq!(at(1, 0), vec![192, 128, 128]);
    assert_eq!(at(1, 1), vec![224, 224, 192]);
    // Batched masks colour the same way: [b, h, w] -> [b, 3, h, w].
    assert!(colorize(&mask.unsqueeze(0)).get(0).equal(&rgb));
}
