//! RGB pictures for TensorBoard samples: panels, captions drawn with plotters' text, side-
//! by-side and grid composition with white gaps, and colour legends (swatch + name).
use plotters::prelude::*;

pub const WHITE_PX: [u8; 3] = [255, 255, 255];

/// Colours of the ten Fashion-MNIST classes (matplotlib's tab10): detection boxes use class
/// k's, segmentation masks class id k + 1's.
pub const CLASS_COLOURS: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// An RGB image, row-major interleaved (HWC) bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    pub w: usize,
    pub h: usize,
    pub rgb: Vec<u8>,
}

impl Picture {
    pub fn new(w: usize, h: usize, fill: [u8; 3]) -> Picture {
        Picture { w, h, rgb: fill.repeat(w * h) }
    }

    /// From channel-planar (CHW) bytes.
    pub fn from_chw(chw: &[u8], h: usize, w: usize) -> Picture {
        let mut p = Picture::new(w, h, [0, 0, 0]);
        if chw.len() == 3 * h * w {
            for c in 0..3 {
                for i in 0..h * w {
                    p.rgb[i * 3 + c] = chw[c * h * w + i];
                }
            }
        }
        p
    }

    pub fn to_chw(&self) -> Vec<u8> {
        let n = self.w * self.h;
        let mut out = vec![0u8; 3 * n];
        for i in 0..n {
            for c in 0..3 {
                out[c * n + i] = self.rgb[i * 3 + c];
            }
        }
        out
    }

    /// PNG file bytes (None when encoding fails).
    pub fn to_png(&self) -> Option<Vec<u8>> {
        crate::tb::png_bytes(&self.to_chw(), self.h, self.w)
    }

    /// A picture from PNG (or any format the image crate reads) bytes.
    pub fn from_png(bytes: &[u8]) -> Result<Picture, String> {
        let img = image::load_from_memory(bytes).map_err(|e| e.to_string())?.to_rgb8();
        Ok(Picture { w: img.width() as usize, h: img.height() as usize, rgb: img.into_raw() })
    }

    /// The pixel at (x, y); black outside the picture.
    pub fn get(&self, x: usize, y: usize) -> [u8; 3] {
        if x >= self.w || y >= self.h {
            return [0, 0, 0];
        }
        let i = 3 * (y * self.w + x);
        match self.rgb.get(i..i + 3) {
            Some(c) => [c[0], c[1], c[2]],
            None => [0, 0, 0],
        }
    }

