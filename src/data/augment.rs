//! Train-time augmentation done on whole batches of tensors (no per-sample Rust loop):
//! random crop after zero padding (two `gather`s with per-sample offsets) and horizontal flip.
use tch::{Kind, Tensor};

/// xs: [b, c, h, w] float -> [b, c, h, w], each sample shifted by an offset drawn uniformly
/// from [0, 2*pad] in both axes after padding with zeros, as torchvision's RandomCrop(pad=p).
pub fn random_crop(xs: &Tensor, pad: i64) -> Tensor {
    if pad == 0 {
        return xs.shallow_clone();
    }
    let (b, c, h, w) = xs.size4().expect("random_crop expects a 4-d batch");
    let dev = xs.device();
    let padded = xs.constant_pad_nd([pad, pad, pad, pad]);
    let wp = w + 2 * pad;
    let oy = Tensor::randint(2 * pad + 1, [b, 1], (Kind::Int64, dev));
    let ox = Tensor::randint(2 * pad + 1, [b, 1], (Kind::Int64, dev));
    let rows = &oy + Tensor::arange(h, (Kind::Int64, dev)).unsqueeze(0); // [b, h]
    let cols = &ox + Tensor::arange(w, (Kind::Int64, dev)).unsqueeze(0); // [b, w]
    let row_idx = rows.view([b, 1, h, 1]).expand([b, c, h, wp], false);
    let by_rows = padded.gather(2, &row_idx, false); // [b, c, h, wp]
    let col_idx = cols.view([b, 1, 1, w]).expand([b, c, h, w], false);
    by_rows.gather(3, &col_idx, false)
}

/// Flips each sample left-right with probability 1/2.
pub fn random_hflip(xs: &Tensor) -> Tensor {
    let b = xs.size()[0];
    let flip = Tensor::rand([b, 1, 1, 1], (Kind::Float, xs.device())).lt(0.5);
    xs.flip([3]).where_self(&flip, xs)
}