    pub fn set(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.w && y < self.h {
            let i = 3 * (y * self.w + x);
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Fills [x0, x1) x [y0, y1), clipped.
    pub fn fill_rect(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, c: [u8; 3]) {
        for y in y0..y1.min(self.h) {
            for x in x0..x1.min(self.w) {
                self.set(x, y, c);
            }
        }
    }

    /// Copies `src` with its top-left corner at (x, y), clipped.
    pub fn blit(&mut self, src: &Picture, x: usize, y: usize) {
        for sy in 0..src.h {
            for sx in 0..src.w {
                self.set(x + sx, y + sy, src.get(sx, sy));
            }
        }
    }

    /// `scale` times larger, nearest neighbour.
    pub fn upscale(&self, scale: usize) -> Picture {
        let mut p = Picture::new(self.w * scale, self.h * scale, [0, 0, 0]);
        for y in 0..p.h {
            for x in 0..p.w {
                p.set(x, y, self.get(x / scale, y / scale));
            }
        }
        p
    }

    /// Draws `text` with its top-left corner at (x, y); a picture without fonts keeps
    /// its pixels (the text is then missing, not wrong).
    pub fn text(&mut self, x: i32, y: i32, text: &str, size: u32, c: [u8; 3]) {
        let (w, h) = (self.w as u32, self.h as u32);
        let root = BitMapBackend::with_buffer(&mut self.rgb, (w, h)).into_drawing_area();
        let style = ("sans-serif", size).into_font().color(&RGBColor(c[0], c[1], c[2]));
        if let Err(e) = root.draw_text(text, &style, (x, y)).and_then(|_| root.present()) {
            log::debug!("sample caption `{text}`: {e}");
        }
    }
}

/// Width and height of `text` at `size` px (an estimate from the font; 0.6 em per character
/// when no font is available).
pub fn text_size(text: &str, size: u32) -> (usize, usize) {
    let mut buf = vec![0u8; 3];
    let root = BitMapBackend::with_buffer(&mut buf, (1, 1)).into_drawing_area();
    let style: TextStyle = ("sans-serif", size).into_font().into();
    root.estimate_text_size(text, &style)
        .map(|(w, h)| (w as usize, h as usize))
        .unwrap_or(((text.chars().count() as f64 * 0.6 * size as f64) as usize, size as usize))
}

/// `pic` under a white strip with one caption line per entry of `lines`.
pub fn captioned(pic: &Picture, lines: &[String]) -> Picture {
    let size = 14;
    let line_h = 18;
    let text_w = lines.iter().map(|l| text_size(l, size).0 + 8).max().unwrap_or(0);
    let w = pic.w.max(text_w);
    let top = lines.len() * line_h + 4;
    let mut out = Picture::new(w, pic.h + top, WHITE_PX);
    for (i, l) in lines.iter().enumerate() {
        out.text(4, (2 + i * line_h) as i32, l, size, [0, 0, 0]);
    }
    out.blit(pic, (w - pic.w) / 2, top);
    out
}

/// Pictures in rows of at most `cols`, separated by `gap` white pixels, tops aligned.
pub fn grid(pics: &[Picture], cols: usize, gap: usize) -> Picture {
    let cols = cols.max(1);
    let rows: Vec<&[Picture]> = pics.chunks(cols).collect();
    let row_w =
        |r: &[Picture]| r.iter().map(|p| p.w).sum::<usize>() + gap * r.len().saturating_sub(1);
    let row_h = |r: &[Picture]| r.iter().map(|p| p.h).max().unwrap_or(0);
    let w = rows.iter().map(|r| row_w(r)).max().unwrap_or(0).max(1);
    let h = rows.iter().map(|r| row_h(r)).sum::<usize>() + gap * rows.len().saturating_sub(1);
    let mut out = Picture::new(w, h.max(1), WHITE_PX);
    let mut y = 0;
    for r in rows {
        let mut x = 0;
        for p in r {
            out.blit(p, x, y);
            x += p.w + gap;
        }
        y += row_h(r) + gap;
    }
    out
}

/// `top` above `bottom`, `gap` white pixels between.
pub fn stack(top: &Picture, bottom: &Picture, gap: usize) -> Picture {
    let mut out = Picture::new(top.w.max(bottom.w), top.h + gap + bottom.h, WHITE_PX);
    out.blit(top, 0, 0);
    out.blit(bottom, 0, top.h + gap);
    out
}

/// How a legend entry's swatch is drawn.
#[derive(Debug, Clone, Copy)]
pub enum Swatch {
    Fill([u8; 3]),
    /// A box outline in this colour.
    Box([u8; 3]),
    /// Alternating black and white dashes (the ground-truth style).
    Dashed,
}

/// A legend of `width` pixels: entries flow left to right and wrap.
pub fn legend(entries: &[(Swatch, String)], width: usize) -> Picture {
    let size = 14;
    let row_h = 22;
    let mut placed = Vec::new();
    let (mut x, mut y) = (6usize, 4usize);
    for (s, name) in entries {
        let w = 24 + text_size(name, size).0 + 16;
        if x + w > width && x > 6 {
            x = 6;
            y += row_h;
        }
        placed.push((x, y, *s, name.clone()));
        x += w;
    }
    let mut out = Picture::new(width.max(1), y + row_h + 2, WHITE_PX);
    for (x, y, s, name) in placed {
        let (x0, y0, x1, y1) = (x, y + 3, x + 18, y + 17);
        match s {
            Swatch::Fill(c) => {
                out.fill_rect(x0, y0, x1, y1, c);
                outline(&mut out, x0, y0, x1 - 1, y1 - 1, [0, 0, 0], 1);
            }
            Swatch::Box(c) => outline(&mut out, x0, y0, x1 - 1, y1 - 1, c, 2),
            Swatch::Dashed => dashed_outline(&mut out, x0, y0, x1 - 1, y1 - 1),
        }
        out.text((x + 24) as i32, (y + 2) as i32, &name, size, [0, 0, 0]);
    }
    out
}

/// A `thick`-pixel rectangle outline with corners (x0, y0) and (x1, y1) inclusive.
pub fn outline(
    p: &mut Picture,
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
    c: [u8; 3],
    thick: usize,
) {
    for t in 0..thick {
        let (a0, b0) = (x0 + t, y0 + t);
        let (a1, b1) = (x1.saturating_sub(t), y1.saturating_sub(t));
        if a0 > a1 || b0 > b1 {
            break;
        }
        for x in a0..=a1 {
            p.set(x, b0, c);
            p.set(x, b1, c);
        }
        for y in b0..=b1 {
            p.set(a0, y, c);
            p.set(a1, y, c);
        }
    }
}

/// A 2-pixel outline of alternating 4-pixel black and white dashes: visible on any
/// background (the ground-truth style).
pub fn dashed_outline(p: &mut Picture, x0: usize, y0: usize, x1: usize, y1: usize) {
    let colour = |i: usize| if (i / 4).is_multiple_of(2) { [0, 0, 0] } else { [255, 255, 255] };
    for t in 0..2 {
        let (a0, b0) = (x0 + t, y0 + t);
        let (a1, b1) = (x1.saturating_sub(t), y1.saturating_sub(t));
        if a0 > a1 || b0 > b1 {
            break;
        }
        for x in a0..=a1 {
            p.set(x, b0, colour(x));
            p.set(x, b1, colour(x));
        }
        for y in b0..=b1 {
            p.set(a0, y, colour(y));
            p.set(a1, y, colour(y));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chw_round_trip_and_grid_size() {
        let chw: Vec<u8> = (0..3 * 2 * 5).map(|i| i as u8).collect();
        let p = Picture::from_chw(&chw, 2, 5);
        assert_eq!(p.to_chw(), chw);
        let g = grid(&[p.clone(), p.clone(), p.clone()], 2, 3);
        assert_eq!((g.w, g.h), (5 + 3 + 5, 2 + 3 + 2));
    }

    #[test]
    fn png_round_trip() {
        let mut p = Picture::new(7, 3, [10, 20, 30]);
        p.set(6, 2, [200, 100, 0]);
        assert_eq!(Picture::from_png(&p.to_png().unwrap()).unwrap(), p);
        assert!(Picture::from_png(b"not a png").is_err());
    }

    #[test]
    fn dashed_outline_has_both_colours() {
        let mut p = Picture::new(20, 20, [128, 128, 128]);
        dashed_outline(&mut p, 0, 0, 19, 19);
        let top: Vec<[u8; 3]> = (0..20).map(|x| p.get(x, 0)).collect();
        assert!(top.contains(&[0, 0, 0]) && top.contains(&[255, 255, 255]));
    }
}
